"""Example graphs used by the demo, the docs and the benchmarks."""
