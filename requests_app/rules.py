"""The rules of a valid access policy, in one place: those no single field can check, and
the bounds its fields' validators set; the admin form and the policy file both ask them."""

from datetime import timedelta

from django.core.validators import MaxValueValidator, slug_re

from integrations.github.permissions import permissions_refusal
from requests_app.models import AccessKind, AccessPolicy, AccessRequest, SecretDefinition

# What a person writes with a request or a decision is kept in TextFields: the forms and
# the API bound it alike.
REASON_MAX_LENGTH = 5000
COMMENT_MAX_LENGTH = 2000


def request_field_max_length(name: str) -> int:
    """The longest value an AccessRequest field holds: the forms and the API refuse more."""
    return AccessRequest._meta.get_field(name).max_length


def policy_number_maximum(name: str) -> int:
    """The largest value an AccessPolicy number field takes (its MaxValueValidator)."""
    field = AccessPolicy._meta.get_field(name)
    return next(v.limit_value for v in field.validators if isinstance(v, MaxValueValidator))


# What a policy's or approver group's name may be (a SlugField's own rule).
NAME_RE = slug_re
NAME_HINT = " (letters, digits, - and _)"


def approver_groups_refusal(*, approvals_required: int, approver_groups) -> str | None:
    """Why a policy's approver groups do not fit its approvals: approvals need someone to
    give them."""
    if approvals_required > 0 and not approver_groups:
        return "is required when approvals_required is above 0"
    return None


def default_duration_refusal(*, default: timedelta, maximum: timedelta) -> str | None:
    """Why a policy's default duration does not fit its maximum (the form offers the
    default; the database refuses one above the maximum too)."""
    if default > maximum:
        return "must not be longer than max_duration"
    return None


def secrets_refusal(*, access_kinds, secrets) -> str | None:
    """Why a policy's secrets do not fit its access kinds: a secret is granted only as
    secret access."""
    if secrets and AccessKind.SECRET not in access_kinds:
        return "secrets need 'secret' in access"
    return None


def token_permissions_refusal(*, access_kinds, token_permissions) -> str | None:
    """Why a policy's token permissions do not fit its access kinds: token access needs
    them (GitHub App repository permissions), and only token access has them."""
    if AccessKind.TOKEN in access_kinds:
        if not token_permissions:
            return "token access needs the token's permissions, e.g. {contents: read}"
        return permissions_refusal(token_permissions) or None
    if token_permissions:
        return "token_permissions need 'token' in access"
    return None


def secret_permissions_refusal(*, kind: str, permissions) -> str | None:
    """Why a secret definition's permissions do not fit its kind: a GitHub token secret
    names the minted token's permissions; the other kinds have none."""
    if kind == SecretDefinition.Kind.GITHUB_TOKEN:
        if not permissions:
            return "a github_token secret needs the token's permissions, e.g. {contents: read}"
        return permissions_refusal(permissions) or None
    if permissions:
        return "only a github_token secret has permissions"
    return None
