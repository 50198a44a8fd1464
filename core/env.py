"""Reading settings from the environment: every bad value names its variable. And the one
exception, for development: `make run`'s .env (load_development_env_file)."""

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

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


def require_server_url(
    name: str, url: str, *, schemes: tuple[str, ...], host_and_port_only: bool = False
) -> str:
    """`url` (the value of `name`) when it names a server a socket can be opened to: one of
    `schemes`, a host that is a DNS name or an IP literal, and a port from 1 to 65535 when
    it has one (required with host_and_port_only, which also refuses anything after it).
    Empty stays empty (unset). Checked here, at the start, because a URL that only fails
    when used fails in every round and every page that builds the sink."""
    if not url:
        return url
    problem = server_url_problem(url, schemes=schemes, host_and_port_only=host_and_port_only)
    if problem:
        raise ImproperlyConfigured(f"{name} {problem}, got {url!r}")
    return url


def server_url_problem(
    url: str, *, schemes: tuple[str, ...], host_and_port_only: bool = False
) -> str | None:
    """What is wrong with `url` as require_server_url() sees it, worded to follow the
    variable's name; None when nothing is."""
    shape = (
        " or ".join(f"{scheme}://host:port" for scheme in schemes)
        if host_and_port_only
        else "an " + " or ".join(f"{scheme}://" for scheme in schemes) + " URL"
    )
    if any(char.isspace() or not char.isprintable() for char in url):
        return f"must be {shape} without spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number from 0 to 65535
    except ValueError:
        return f"must be {shape} with a port from 1 to 65535 (and any IPv6 host in [])"
    if parts.scheme not in schemes:
        return f"must be {shape}"
    host = parts.hostname
    if not host:
        return f"must be {shape} naming a host"
    if port == 0 or (host_and_port_only and port is None):
        return f"must be {shape} with a port from 1 to 65535"
    if host_and_port_only and (
        url != f"{parts.scheme}://{parts.netloc}" or parts.username is not None
    ):
        return f"must be {shape}, nothing more"
    if ":" not in host:  # not an IPv6 literal: a name the resolver must IDNA-encode
        try:
            host.encode("idna")
        except UnicodeError:
            return f"must be {shape} whose host is a valid DNS name (labels of 1 to 63 characters)"
    return None


LOCAL_CACHE_MAX_ENTRIES = 100_000


def env_cache(name: str) -> dict:
    """A CACHES entry: unset means each process's own memory; redis://, rediss:// or
    unix:// means Django's Redis cache, shared by every process that names it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        # Django's default keeps 300 entries, then evicts a third of them. The grant check
        # keeps an "already audited" mark per grant and workflow run (grants/check/): with
        # more runs than that in flight, marks were evicted and the same runs audited
        # again and again, each audit taking the audit chain's lock (benchmark 1 wrote
        # 12,500 audit events where about 3,000 were due). Entries are small: a key and
        # an integer.
        return {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": LOCAL_CACHE_MAX_ENTRIES},
        }
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


ENV_FILE_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def read_env_file(path: Path) -> dict[str, str]:
    """NAME=value lines; blank lines and # comments are skipped, one pair of quotes around a
    value is dropped, and nothing else is interpreted (no expansion, no inline comments).
    That is all `make run` writes, and a subset of what compose's env_file takes; a library
    for it would be a dependency of the image for a file the image never has."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = ENV_FILE_LINE.match(line)
        if not match:
            raise ImproperlyConfigured(f"{path}, line {number}: expected NAME=value")
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def load_development_env_file(path: Path) -> None:
    """Development only: `make run` writes a .env (scripts/run_dev.py) with DEBUG=true and a
    generated SECRET_KEY, and this puts its values into the environment for the variables
    that are not set there, so that a command typed in another terminal gets the settings
    `make run` uses. Into os.environ itself, because more than these helpers read it: a
    policy file's `value_from_env`, and the processes `make run` starts.

    Production never reads it. A process whose environment says DEBUG, either way, takes
    its settings from that environment alone: every deployed one does (.env.example says
    DEBUG=false, deploy/start defaults it to false), and so do the test settings. And a
    file that does not itself say DEBUG=true is not a development file (compose's .env, for
    one), so it is left alone. A variable that is set is never overridden."""
    if "DEBUG" in os.environ:
        return
    for name, value in (development_env_file_values(path) or {}).items():
        os.environ.setdefault(name, value)


def development_env_file_values(path: Path) -> dict[str, str] | None:
    """The values of a development .env, or None when there is no file at `path` or it does
    not say DEBUG=true."""
    if not path.is_file():
        return None
    values = read_env_file(path)
    return values if values.get("DEBUG", "").strip().lower() in TRUE_WORDS else None
