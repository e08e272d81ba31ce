"""Real servers for integration tests, started as plain processes on free loopback ports."""
