"""Embedded MQTT broker (amqtt) and the users and ACLs shared with Mosquitto."""
