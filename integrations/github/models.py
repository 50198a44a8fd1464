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


class RateLimitBudget(models.Model):
    """GitHub's hourly quota as its last answer to one client reported it (x-ratelimit-*):
    what budget.py decides from (which work may spend it) and what the dashboard and
    /metrics show.

    In the database, like RememberedRead: the answer that shows the quota running low
    arrives in whichever worker made the call, and the sweep, the drift check and the team
    sync that must hold back run in other processes (beat's tasks, `manage.py`), which
    share no memory and, without CACHE_URL, no cache either. budget.budget_observed writes
    it at most every few seconds per client unless the band or the window changes.
    """

    # GitHubClient.rate_limit_client: engine, app_installation, app, minted_token.
    client = models.CharField(max_length=32, unique=True)
    remaining = models.PositiveIntegerField()
    limit = models.PositiveIntegerField()
    # x-ratelimit-reset: when GitHub starts a new window; the row says nothing after it.
    reset_at = models.DateTimeField()
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.client}: {self.remaining} of {self.limit} until {self.reset_at:%H:%M:%S}"


class InstallationAccessToken(models.Model):
    """The one installation token of an App installation that every process uses
    (installation_tokens.py), until shortly before it expires.

    In the database, like RememberedRead, because GitHub's ETags are specific to the token: a
    token of its own per process (worker, beat, each `manage.py reconcile`) made every new
    process's conditional reads full 200s again. The token is a credential: kept encrypted
    (core.crypto, AIRLOCK_ENCRYPTION_KEYS), with a digest to drop exactly the token GitHub
    refused. `generation` is the compare-and-set that lets one process replace it at a time;
    `minting_until` is that process's claim, which runs out should it die while minting.
    """

    # One App and installation on one GitHub (GITHUB_API_URL): another is another token.
    api_url = models.CharField(max_length=1000)
    app_id = models.CharField(max_length=32)
    installation_id = models.BigIntegerField()
    encrypted_token = models.BinaryField(default=b"")  # b"": none yet, or dropped
    token_digest = models.CharField(max_length=64, blank=True)  # sha256 hex of the token
    expires_at = models.DateTimeField()
    generation = models.PositiveIntegerField(default=0)
    minting_until = models.DateTimeField()

    class Meta:
        constraints = [
            # One shared token per installation: installation_tokens.py reads and replaces
            # this one row.
            models.UniqueConstraint(
                fields=["api_url", "app_id", "installation_id"],
                name="one_shared_token_per_installation",
            ),
        ]

    def __str__(self) -> str:
        return f"installation {self.installation_id} (token until {self.expires_at:%H:%M:%S})"
