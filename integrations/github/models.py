"""What the GitHub integration remembers between processes: the last answer to each GET it
repeats, so that the next one can be conditional."""

from django.db import models


class RememberedRead(models.Model):
    """The ETag of the last 200 to a GET, and what was parsed from that answer.

    The next GET of the URL sends If-None-Match with the ETag; a 304 (which GitHub does not
    count against the hourly rate limit) means the answer would be the same, so `parsed` is
    it. Kept in the database rather than in a process's memory: the hourly drift check and
    `manage.py reconcile` run in processes that come and go, and Django's cache is each
    process's own unless CACHE_URL names a Redis.

    `kind` names what `parsed` holds (client.py's readers); a reader whose parse changes
    takes a new kind, so that an answer parsed the old way is never taken for the new shape.
    A kind may also be remembered for good, without asking again: a login's numeric id
    (GitHub ids never change).
    """

    kind = models.CharField(max_length=64)
    # The absolute URL, query included: a different GITHUB_API_URL is a different answer.
    url = models.CharField(max_length=1000)
    etag = models.CharField(max_length=200, blank=True)
    parsed = models.JSONField()
    read_at = models.DateTimeField()

    class Meta:
        constraints = [
            # One answer per URL and kind: remember() updates it in place (client.py).
            models.UniqueConstraint(fields=["kind", "url"], name="one_remembered_read_per_url"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.url} ({self.etag or 'no ETag'})"
