"""Routing a target to its access policy: the matching policy with the most specific
patterns wins (the rule: docs/api.md "Routing a target to its policy")."""

from fnmatch import fnmatchcase

from core.names import ascii_lower, canonical_target
from requests_app.models import AccessPolicy

WILDCARDS = set("*?[")


def pattern_specificity(pattern: str) -> tuple[int, int]:
    literal = sum(1 for char in pattern if char not in WILDCARDS and char != "]")
    return (0 if WILDCARDS & set(pattern) else 1, literal)


def best_match(patterns: list[str], value: str) -> tuple[int, int] | None:
    """value is a canonical name."""
    scores = [
        pattern_specificity(pattern)
        for pattern in patterns
        if fnmatchcase(value, ascii_lower(str(pattern)))
    ]
    return max(scores) if scores else None


def policy_for_target(*, repository: str, environment: str, access: str) -> AccessPolicy | None:
    """The policy for the target; NameRefused when a name is outside GitHub's rules."""
    repository, environment = canonical_target(repository=repository, environment=environment)
    candidates = []
    for policy in AccessPolicy.objects.prefetch_related("secrets", "approver_groups"):
        if access not in policy.access_kinds:
            continue
        repository_score = best_match(policy.repository_patterns, repository)
        environment_score = best_match(policy.environment_patterns, environment)
        if repository_score is None or environment_score is None:
            continue
        candidates.append(((repository_score, environment_score), policy))
    if not candidates:
        return None
    # Highest specificity first; among equals, the alphabetically first name.
    candidates.sort(key=lambda pair: (tuple(-n for s in pair[0] for n in s), pair[1].name))
    return candidates[0][1]
