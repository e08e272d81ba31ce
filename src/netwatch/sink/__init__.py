"""Where samples go: line protocol, buffering, InfluxDB."""
