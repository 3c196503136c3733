"""Embedded services for one machine (the Tansu broker, a Redis server, worker processes),
used by ``feedamp dev``, the test fixtures and the benchmarks; not needed in production."""
