"""Airlock's measured promises: check throughput, revocation lag, lost-message bound, mass
expiry and a fault soak, run against the real processes (gunicorn, Celery worker and beat,
PostgreSQL, Redis) and the faithful local GitHub.

`make bench` runs them all (benchmarks/run.py) and writes benchmarks/RESULTS.md. The live
scenarios (benchmarks/scenarios.py) are shared with the shortened CI versions in
tests/soak/, which assert only invariants.
"""
