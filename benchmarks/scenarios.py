"""The live scenarios: grants applied and revoked by a real worker and beat, on Redis and
PostgreSQL, against the local GitHub. Each returns a dict of figures and invariant counts.

- revocation_lag: grants with staggered expiries; how long after its expiry each reviewer
  left GitHub. With kill_after, the worker is SIGKILLed during the run and restarted, which
  loses the expiry messages it held: the sweep is then the bound.
- mass_expiry: thousands of grants over hundreds of environments ending in one minute;
  GitHub calls per environment, time until all are gone, optionally under GitHub's
  secondary limit on writes.
- fault_soak: grants filed, applied and revoked while GitHub fails (5xx, rate limits,
  timeouts), the worker is killed and Redis restarts; then nothing may be lost, doubled,
  left behind or late by more than one sweep after GitHub recovered.

They share check_invariants(), which is also all that the CI versions (tests/soak/) assert.
Expiries are moved in the database after the grants are applied (policies grant whole
minutes): that is test data, the engine's code is untouched.
"""

from benchmarks.scenarios_base import Harness, broken_invariants, check_invariants
from benchmarks.scenarios_expiry import mass_expiry, revocation_lag
from benchmarks.scenarios_soak import Chaos, SoakFaults, fault_soak

__all__ = [
    "Chaos",
    "Harness",
    "SoakFaults",
    "broken_invariants",
    "check_invariants",
    "fault_soak",
    "mass_expiry",
    "revocation_lag",
]
