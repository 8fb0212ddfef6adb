"""Load generation and benchmarks for embedding servers."""
