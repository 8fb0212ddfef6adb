"""What every other package may import: the project's real texts and the array helpers that
make "padded batch" and "cosine to the reference" mean one thing in models, export, service,
the benchmarks and the tests. numpy and the standard library only, so the service can import it
without torch."""
