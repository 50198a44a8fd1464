"""The admin, where approvers decide and platform admins manage the rules: one module per
model's admin; importing this package registers them all (Django's autodiscover does)."""

# Django's user and group admin, with Airlock's rules and audit, registers on import too.
from requests_app import admin_accounts  # noqa: F401
from requests_app.admin.approver_groups import ApproverGroupAdmin, ApproverGroupMemberInline
from requests_app.admin.base import PlatformAdminOnly, can_view_request
from requests_app.admin.policies import AccessPolicyAdmin
from requests_app.admin.request_filters import (
    ApprovalInline,
    AwaitingMyDecisionFilter,
    LifecycleFilter,
)
from requests_app.admin.requests import AccessRequestAdmin
from requests_app.admin.secrets import SecretDefinitionAdmin

__all__ = [
    "AccessPolicyAdmin",
    "AccessRequestAdmin",
    "ApprovalInline",
    "ApproverGroupAdmin",
    "ApproverGroupMemberInline",
    "AwaitingMyDecisionFilter",
    "LifecycleFilter",
    "PlatformAdminOnly",
    "SecretDefinitionAdmin",
    "can_view_request",
]
