"""The daemon's HTTP API (health, metrics, status)."""
