"""Append-only audit log, hash-chained under a key from the environment. Every change in
Airlock is recorded through audit.log_event(), in the same transaction as the change."""


def log_event(**kwargs):
    # Imported lazily: this package is imported before Django's app registry is ready.
    from audit.services import log_event as _log_event

    return _log_event(**kwargs)
