"""Alert engine, topology and receivers; arrive with the alerting issue."""
