"""``make bench`` (``python -m loadtest.bench``): the benchmark report in docs/benchmarks.md.

Runs the same texts through sentence-transformers (the baseline every user knows), each
embedserve backend offline, and the served workloads, then writes absolute numbers, ratios to
the baseline and accuracy side by side. Everything under docs/benchmarks/ is regenerated.
"""
