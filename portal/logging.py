"""Logging: one JSON object per line (or plain text in development), with request and task
ids, every secret masked; one dictConfig for web, worker and beat."""

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache as memoize

import github  # noqa: F401  (its import adds a handler that the config below replaces)
from celery import current_task
from celery.signals import after_setup_task_logger
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_str

# Set by portal.middleware.RequestIdMiddleware for the length of one request.
request_id_var: ContextVar[str | None] = ContextVar("airlock_request_id", default=None)

REDACTED = "[REDACTED]"

# A key whose name contains one of these has its value masked wherever it appears: in
# `extra=`, in dicts and lists inside it, and as `key=value` or `"key": value` in text.
SENSITIVE_KEY_PARTS = (
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "private_key",
    "privatekey",
    "encrypted_value",
    "api_key",
    "apikey",
    "cookie",
    "sessionid",
    "credential",
)
# ...except a key that names, counts, dates or identifies one (`secret_name`, `token_id`):
# its value is not the secret, and logs need it.
NOT_SENSITIVE_SUFFIXES = ("_name", "_id", "_ids", "_count", "_at")
_SENSITIVE_KEY_WORD = (
    r"[A-Za-z0-9_-]*(?:" + "|".join(re.escape(part) for part in SENSITIVE_KEY_PARTS)
    + r")[A-Za-z0-9_-]*"
)

# Where a token may start: at a word boundary, or in JSON text right after an escape
# (`\n`, `\t`, `\u001b`), whose last character is a letter or digit.
_JSON_ESCAPED = r"(?<=\\[nrtbf])|(?<=\\u[0-9a-fA-F]{4})"
_STARTS = r"(?:\b|" + _JSON_ESCAPED + ")"

# Secrets recognisable by their shape alone, wherever they are: safe to apply to JSON text
# too, because none of them can match a quote, nor a backslash other than that of an
# escaped newline.
TOKEN_PATTERNS = [
    # GitHub's personal (ghp_), OAuth (gho_), user-to-server (ghu_), server-to-server
    # (ghs_) and refresh (ghr_) tokens: the old shape, 36 letters and digits after the
    # prefix, and the stateless one installation tokens have had since April 2026,
    # ghs_<APPID>_<JWT> (about 520 characters: digits, `_`, then base64url with two dots).
    # The characters are those of base64url and the dot, so that the whole token goes.
    re.compile(_STARTS + r"gh[pousr]_[A-Za-z0-9_.-]{20,}"),
    # Fine-grained personal access tokens: github_pat_<22>_<59>.
    re.compile(_STARTS + r"github_pat_[A-Za-z0-9_]{20,}"),
    # Airlock's own personal API tokens (requests_app.tokens: "alk_" + 43 URL-safe chars).
    re.compile(_STARTS + r"alk_[A-Za-z0-9_-]{20,}"),
    # A JWT (OIDC tokens, GitHub App JWTs): header and payload are base64url JSON objects.
    # Not after a letter or digit, rather than at a word boundary: after `_` (a stateless
    # installation token's tail, `id_token=`) a JWT is still one.
    re.compile(
        r"(?:(?<![A-Za-z0-9])|" + _JSON_ESCAPED + r")"
        r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"
    ),
    # PEM private keys (a GitHub App's key), whole or cut short, with real or escaped
    # newlines.
    re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[A-Za-z0-9+/=\s]|\\[nr])*"
        r"(?:-----END [A-Z ]*PRIVATE KEY-----)?"
    ),
]
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)(?!\[REDACTED\])[A-Za-z0-9._~+/=-]{8,}")
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@\"\\]*:)[^/\s@\"\\]+(@)")

# `token=abc`, `"client_secret": "abc"`, `Authorization: Bearer abc`, and a header as a
# tuple, `('authorization', 'Basic abc')`: applied to raw text only (messages, arguments,
# exception text), before it is encoded as JSON.
_KEY_VALUE = re.compile(
    r"(?i)(?P<key>[\"']?\b(?P<word>" + _SENSITIVE_KEY_WORD + r")[\"']?"
    r"(?:\s*[:=]\s*|(?<=[\"'])\s*,\s*))"
    r"(?P<quote>[\"'])?"
    r"(?>(?P<scheme>(?:bearer|token|basic)\s+)?)"  # atomic: "Bearer" is never the value
    r"(?!\[REDACTED\])"
    # A quoted value runs to its closing quote, spaces and all; a bare one to a delimiter.
    r"(?P<value>(?(quote)(?:(?!(?P=quote)).)+|[^\s\"',;&}\]]+))"
)


def is_sensitive_key(key: object) -> bool:
    return _is_sensitive_name(str(key))


@memoize(maxsize=4096)  # asked of the same few `extra=` names on every line
def _is_sensitive_name(name: str) -> bool:
    name = name.lower().replace("-", "_")
    if name.endswith(NOT_SENSITIVE_SUFFIXES):
        return False
    return any(part in name for part in SENSITIVE_KEY_PARTS)


def _mask_key_value(match: re.Match) -> str:
    if not is_sensitive_key(match.group("word")):
        return match.group(0)
    quote, scheme = match.group("quote") or "", match.group("scheme") or ""
    return f"{match.group('key')}{quote}{scheme}{REDACTED}"


# Each pattern above changes only text holding one of these, in lower case: a token's
# prefix (gh?_, github_pat_, alk_, a JWT's eyJ, a PEM's armour), "bearer", a URL's "://",
# or a sensitive key's name (as is_sensitive_key reads it: lower case, `-` for `_`). Most
# log lines hold none (an access log line never does), and one search for them in the
# lowered text costs a tenth of the substitutions: only text that has one goes through
# them. tests/property/test_log_redaction.py holds the two to the same output.
_TOKEN_HINTS = ("gh[pousr]_", "github_pat_", "alk_", "eyj", "-----begin ", "bearer", "://")
_TOKEN_HINT = re.compile("|".join(_TOKEN_HINTS))
_SECRET_HINT = re.compile(
    "|".join(
        _TOKEN_HINTS
        + tuple(re.escape(part) for part in SENSITIVE_KEY_PARTS)
        + tuple(re.escape(part.replace("_", "-")) for part in SENSITIVE_KEY_PARTS if "_" in part)
    )
)


def _mask_tokens(text: str) -> str:
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}", text)


def redact_tokens(text: str) -> str:
    """Mask what looks like a token by its shape; safe on text that is already JSON."""
    if _TOKEN_HINT.search(text.lower()) is None:
        return text
    return _mask_tokens(text)


def redact_text(text: str) -> str:
    """Mask tokens by shape, and the values of sensitive `key=value` pairs."""
    if _SECRET_HINT.search(text.lower()) is None:
        return text
    return _KEY_VALUE.sub(_mask_key_value, _mask_tokens(text))


def redact_value(value: object, depth: int = 0) -> object:
    """A copy of a log argument or extra with sensitive keys and token-shaped text masked."""
    if depth > 8:
        return REDACTED  # deeper than any log payload we write; refuse rather than recurse
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: REDACTED if is_sensitive_key(key) else redact_value(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = [redact_value(item, depth + 1) for item in value]
        try:
            return type(value)(items)
        except TypeError:  # a named tuple, say: its fields still matter more than its type
            return items
    return value


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    # added by ContextFilter below
    "request_id",
    "task_id",
    "task_name",
}


def record_extras(record: logging.LogRecord) -> dict:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


class ContextFilter(logging.Filter):
    """Attach the current request id and Celery task (if any) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if not hasattr(record, "task_id"):
            record.task_id, record.task_name = _current_task()
        return True


def _current_task() -> tuple[str | None, str | None]:
    # current_task is a proxy, falsy outside a running task. Resolved once: each use of
    # the proxy looks the task up again, and this runs for every log line.
    task = current_task._get_current_object()
    task_id = getattr(task.request, "id", None) if task else None
    return (task_id, task.name) if task_id else (None, None)


class RedactSecretsFilter(logging.Filter):
    """Mask secrets in the message, its arguments and its `extra=` fields.

    The message is formatted here (arguments merged in) so that a secret passed as an
    argument is masked too; formatters then only see the masked text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the record (nor leak args)
            message = f"{record.msg!s} (unformattable arguments)"
        record.msg = redact_text(message)
        record.args = None
        for key, value in record_extras(record).items():
            try:
                masked = REDACTED if is_sensitive_key(key) else redact_value(value)
            except Exception:  # logging must never break the code that logs
                masked = REDACTED
            setattr(record, key, masked)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, request_id, the task
    (in a Celery task), `extra=` fields, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ).replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if getattr(record, "task_id", None):
            entry["task_id"] = record.task_id
            entry["task_name"] = record.task_name
        for key, value in record_extras(record).items():
            entry.setdefault(key, _loggable(value))
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact_text(self.formatStack(record.stack_info))
        # A last pass over the whole line catches a token inside an object that was only
        # turned into text by json.dumps.
        return redact_tokens(json.dumps(entry, default=str, ensure_ascii=False))


def _loggable(value: object) -> object:
    # Django's own loggers pass the HttpRequest as `extra={"request": ...}`: log where it
    # went, never its headers, cookies or query string.
    if hasattr(value, "META") and hasattr(value, "path"):
        return {"method": getattr(value, "method", None), "path": value.path}
    return value


class TextFormatter(logging.Formatter):
    """Development format: readable, masked like the JSON one, context at the line's end."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        # The header (time, level, logger name) is masked by shape only, and what the
        # record carries in full: masked as one line, a logger named like a key
        # (`grants.reconciler.tokens: Revoked ...`) read as `tokens: <value>`, and the
        # message lost its first word.
        message, record.message = record.message, ""
        try:
            header = super().formatMessage(record)
        finally:
            record.message = message
        context = {
            key: value
            for key in ("request_id", "task_id")
            if (value := getattr(record, key, None))
        }
        context.update((key, _loggable(value)) for key, value in record_extras(record).items())
        body = f"{message} {json.dumps(context, default=str)}" if context else message
        return redact_tokens(header) + redact_text(body)

    def formatException(self, ei) -> str:
        return redact_text(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact_text(super().formatStack(stack_info))


def stdout_handler() -> logging.Handler:
    """The one handler. Python's warnings are routed through it as well (logger
    "py.warnings"), so that they too come out formatted and masked."""
    logging.captureWarnings(True)
    return logging.StreamHandler(sys.stdout)


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_format_and_level_from_env() -> tuple[str, str]:
    """LOG_FORMAT (json by default, text in DEBUG) and LOG_LEVEL (INFO), checked.

    Read here rather than only in settings because gunicorn's master configures its
    logging before Django is loaded (deploy/gunicorn.conf.py)."""
    log_format = env_str("LOG_FORMAT").strip().lower() or (
        "text" if env_bool("DEBUG", False) else "json"
    )
    if log_format not in LOG_FORMATS:
        raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, got {log_format!r}")
    level = env_str("LOG_LEVEL", "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise ImproperlyConfigured(
            f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}"
        )
    return log_format, level


def logging_config(*, log_format: str, level: str) -> dict:
    """The dictConfig shared by Django, gunicorn and Celery: one handler on stdout that
    adds context, masks secrets and formats as `log_format` ("json" or "text")."""
    handler = {
        "()": "portal.logging.stdout_handler",
        "filters": ["context", "redact"],
        "formatter": log_format,
    }
    # Django's default config gives these loggers handlers of their own (console, mail
    # admins, runserver's); they go through ours instead, so nothing is written unmasked
    # or twice.
    through_root = {"handlers": [], "level": level, "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": "portal.logging.ContextFilter"},
            "redact": {"()": "portal.logging.RedactSecretsFilter"},
        },
        "formatters": {
            "json": {"()": "portal.logging.JsonFormatter"},
            "text": {"()": "portal.logging.TextFormatter"},
        },
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django": through_root,
            "django.server": through_root,
            # SQL and its parameters (secret values among them) are never logged, even at
            # LOG_LEVEL=DEBUG.
            "django.db.backends": {"handlers": [], "level": "INFO", "propagate": True},
            # PyGithub gives "github" a raw stderr handler of its own when imported (so it
            # is imported before this config, which replaces it), and logs whole answer
            # bodies at DEBUG: minted tokens among them. Never below INFO.
            "github": {"handlers": [], "level": "INFO", "propagate": True},
        },
    }


@after_setup_task_logger.connect
def _task_logs_through_root(logger, **kwargs):
    # A Celery worker gives its task logger a plain-text handler of its own and stops it
    # propagating; send task logs through the root handler (JSON, masked) instead.
    logger.handlers = [h for h in logger.handlers if isinstance(h, logging.NullHandler)]
    logger.propagate = True
