"""Why an action was refused, in the words every layer shares. The web, admin and API map
these to messages, 403 and 409 respectively."""

from django.core.exceptions import PermissionDenied


class NotAllowed(PermissionDenied):
    """The user may not do this to this request (self-approval, not an approver, ...)."""


class WrongState(Exception):
    """The request is no longer in a state that allows this (decided, cancelled, ...)."""
