"""Reproducible benchmarks of livewindows against a real local Kafka (`make bench`)."""
