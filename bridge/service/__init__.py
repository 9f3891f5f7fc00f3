"""The running service: MQTT link, pipeline, outbox publisher and main loop."""
