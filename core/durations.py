"""Durations as Airlock's people write them ('30m', '4h', '2d'), and the one backoff rule
every retry uses."""

from datetime import timedelta

from django.core.exceptions import ValidationError

# 2 ** 62 steps past any cap a retry can have; beyond it the product overflows timedelta.
_MAX_DOUBLINGS = 62


def parse_duration(text: str) -> timedelta:
    """'30m', '4h', '2d' (and '90s'), as used by the policy file and CLI options."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    raw = str(text).strip().lower()
    # isascii: str.isdigit also takes "²", which int() refuses.
    if len(raw) < 2 or raw[-1] not in units or not (raw[:-1].isascii() and raw[:-1].isdigit()):
        raise ValueError(f"{text!r} is not a duration like 30m, 4h or 2d")
    try:
        return timedelta(**{units[raw[-1]]: int(raw[:-1])})
    except OverflowError:  # beyond timedelta's 999,999,999 days
        raise ValueError(f"{text!r} is longer than any duration can be") from None


def exponential_backoff(attempt: int, *, base: timedelta, cap: timedelta) -> timedelta:
    """How long to wait before try number `attempt + 1`: `base` after the first failure,
    doubling with each failure after it, never more than `cap`."""
    doublings = min(max(0, attempt - 1), _MAX_DOUBLINGS)
    try:
        return min(cap, base * 2**doublings)
    except OverflowError:
        return cap


def validate_positive_duration(value: timedelta) -> None:
    """A model field validator: a duration Airlock waits or grants for is longer than zero."""
    if value is not None and value <= timedelta(0):
        raise ValidationError("must be longer than zero")
