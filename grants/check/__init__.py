"""The grant check: does this person hold access to this target now? (docs/check.md)"""

from grants.check.answer import CheckAnswer, grant_check, grant_check_answer
from grants.check.query import CheckedGrant, in_force_grants
from grants.check.restrictions import restriction_label, restriction_refusal
from grants.check.sampled_audit import grant_check_audit, grant_check_refusal_audit
from grants.check.scope import CheckScope, grant_check_scope, oidc_caller_of_attempt
from integrations.github.actions import WorkflowJob

__all__ = [
    "CheckAnswer",
    "CheckScope",
    "CheckedGrant",
    "WorkflowJob",
    "grant_check",
    "grant_check_answer",
    "grant_check_audit",
    "grant_check_refusal_audit",
    "grant_check_scope",
    "in_force_grants",
    "oidc_caller_of_attempt",
    "restriction_label",
    "restriction_refusal",
]
