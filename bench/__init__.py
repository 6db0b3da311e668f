"""Benchmarks and the synthetic media they (and the tests) are built from."""
