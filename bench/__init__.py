"""Benchmark harness for s3gate: `python -m bench.run` (see bench/README.md)."""
