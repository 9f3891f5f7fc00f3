"""The browser dashboard: static pages that speak MQTT over WebSockets to the broker, and their server."""
