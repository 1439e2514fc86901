"""Benchmarks of sora-bot against the Discord double and the fake gateway (see BENCHMARKS.md)."""
