"""spc-bridge: Statistical Process Control between shop-floor MQTT and SCADA/dashboards."""
