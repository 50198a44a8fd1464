"""Conditional reads' memory (models.RememberedRead): the ETag a GET sends back, and the
parsed answer a 304 stands for."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone


@dataclass(frozen=True)
class Remembered:
    etag: str
    parsed: object


# The model is imported in each function, not at the top: this package is imported while
# Django loads the apps (its AppConfig lives in it), before a model may be defined.


def recall(kind: str, url: str) -> Remembered | None:
    from integrations.github.models import RememberedRead

    row = RememberedRead.objects.filter(kind=kind, url=url).values_list("etag", "parsed").first()
    return Remembered(etag=row[0], parsed=row[1]) if row else None


def forget(kind: str, url: str) -> None:
    from integrations.github.models import RememberedRead

    RememberedRead.objects.filter(kind=kind, url=url).delete()


def remember(kind: str, url: str, *, etag: str, parsed: object) -> None:
    """Keep this answer (the ETag and what was parsed from the same answer, together, so a
    304 can never stand for another answer than the one its ETag names)."""
    from integrations.github.models import RememberedRead

    RememberedRead.objects.update_or_create(
        kind=kind, url=url, defaults={"etag": etag, "parsed": parsed, "read_at": timezone.now()}
    )
