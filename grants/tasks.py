"""Celery tasks of the grant engine: thin, idempotent, loading by id."""


def enqueue_grant_for_request(request_id: int) -> None:
    """Called after an approval commits. The grant engine (next issue) applies it here."""
