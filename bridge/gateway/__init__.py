"""``spc-bridge gateway``: the seed's JSON WebSocket protocol for dashboards, fed from MQTT.

``protocol`` (the seed's messages), ``connections`` (clients, subscriptions, heartbeat, broadcasts),
``feed`` (the aiomqtt subscriber), ``settings`` (options) and ``server`` (the WebSocket server).
"""
