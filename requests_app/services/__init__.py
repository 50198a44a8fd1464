"""Every change to an access request, policy or approver group: atomic, audited, and
compare-and-set, with anything outside the database sent after the commit."""

from requests_app.services.approver_groups import (
    GroupSyncReport,
    approver_group_sync,
    approver_groups_sync_all,
)
from requests_app.services.decisions import (
    access_request_approve,
    access_request_cancel,
    access_request_deny,
    access_request_time_out,
    access_requests_time_out_overdue,
)
from requests_app.services.lifecycle import (
    access_request_activate,
    access_request_end_early,
    access_request_expire,
    access_request_extend,
    access_request_fail,
    access_request_retry,
    access_request_review_break_glass,
    access_request_withdraw,
    access_requests_remind_expiring,
)
from requests_app.services.policy_apply import PolicyApplyReport, policy_file_apply
from requests_app.services.requests import (
    MAX_SCHEDULE_AHEAD,
    access_request_create,
    access_request_file_for_run,
)

__all__ = [
    "MAX_SCHEDULE_AHEAD",
    "GroupSyncReport",
    "PolicyApplyReport",
    "access_request_activate",
    "access_request_approve",
    "access_request_cancel",
    "access_request_create",
    "access_request_deny",
    "access_request_end_early",
    "access_request_expire",
    "access_request_extend",
    "access_request_file_for_run",
    "access_request_fail",
    "access_request_retry",
    "access_request_review_break_glass",
    "access_request_time_out",
    "access_request_withdraw",
    "access_requests_remind_expiring",
    "access_requests_time_out_overdue",
    "approver_group_sync",
    "approver_groups_sync_all",
    "policy_file_apply",
]
