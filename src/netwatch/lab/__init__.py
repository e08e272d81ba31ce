"""A simulated city for demos, tests and benchmarks."""
