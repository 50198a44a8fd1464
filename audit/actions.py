"""Every kind of event Airlock writes to the audit log, each named once. Export filters,
alerts and tests match these strings, so a value never changes once released."""

from django.db import models


class AuditAction(models.TextChoices):
    # A request's life (requests_app.services).
    REQUEST_CREATED = "request.created"
    REQUEST_APPROVAL_ADDED = "request.approval_added"
    REQUEST_APPROVED = "request.approved"
    REQUEST_AUTO_APPROVED = "request.auto_approved"
    REQUEST_BREAK_GLASS = "request.break_glass"
    REQUEST_BREAK_GLASS_REVIEWED = "request.break_glass_reviewed"
    REQUEST_DENIED = "request.denied"
    REQUEST_CANCELLED = "request.cancelled"
    REQUEST_TIMED_OUT = "request.timed_out"
    REQUEST_ACTIVATED = "request.activated"
    REQUEST_EXPIRED = "request.expired"
    REQUEST_REVOKED = "request.revoked"
    REQUEST_FAILED = "request.failed"
    REQUEST_RETRIED = "request.retried"
    REQUEST_EXTENSION_REQUESTED = "request.extension_requested"
    REQUEST_EXTENSION_FILED = "request.extension_filed"
    REQUEST_WITHDRAWN = "request.withdrawn"
    # A run-bound request closed by its run: released by the run's own call
    # (POST /api/v1/runs/release), or ended because the run completed (workflow_run).
    REQUEST_RELEASED_BY_RUN = "request.released_by_run"
    REQUEST_ENDED_WITH_RUN = "request.ended_with_run"
    # A re-run attempt asked again for its run's open request, which now follows it.
    REQUEST_RUN_ATTEMPT_FOLLOWED = "request.run_attempt_followed"

    # Policies, approver groups and API tokens (requests_app).
    POLICY_FILE_CREATED = "policy_file.created"
    POLICY_FILE_CHANGED = "policy_file.changed"
    APPROVER_GROUP_SYNCED = "approver_group.synced"
    APPROVER_GROUP_SYNC_FAILED = "approver_group.sync_failed"
    API_TOKEN_CREATED = "api_token.created"
    API_TOKEN_REVOKED = "api_token.revoked"

    # Grants and what the engine did on GitHub (grants).
    GRANT_CREATED = "grant.created"
    GRANT_APPLIED = "grant.applied"
    GRANT_REVOKED = "grant.revoked"
    GRANT_FAILED = "grant.failed"
    GRANT_REVOKE_REQUESTED = "grant.revoke_requested"
    GRANT_RETRY_REQUESTED = "grant.retry_requested"
    GRANT_REVOCATION_OVERDUE = "grant.revocation_overdue"
    GRANT_CHECKED = "grant.checked"
    GRANT_CHECK_REFUSED = "grant.check_refused"
    GITHUB_ENVIRONMENT_UPDATED = "github.environment_updated"
    GITHUB_ENVIRONMENT_SECRET_WRITTEN = "github.environment_secret_written"
    GITHUB_ENVIRONMENT_SECRET_DELETED = "github.environment_secret_deleted"
    GITHUB_ORG_SECRET_UPDATED = "github.org_secret_updated"
    TARGET_BASELINE_RECORDED = "target.baseline_recorded"
    TARGET_DRIFT = "target.drift"
    TARGET_ENVIRONMENT_DELETED = "target.environment_deleted"

    # Deployment protection rules (grants.gates).
    DEPLOYMENT_GATE_REQUESTED = "deployment_gate.requested"
    DEPLOYMENT_GATE_APPROVED = "deployment_gate.approved"
    DEPLOYMENT_GATE_REJECTED = "deployment_gate.rejected"
    DEPLOYMENT_GATE_POST_FAILED = "deployment_gate.post_failed"
    GITHUB_DEPLOYMENT_PROTECTION_RULE_REVIEWED = "github.deployment_protection_rule_reviewed"
    GITHUB_DEPLOYMENT_PROTECTION_RULE_COMMENTED = "github.deployment_protection_rule_commented"
    GITHUB_WORKFLOW_RUN_COMPLETED = "github.workflow_run_completed"
    # Minted tokens (grants): each mint, revocation on GitHub, and erasure of an expired
    # one; named by digest, never by value.
    TOKEN_MINTED = "token.minted"
    TOKEN_REVOKED = "token.revoked"
    TOKEN_EXPIRED = "token.expired"
    # Slack (requests_app.slack): accounts linked and unlinked, and a click refused.
    SLACK_LINKED = "slack.linked"
    SLACK_UNLINKED = "slack.unlinked"
    SLACK_DECISION_REFUSED = "slack.decision_refused"
    # A token kept for a grant moved to the extension continuing it without a gap.
    TOKEN_CARRIED_OVER = "token.carried_over"

    # Sign-in and the API's lockouts (portal.ratelimit).
    SIGN_IN_LOCKED_OUT = "sign_in.locked_out"
    API_TOKEN_LOCKED_OUT = "api_token.locked_out"

    # The log itself (audit).
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_UNKEYED_SEALED = "audit.unkeyed_sealed"
    # A row in the pending table that log_event() did not write (its MAC does not verify):
    # refused, never signed into the chain, and recorded in its place.
    AUDIT_PENDING_REFUSED = "audit.pending_refused"
    # A forwarding sink's cursor set back or forward by hand (forward_audit_log --from-seq).
    AUDIT_FORWARDING_REWOUND = "audit.forwarding_rewound"


class AdminVerb(models.TextChoices):
    """What the admin did to a row; its action is "<model name>.<verb>" (admin_action)."""

    CREATED = "created"
    CHANGED = "changed"
    DELETED = "deleted"
    RUN_REQUESTED = "run_requested"  # a beat entry run now (grants.admin_beat)


def admin_action(model_name: str, verb: str) -> str:
    """The one shape of an admin write's action, e.g. "accesspolicy.changed"."""
    return f"{model_name}.{AdminVerb(verb)}"
