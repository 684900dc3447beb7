"""Benchmarks of the relay: ``python -m benchmarks`` (see the README's Benchmark section)."""
