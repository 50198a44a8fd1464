"""The live scenarios (a real worker and beat on Redis and PostgreSQL, against the local
GitHub), each returning figures and invariant counts (docs/operations.md "The scenarios")."""

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
