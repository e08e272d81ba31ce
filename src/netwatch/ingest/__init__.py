"""Push sources (MQTT, SNMP traps); arrive with the panels and traps issue."""
