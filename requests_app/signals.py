"""Signals requests_app sends after a decision commits, so enforcement (grants) can react.

Sent from `transaction.on_commit`, never inside the transaction, with primary keys only: a
receiver reads the committed rows. A message a receiver loses is not lost work: the grant
engine's and the gates' beat sweeps find it in the database.
"""

from django.dispatch import Signal

# The request is approved (by its approvals, at once under break-glass, or with no approval
# required) and its access should be granted from its start.
# Sent with sender=AccessRequest, request_id (int).
access_request_approved = Signal()

# The request moved from one status to another (approved, active, expired, revoked, ...).
# Sent with sender=AccessRequest, request_id (int) and status (the new status, a string).
access_request_status_changed = Signal()
