"""Reading settings from the environment: every bad value names its variable."""

import os
import re
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str) -> str:
    raw = os.environ.get(name, default).strip()
    if not raw.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def env_cache(name: str) -> dict:
    """A CACHES entry: unset means each process's own memory; redis://, rediss:// or
    unix:// means Django's Redis cache, shared by every process that names it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if raw.startswith(("redis://", "rediss://", "unix://")):
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": raw}
    raise ImproperlyConfigured(
        f"{name} must be a redis:// (or rediss://, unix://) URL, or unset for each "
        f"process's own memory; got {raw!r}"
    )


RATE = re.compile(r"([0-9]+)/(s|sec|second|m|min|minute|h|hour|d|day)")


def env_rate(name: str, default: str) -> str:
    """A request rate as DRF writes it: 600/min, 20/s, 10000/day."""
    raw = os.environ.get(name, "").strip() or default
    if not RATE.fullmatch(raw):
        raise ImproperlyConfigured(
            f"{name} must be a rate like 600/min (per s, min, hour or day), got {raw!r}"
        )
    return raw


def parse_duration(text: str) -> timedelta:
    """'30m', '4h', '2d' (and '90s'), as used by the policy file and CLI options."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    raw = str(text).strip().lower()
    if len(raw) < 2 or raw[-1] not in units or not raw[:-1].isdigit():
        raise ValueError(f"{text!r} is not a duration like 30m, 4h or 2d")
    return timedelta(**{units[raw[-1]]: int(raw[:-1])})
