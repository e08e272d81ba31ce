"""State for consumers other than InfluxDB and the receivers: retained MQTT topics (:mod:`.mqttstate`)."""
