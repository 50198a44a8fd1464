"""A minted token at rest: kept encrypted, audited by digest and never by value, read back
only to revoke or write it, and erased once revoked or expired (grants.minted)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from grants.minted import (
    minted_token_erase,
    minted_token_record,
    minted_token_value,
    minted_tokens_to_end,
    token_digest,
)
from grants.models import Grant, MintedToken
from integrations.github.tokens import InstallationToken
from tests.grants.factories import token_grant

pytestmark = pytest.mark.django_db

VALUE = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"


def minted(value=VALUE):
    return InstallationToken(
        token=value,
        expires_at=timezone.now() + timedelta(hours=1),
        permissions={"contents": "read"},
        repositories=("acme/api",),
    )


def test_a_token_grant_is_a_token_kind_grant_without_a_secret():
    grant = token_grant("dave")
    assert grant.kind == Grant.Kind.TOKEN and grant.secret_id is None


def test_the_value_is_kept_encrypted_and_audited_only_by_digest():
    grant = token_grant("dave")
    record = minted_token_record(
        grant=grant, purpose=MintedToken.Purpose.EXCHANGE, repository="acme/api", minted=minted()
    )
    stored = MintedToken.objects.get(pk=record.pk)
    assert VALUE.encode() not in bytes(stored.encrypted_token)
    assert stored.digest == token_digest(VALUE)
    assert minted_token_value(stored) == VALUE
    event = AuditEvent.objects.get(action="token.minted")
    assert event.detail["token"] == token_digest(VALUE)
    assert event.detail["permissions"] == {"contents": "read"}
    assert VALUE not in json.dumps(event.detail) + event.reason
    assert VALUE not in repr(minted())
    assert list(minted_tokens_to_end(grant)) == [stored]


def test_erasing_forgets_the_value_once_and_says_why():
    grant = token_grant("dave")
    revoked = minted_token_record(
        grant=grant, purpose=MintedToken.Purpose.EXCHANGE, repository="acme/api", minted=minted()
    )
    expired = minted_token_record(
        grant=grant,
        purpose=MintedToken.Purpose.SECRET,
        repository="acme/api",
        minted=minted("ghs_other"),
    )
    assert minted_token_erase(revoked, revoked=True) is True
    assert minted_token_erase(revoked, revoked=True) is False  # once
    assert minted_token_erase(expired, revoked=False) is True
    revoked.refresh_from_db()
    expired.refresh_from_db()
    assert bytes(revoked.encrypted_token) == b"" and revoked.revoked_at is not None
    assert bytes(expired.encrypted_token) == b"" and expired.revoked_at is None
    assert minted_token_value(revoked) == ""
    assert list(minted_tokens_to_end(grant)) == []
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions[-2:] == ["token.revoked", "token.expired"]
