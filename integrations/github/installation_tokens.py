"""One installation token per App installation, shared by every process (models.
InstallationAccessToken): the worker, beat and each `manage.py reconcile` act with the same
token until shortly before it expires.

Why shared: GitHub's ETags are specific to the token that asked, so a process that minted a
token of its own paid a full 200 for every conditional read the others had already made.

How it is replaced: the process that finds the token due (REFRESH_BEFORE its expiry, absent,
or refused with a 401) claims the row with a compare-and-set on its generation, mints, and
stores the new token; the others keep using the old one while it is good for more than
EXPIRY_MARGIN, and otherwise wait for the new one. A claim runs out after MINT_CLAIM, so a
process that dies while minting holds nobody up for longer; at worst a claim that ran out
costs one mint more than needed. An expired token is never handed out.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import DateTimeField, ExpressionWrapper, F
from django.db.models.functions import Now
from django.utils import timezone
from github import Auth

from core.crypto import decrypt_value, encrypt_value
from integrations.github.errors import TransientGitHubError

logger = logging.getLogger(__name__)

# GitHub's tokens last an hour: the next is minted this long before, while this one still works.
REFRESH_BEFORE = timedelta(minutes=5)
# A token this close to its expiry is not sent: a call made with it could arrive too late.
EXPIRY_MARGIN = timedelta(minutes=1)
# How long one process's claim to mint lasts (a mint is one call, retried within seconds).
MINT_CLAIM = timedelta(seconds=30)
# How often a process waiting for another's mint looks again.
WAIT_SECONDS = 0.05
NEVER = datetime(1970, 1, 1, tzinfo=UTC)

# The heartbeat of the GitHub call being sent (GitHubClient._call). The token is asked for
# as PyGithub sends, so a mint (retried for up to AIRLOCK_GITHUB_RETRY_MAX_SECONDS) and a wait
# for another process's mint happen inside that call: they renew the caller's lease as the
# call's own retries do, and stop when it is lost.
_caller_heartbeat: ContextVar[Callable[[], None]] = ContextVar(
    "airlock_github_call_heartbeat", default=lambda: None
)


@contextmanager
def sending_with_heartbeat(heartbeat: Callable[[], None]) -> Iterator[None]:
    """While a GitHub call is sent: the heartbeat a mint or a wait for one calls."""
    reset = _caller_heartbeat.set(heartbeat)
    try:
        yield
    finally:
        _caller_heartbeat.reset(reset)


@dataclass(frozen=True)
class SharedToken:
    value: str
    expires_at: datetime

    def __repr__(self):  # never the value, even in a traceback
        return f"SharedToken(expires_at={self.expires_at!r})"

    def fresh(self, now: datetime) -> bool:
        """Good without asking the database: not yet due to be replaced."""
        return self.expires_at - REFRESH_BEFORE > now


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(installation_id: int) -> dict:
    return {
        "api_url": settings.GITHUB_API_URL.rstrip("/"),
        "app_id": str(settings.GITHUB_APP_ID),
        "installation_id": int(installation_id),
    }


def _held(row) -> SharedToken | None:
    """The row's token, or None when there is none or it cannot be read (the keys changed)."""
    if not row.encrypted_token:
        return None
    try:
        value = decrypt_value(bytes(row.encrypted_token))
    except ImproperlyConfigured:
        logger.warning(
            "The shared token of GitHub App installation %s cannot be decrypted with "
            "AIRLOCK_ENCRYPTION_KEYS: a new one is minted", row.installation_id,
        )
        return None
    return SharedToken(value=value, expires_at=row.expires_at)


def shared_installation_token(*, installation_id: int) -> str:
    """The token every process acts with for this installation, minted when due."""
    return _shared_token(installation_id).value


def _shared_token(installation_id: int) -> SharedToken:
    from integrations.github.models import InstallationAccessToken

    key = _key(installation_id)
    gave_up_at = time.monotonic() + 2 * MINT_CLAIM.total_seconds()
    while True:
        row, _ = InstallationAccessToken.objects.get_or_create(
            **key, defaults={"expires_at": NEVER, "minting_until": NEVER}
        )
        now = timezone.now()
        held = _held(row)
        if held is not None and held.fresh(now):
            return held
        # Due: whoever moves minting_until first while the generation is still the one read
        # mints; a process that read an older generation reads again.
        # On the database's clock, as every lease here: a process whose clock runs ahead
        # would otherwise take a claim still held, one running behind wait on a lapsed one.
        claimed = InstallationAccessToken.objects.filter(
            pk=row.pk, generation=row.generation, minting_until__lte=Now()
        ).update(
            minting_until=ExpressionWrapper(Now() + MINT_CLAIM, output_field=DateTimeField())
        )
        if claimed:
            return _mint_and_share(row)
        if held is not None and held.expires_at - EXPIRY_MARGIN > now:
            return held  # another process is minting its successor; this one still works
        if time.monotonic() > gave_up_at:
            raise TransientGitHubError(
                f"no installation token for GitHub App installation {installation_id}: "
                "another process claimed the mint and did not store a token",
                operation="installation token mint",
            )
        _caller_heartbeat.get()()
        time.sleep(WAIT_SECONDS)


def _mint_and_share(row) -> SharedToken:
    from integrations.github.models import InstallationAccessToken
    from integrations.github.tokens import AppTokenClient

    mine = InstallationAccessToken.objects.filter(pk=row.pk, generation=row.generation)
    try:
        minted = AppTokenClient(heartbeat=_caller_heartbeat.get()).installation_token_mint_whole(
            installation_id=row.installation_id
        )
    except BaseException:
        mine.update(minting_until=NEVER)  # let the next process try at once
        raise
    # Stored only over the generation this process claimed: had its claim run out and another
    # stored a token since, that one stays (this one still works for this call).
    mine.update(
        encrypted_token=encrypt_value(minted.token),
        token_digest=_digest(minted.token),
        expires_at=minted.expires_at,
        generation=F("generation") + 1,
        minting_until=NEVER,
    )
    logger.info(
        "Minted the shared token of GitHub App installation %s (until %s)",
        row.installation_id, minted.expires_at.isoformat(),
    )
    return SharedToken(value=minted.token, expires_at=minted.expires_at)


def installation_token_refused(*, installation_id: int, token: str) -> None:
    """GitHub answered 401 to this token: drop it (only it: another process may have stored
    its successor already), so that the next use mints anew."""
    from integrations.github.models import InstallationAccessToken

    dropped = InstallationAccessToken.objects.filter(
        **_key(installation_id), token_digest=_digest(token)
    ).update(encrypted_token=b"", token_digest="", expires_at=NEVER)
    if dropped:
        logger.warning(
            "GitHub refused the shared token of GitHub App installation %s (401): dropped, "
            "a new one is minted", installation_id,
        )


class SharedInstallationAuth(Auth.Auth):
    """PyGithub's credentials for one installation: the shared token, kept in this
    object (one per thread, connections.py) until it is due, so most calls read no row."""

    def __init__(self, installation_id: int):
        self.installation_id = int(installation_id)
        self._lock = threading.Lock()
        self._current: SharedToken | None = None

    @property
    def token_type(self) -> str:
        return "token"

    @property
    def token(self) -> str:
        with self._lock:
            if self._current is None or not self._current.fresh(timezone.now()):
                self._current = _shared_token(self.installation_id)
            return self._current.value

    @property
    def _masked_token(self) -> str:
        return "(shared installation token)"

    def refused(self) -> bool:
        """After a 401: drop the token this object sent. True when there was one, so that
        the call may be tried once more with a new token."""
        with self._lock:
            sent, self._current = self._current, None
        if sent is None:
            return False
        installation_token_refused(installation_id=self.installation_id, token=sent.value)
        return True
