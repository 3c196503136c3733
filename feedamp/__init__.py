"""feedamp: event-driven feed amplification engine (Kafka in, Redis feeds out)."""

__version__ = "0.1.0"
