"""How fast callers may try: failed password sign-ins, unknown API tokens and the REST API's
request rates, on one counter (the limits: docs/api.md "Rate limits")."""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from functools import cache as memoize
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from audit.actions import AuditAction
from portal.authentication import OidcPrincipal

logger = logging.getLogger(__name__)

KEY_PREFIX = "airlock:limit:"


def client_address(request) -> str:
    """Who is asking, as far as the network tells: see the module docstring."""
    address = request.META.get("REMOTE_ADDR", "")
    if settings.AIRLOCK_BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        address = forwarded or address
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if parsed.version == 6:
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


# --- counting ---------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _key(*parts) -> str:
    # Hashed: usernames and addresses may hold anything, cache keys may not. Remembered:
    # every API call counts under the same key for a whole window (and an API token's
    # call reads two more), each a SHA-256 of the same text.
    return KEY_PREFIX + hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _window(seconds: int, now: float) -> tuple[int, float]:
    """The window now falls in (its number) and the seconds left in it."""
    number = int(now // seconds)
    return number, (number + 1) * seconds - now


def _add_one(key: str, ttl: float) -> int:
    """Count one more under key; the new count. Atomic in Redis and in local memory."""
    try:
        return cache.incr(key)
    except ValueError:  # the window's first
        if cache.add(key, 1, math.ceil(ttl) + 1):
            return 1
        return cache.incr(key)  # another process counted the first in between


@dataclass(frozen=True)
class Counter:
    """Failures of one kind ("sign_in", "api_token") by one account or address."""

    kind: str
    by: str  # "account" or "address"
    value: str
    limit: int


@dataclass(frozen=True)
class Lockout:
    counter: Counter
    wait_seconds: int

    @property
    def wait_words(self) -> str:
        if self.wait_seconds < 60:
            return f"{self.wait_seconds} second{'s' if self.wait_seconds != 1 else ''}"
        minutes = math.ceil(self.wait_seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _lock_key(counter: Counter) -> str:
    return _key(counter.kind, counter.by, counter.value, "locked")


def _lockout(counters: list[Counter]) -> Lockout | None:
    """The first of these counters locked out now, if any."""
    window = settings.AIRLOCK_LOCKOUT_SECONDS
    now = time.time()
    number, left = _window(window, now)
    locks = {_lock_key(c): c for c in counters}
    keys = {_key(c.kind, c.by, c.value, number): c for c in counters}
    found = cache.get_many([*locks, *keys])
    for key, counter in locks.items():
        if (until := found.get(key)) is not None and until > now:
            return Lockout(counter=counter, wait_seconds=max(1, math.ceil(until - now)))
    for key, counter in keys.items():
        # At the limit but no lock (the cache dropped it): locked to the window's end.
        if found.get(key, 0) >= counter.limit:
            return Lockout(counter=counter, wait_seconds=max(1, math.ceil(left)))
    return None


def _count_failure(counters: list[Counter], *, detail: dict) -> None:
    window = settings.AIRLOCK_LOCKOUT_SECONDS
    now = time.time()
    number, left = _window(window, now)
    for counter in counters:
        count = _add_one(_key(counter.kind, counter.by, counter.value, number), left)
        if count == counter.limit:  # exactly once per window, in whichever process
            # The lock lasts a whole window from now, not to the end of the counting
            # window: a limit reached in a window's last second still locks for the window.
            cache.set(_lock_key(counter), now + window, window + 1)
            _locked_out(counter, wait_seconds=window, detail=detail)


def _locked_out(counter: Counter, *, wait_seconds: int, detail: dict) -> None:
    # Imported here: DRF imports this module (ApiRateThrottle) while apps may be loading.
    import audit
    from audit.services import ANONYMOUS_ACTOR_LABEL

    window = settings.AIRLOCK_LOCKOUT_SECONDS
    reason = (
        f"{counter.limit} failed {'sign-ins' if counter.kind == 'sign_in' else 'API tokens'} "
        f"by {counter.by} {counter.value} within {window} s; refused for {wait_seconds} s"
    )
    logger.warning("Locked out: %s", reason)
    audit.log_event(
        action=AuditAction(f"{counter.kind}.locked_out"),
        actor_label=ANONYMOUS_ACTOR_LABEL,
        target_type=counter.by,
        target_id=counter.value[:255],
        target_repr=counter.value,
        reason=reason,
        detail={
            "by": counter.by,
            "failures": counter.limit,
            "window_seconds": window,
            "locked_for_seconds": wait_seconds,
            **detail,
        },
    )


# --- password sign-in -------------------------------------------------------------------------


def _account(username) -> str:
    return str(username or "").strip().casefold()


def _sign_in_counters(*, username, request) -> list[Counter]:
    """The account's counter and the address's; the latter only with a request (a form
    can be used without one, in a shell or a test)."""
    counters = []
    if _account(username):
        limit = settings.AIRLOCK_SIGN_IN_FAILURES_PER_ACCOUNT
        counters.append(Counter("sign_in", "account", _account(username), limit))
    if request is not None:
        limit = settings.AIRLOCK_SIGN_IN_FAILURES_PER_ADDRESS
        counters.append(Counter("sign_in", "address", client_address(request), limit))
    return counters


def sign_in_refusal(*, request, username) -> str:
    """Why this password sign-in may not even be tried now; "" when it may."""
    lockout = _lockout(_sign_in_counters(username=username, request=request))
    if lockout is None:
        return ""
    whose = "for this account" if lockout.counter.by == "account" else "from your address"
    return f"Too many failed sign-ins {whose}; try again in {lockout.wait_words}."


def sign_in_failed(sender, credentials, request=None, **kwargs) -> None:
    """Receiver of user_login_failed (django.contrib.auth.authenticate found no user), for
    both password forms: count the failure against the account and the address."""
    username = credentials.get("username", "")
    address = client_address(request) if request is not None else None
    _count_failure(
        _sign_in_counters(username=username, request=request),
        detail={"account": _account(username), "address": address},
    )


# --- API tokens -------------------------------------------------------------------------------


def _api_token_counters(request) -> list[Counter]:
    limit = settings.AIRLOCK_API_TOKEN_FAILURES_PER_ADDRESS
    return [Counter("api_token", "address", client_address(request), limit)]


def api_token_lockout(request) -> Lockout | None:
    return _lockout(_api_token_counters(request))


def api_token_unknown(request) -> None:
    """An alk_ token that matches none was presented: count it against the address."""
    _count_failure(_api_token_counters(request), detail={"address": client_address(request)})


# --- API request rates ------------------------------------------------------------------------

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@memoize
def _rate(rate: str) -> tuple[int, int]:
    """'600/min' -> (600, 60), as DRF reads it (core.env.env_rate checks the form)."""
    count, period = rate.split("/")
    return int(count), PERIODS[period[0]]


def _caller(request) -> str:
    user = request.user
    if isinstance(user, OidcPrincipal):
        return f"repository:{user.repository.casefold()}"
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"address:{client_address(request)}"


class ApiRateThrottle(BaseThrottle):
    """DRF throttle: at most the scope's rate of requests per caller in each window.

    A counter per window (one cache increment per request) instead of DRF's own throttles,
    which keep and rewrite the list of every request's time: thousands of entries per caller
    at the grant check's rate, on its hot path.
    """

    def allow_request(self, request, view) -> bool:
        scope = getattr(view, "throttle_scope", "api")
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
        if not rate:
            return True
        limit, seconds = _rate(rate)
        number, left = _window(seconds, time.time())
        if _add_one(_key("rate", scope, _caller(request), number), left) <= limit:
            return True
        self.wait_seconds = math.ceil(left)
        return False

    def wait(self) -> int:
        return self.wait_seconds
