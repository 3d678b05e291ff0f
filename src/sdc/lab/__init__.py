"""The instruments, kept apart from the product: the results table, the benchmark, the sweep
report and the machine line they print."""
