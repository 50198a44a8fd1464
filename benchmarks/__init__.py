"""Airlock's measured promises, run by `make bench` against the real processes and the local
GitHub (docs/operations.md "The benchmarks")."""
