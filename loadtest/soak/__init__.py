"""``make soak`` (``python -m loadtest.soak``): a long run of mixed traffic at a steady fraction
of measured capacity, judged on unexpected errors, replica memory growth and latency drift;
writes docs/soak.md and docs/benchmarks/soak/."""
