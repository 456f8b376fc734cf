"""The daemon test helpers live in tools.probe (shared with the soak test and the benchmarks)."""
