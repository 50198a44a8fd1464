"""Signals requests_app sends after a decision commits, with primary keys only, so that
enforcement (grants) can react; the beat sweeps find what a lost message missed."""

from django.dispatch import Signal

# The request is approved (by its approvals, at once under break-glass, or with no approval
# required) and its access should be granted from its start.
# Sent with sender=AccessRequest, request_id (int).
access_request_approved = Signal()

# The request moved from one status to another (approved, active, expired, revoked, ...).
# Sent with sender=AccessRequest, request_id (int) and status (the new status, a string).
access_request_status_changed = Signal()

# What the request shows changed without its status changing: it was filed (routed to its
# approvers), or it has one more approval that does not yet decide it. With the status
# changes above, every change of a request; the Slack card follows both (requests_app.slack).
# Sent with sender=AccessRequest, request_id (int).
access_request_changed = Signal()
