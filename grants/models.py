"""Grants and the GitHub targets they touch (environments, organization secrets), each
target with its baseline, what Airlock added to it, and its reconcile lease."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class LeasedTarget(models.Model):
    """Fields shared by everything the reconciler locks.

    The lease is taken by compare-and-set (grants.reconciler), so no database transaction
    is held open across GitHub calls. generation goes up on every request to reconcile:
    the lease holder only lets go when the generation is the one it started from, so a
    change that arrived while it worked is never missed.
    """

    dry_run = models.BooleanField(
        default=False,
        help_text="Created while no GitHub credentials were set: only simulated, never written",
    )
    lease_owner = models.CharField(max_length=200, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    generation = models.PositiveBigIntegerField(default=0, editable=False)
    # What GitHub looked like after our last read or write; the drift check compares.
    observed = models.JSONField(null=True, blank=True, editable=False)
    # In dry-run, the simulated GitHub state (integrations.github.DryRunGitHub).
    dry_run_state = models.JSONField(default=dict, blank=True, editable=False)
    last_reconciled_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True


class Target(LeasedTarget):
    """An environment: the unit of reviewer and environment-secret reconciliation."""

    # Canonical names (core.names), as on the requests granted here.
    repository = models.CharField(max_length=200, help_text="owner/repo")
    environment = models.CharField(max_length=255)
    # Cached from GET /repos/{owner}/{repo}: organization secrets select repositories by id.
    repository_id = models.BigIntegerField(null=True, blank=True, editable=False)
    # [{"type": "User"|"Team", "id": ..., "login"|"slug": ...}] before Airlock's first write.
    baseline_reviewers = models.JSONField(default=list, blank=True, editable=False)
    baseline_recorded_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Users Airlock added (or was about to add: written before the PUT, so a crash after
    # the PUT cannot leave a reviewer Airlock forgets to remove). Only these are removed.
    airlock_reviewers = models.JSONField(default=list, blank=True, editable=False)

    class Meta:
        ordering = ["repository", "environment"]
        constraints = [
            # grants.services.target_for finds-or-creates relying on this: requests for
            # "Acme/API" and "acme/api" (one canonical name) reconcile the same environment.
            models.UniqueConstraint(
                fields=["repository", "environment", "dry_run"], name="unique_target"
            ),
        ]

    def __str__(self):
        return f"{self.repository}:{self.environment}{' (dry run)' if self.dry_run else ''}"


class EnvironmentSecret(models.Model):
    """An environment secret Airlock writes while grants last."""

    target = models.ForeignKey(Target, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=100)
    # Whether the secret existed before Airlock first wanted to write it. None: not yet
    # looked. A secret that was there first is someone else's: Airlock neither overwrites
    # nor deletes it, and its grants fail with a message saying so.
    baseline_present = models.BooleanField(null=True, blank=True, editable=False)
    baseline_recorded_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set before the PUT and cleared after the DELETE, so a crash in between errs on the
    # side of deleting (Airlock's own) secret rather than leaving it behind.
    airlock_wrote = models.BooleanField(default=False, editable=False)
    written_at = models.DateTimeField(null=True, blank=True, editable=False)
    # sha256 of the encrypted value written, so a changed definition is written again.
    written_digest = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["target", "name"]
        constraints = [
            # The reconciler keeps one row per secret and environment (get_or_create).
            models.UniqueConstraint(fields=["target", "name"], name="one_secret_row_per_target"),
        ]

    def __str__(self):
        return f"{self.name} on {self.target}"


class OrgSecretTarget(LeasedTarget):
    """An organization secret with selected repositories."""

    # Canonical names (core.names): the org lower-cased, the secret's name upper-cased.
    org = models.CharField(max_length=100)
    name = models.CharField(max_length=100)
    baseline_repository_ids = models.JSONField(default=list, blank=True, editable=False)
    baseline_recorded_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Repository ids Airlock added (written before the PUT, like Target.airlock_reviewers).
    airlock_repository_ids = models.JSONField(default=list, blank=True, editable=False)

    class Meta:
        ordering = ["org", "name"]
        verbose_name = "organization secret target"
        constraints = [
            # grants.services finds-or-creates relying on this (on canonical names, as
            # GitHub's are case-blind).
            models.UniqueConstraint(
                fields=["org", "name", "dry_run"], name="unique_org_secret_target"
            ),
        ]

    def __str__(self):
        return f"{self.org}/{self.name}{' (dry run)' if self.dry_run else ''}"


class GrantQuerySet(models.QuerySet):
    def revocation_overdue(self):
        return self.filter(state=Grant.State.APPLIED, revocation_overdue_since__isnull=False)


class Grant(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"  # approved, not yet on GitHub
        APPLIED = "applied", "Applied"  # on GitHub now (or being removed)
        REVOKED = "revoked", "Revoked"  # removed from GitHub (or never applied)
        FAILED = "failed", "Failed"  # GitHub refused; never applied

    class Kind(models.TextChoices):
        REVIEWER = "reviewer", "Required reviewer"
        ENVIRONMENT_SECRET = "environment_secret", "Environment secret"
        ORGANIZATION_SECRET = "organization_secret", "Organization secret"
        # Nothing is written to GitHub to apply it: tokens are minted on the job's demand
        # (MintedToken) and revoked when it ends.
        TOKEN = "token", "GitHub token"

    class EndReason(models.TextChoices):
        EXPIRED = "expired"
        REVOKED = "revoked"  # ended early by a person
        WITHDRAWN = "withdrawn"  # the request was closed before the grant was applied

    OPEN_STATES = (State.PENDING, State.APPLIED)

    access_request = models.OneToOneField(
        "requests_app.AccessRequest", on_delete=models.PROTECT, related_name="grant"
    )
    target = models.ForeignKey(Target, on_delete=models.PROTECT, related_name="grants")
    org_secret = models.ForeignKey(
        OrgSecretTarget, null=True, blank=True, on_delete=models.PROTECT, related_name="grants"
    )
    kind = models.CharField(max_length=30, choices=Kind.choices)
    secret = models.ForeignKey(
        "requests_app.SecretDefinition",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    login = models.CharField(max_length=100, help_text="GitHub login of the requester")
    # Resolved once (GET /users/{login}) and kept: the environment API wants ids, and the id
    # survives a rename.
    github_user_id = models.BigIntegerField(null=True, blank=True)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.PENDING, db_index=True
    )
    created_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    revoke_requested_at = models.DateTimeField(null=True, blank=True)
    revoke_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=20, choices=EndReason.choices, blank=True)
    # GitHub's message for the last failed attempt (or for the failure itself).
    last_error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Set when a revocation is late (failed, or not done by the sweep after the grace); kept
    # until it succeeds. Admins see it; the sweep retries it every time.
    revocation_overdue_since = models.DateTimeField(null=True, blank=True, db_index=True)
    # The moment a reconcile was last enqueued for (start or expiry), so each sweep does not
    # enqueue it again.
    reconcile_scheduled_for = models.DateTimeField(null=True, blank=True, editable=False)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "expires_at"], name="grant_state_expiry"),
            # GET /api/v1/grants/ and the admin list, newest first: read 50 down the index
            # instead of sorting every grant (benchmark 7 measured the sort on disk at 300k).
            models.Index(fields=["-created_at", "-id"], name="grant_newest"),
        ]
        constraints = [
            # "Applied" means on GitHub with a known end: the sweep schedules from
            # expires_at and the request's API answer is kept in step with it.
            models.CheckConstraint(
                condition=~Q(state="applied")
                | Q(applied_at__isnull=False, expires_at__isnull=False),
                name="applied_grant_has_times",
            ),
            # The requester's page shows "revoked at"; the sweep never looks at it again.
            models.CheckConstraint(
                condition=~Q(state="revoked") | Q(revoked_at__isnull=False),
                name="revoked_grant_has_time",
            ),
            # The reconciler picks the secret to write from here, and the org secret
            # target to lock for organization secrets.
            models.CheckConstraint(
                condition=Q(kind__in=["reviewer", "token"], secret__isnull=True)
                | (~Q(kind__in=["reviewer", "token"]) & Q(secret__isnull=False)),
                name="grant_secret_iff_secret_kind",
            ),
            models.CheckConstraint(
                condition=Q(kind="organization_secret", org_secret__isnull=False)
                | (~Q(kind="organization_secret") & Q(org_secret__isnull=True)),
                name="grant_org_secret_iff_org_kind",
            ),
        ]

    def __str__(self):
        what = self.secret.name if self.secret_id else self.login
        return f"grant #{self.pk}: {self.get_kind_display().lower()} {what} on {self.target}"

    @property
    def is_revocation_overdue(self) -> bool:
        return self.state == self.State.APPLIED and self.revocation_overdue_since is not None

    @property
    def is_active_now(self) -> bool:
        return (
            self.state == self.State.APPLIED
            and self.revoke_requested_at is None
            and self.expires_at is not None
            and self.expires_at > timezone.now()
        )

    @property
    def waits_for_start(self) -> bool:
        starts_at = self.access_request.starts_at
        return self.state == self.State.PENDING and starts_at is not None and (
            starts_at > timezone.now()
        )

    @property
    def github_badge(self) -> str:
        """The status badge colour (static/airlock.css) for github_status."""
        return {
            "pending": "pending",
            "retrying": "pending",
            "applied": "active",
            "being revoked": "approved",
            "revocation overdue": "failed",
            "revoked": "expired",
            "failed": "failed",
        }[self.github_status]

    @property
    def github_status(self) -> str:
        """A short label for people: what GitHub looks like for this grant."""
        if self.state == self.State.PENDING:
            return "retrying" if self.last_error else "pending"
        if self.state == self.State.APPLIED:
            if self.is_revocation_overdue:
                return "revocation overdue"
            if self.revoke_requested_at or (self.expires_at and self.expires_at <= timezone.now()):
                return "being revoked"
            return "applied"
        return self.state


class MintedToken(models.Model):
    """A GitHub App installation token minted for a grant: for a job's exchange
    (POST /api/v1/tokens), or as the value of a GitHub token secret.

    GitHub revokes an installation token only when called with that token, so Airlock keeps
    it, encrypted like secret values, until the grant ends and it is revoked, or until it
    expires on its own; then the value is erased. It is never shown, logged or audited: its
    digest names it.
    """

    class Purpose(models.TextChoices):
        EXCHANGE = "exchange", "Handed to a job (POST /api/v1/tokens)"
        SECRET = "secret", "Written as a GitHub token secret"

    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="minted_tokens")
    purpose = models.CharField(max_length=20, choices=Purpose.choices)
    # The one repository it is restricted to (canonical), and what it may do there.
    repository = models.CharField(max_length=200)
    permissions = models.JSONField(default=dict)
    # Fernet token of the token (requests_app.crypto); b"" once erased.
    encrypted_token = models.BinaryField(default=b"", editable=False)
    # sha256 (hex) of the token: names it in the audit log and the admin.
    digest = models.CharField(max_length=64, unique=True, editable=False)
    dry_run = models.BooleanField(default=False, help_text="Simulated: nothing was minted")
    minted_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    erased_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-minted_at", "-id"]
        indexes = [
            # The engine's question when a grant ends: its tokens not yet erased.
            models.Index(
                fields=["grant"], condition=Q(erased_at__isnull=True), name="token_unerased"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(erased_at__isnull=True) | Q(encrypted_token=b""),
                name="erased_token_has_no_value",
            ),
        ]

    def __str__(self):
        return f"token {self.digest[:12]} for grant #{self.grant_id}"

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None


class DeploymentGate(models.Model):
    """One deployment waiting on Airlock's custom deployment protection rule.

    GitHub sends a `deployment_protection_rule` webhook (POST /github/webhook) when a
    workflow job reaches an environment with Airlock's GitHub App enabled as a protection
    rule, and keeps the job waiting until the App answers through the callback. A gate is
    approved when the person who triggered the run (the webhook's sender) holds an active
    grant for the environment (at once, or as soon as a grant becomes active), and rejected
    when their request for it is closed without one. grants.gates holds the rules.

    The decision is recorded first, in the database with its audit event; posting it to
    GitHub follows outside any transaction (an outbox: posted_at stays empty until GitHub
    accepted it, and the sweep posts whatever is left).
    """

    class State(models.TextChoices):
        PENDING = "pending", "Pending"  # waiting for a grant
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    DECIDED_STATES = (State.APPROVED, State.REJECTED)

    # X-GitHub-Delivery of the webhook that opened the gate (GitHub's id of the event,
    # which its own redeliveries share).
    delivery_id = models.CharField(max_length=100, unique=True, editable=False)
    # What the event is about: this deployment of this run, waiting in this environment,
    # for this installation (grants.gates.GateRequest.subject). The delivery id is not
    # signed, so a replay can come under a fresh one; the event cannot. Unique: grants.gates
    # acts on an event once relying on this constraint (a replay's insert fails, and
    # nothing else happens, however many arrive at once).
    subject = models.CharField(max_length=500, unique=True, editable=False)
    # Canonical names (core.names): matched to requests by plain equality.
    repository = models.CharField(max_length=200, db_index=True, help_text="owner/repo")
    environment = models.CharField(max_length=255)
    # Taken from deployment_callback_url (checked to be GITHUB_API_URL's own callback path);
    # the answer is posted to the path rebuilt from these, never to the URL as given.
    run_id = models.BigIntegerField()
    callback_url = models.TextField(editable=False)
    installation_id = models.BigIntegerField(help_text="The App installation that asked")
    login = models.CharField(max_length=100, help_text="Who triggered the run (sender)")
    # The sender's numeric GitHub id (it survives a rename, a login can change hands): the
    # person is matched to requests by it as the check matches them
    # (requests_app.selectors.requests_serving_github_person). Empty on gates opened before
    # it was kept, which match by login.
    sender_id = models.BigIntegerField(
        null=True, blank=True, help_text="The sender's GitHub account id"
    )
    deployment_id = models.BigIntegerField(null=True, blank=True)
    event = models.CharField(max_length=100, blank=True, help_text="What triggered the run")
    ref = models.CharField(max_length=255, blank=True)
    sha = models.CharField(max_length=64, blank=True)
    state = models.CharField(
        max_length=20, choices=State.choices, default=State.PENDING, db_index=True
    )
    # The request whose grant approved the gate, or whose closing rejected it.
    access_request = models.ForeignKey(
        "requests_app.AccessRequest",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="deployment_gates",
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    # What GitHub shows with the decision (or, while pending, with the status comment).
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    # The outbox: what has reached GitHub, and the attempts to get it there.
    notice_posted_at = models.DateTimeField(null=True, blank=True)  # the "pending" comment
    posted_at = models.DateTimeField(null=True, blank=True)  # the decision
    post_attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker posting holds the gate until then, so the task and the sweep never post the
    # same answer at once (taken by compare-and-set, like the reconciler's lease).
    claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True)
    # GitHub refused for good (e.g. the run is gone): not tried again; shown to admins.
    gave_up_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "posted_at"], name="gate_state_posted"),
        ]
        constraints = [
            # The sweep posts decided gates (decided_at set) and the pages show when.
            models.CheckConstraint(
                condition=Q(state="pending", decided_at__isnull=True)
                | (~Q(state="pending") & Q(decided_at__isnull=False)),
                name="gate_decided_iff_decided_at",
            ),
            # Only a decision is ever posted as posted_at.
            models.CheckConstraint(
                condition=Q(posted_at__isnull=True) | ~Q(state="pending"),
                name="gate_posted_only_when_decided",
            ),
        ]

    def __str__(self):
        return (
            f"gate #{self.pk}: {self.login} to {self.repository}:{self.environment} "
            f"(run {self.run_id})"
        )

    @property
    def callback_path(self) -> str:
        """The callback as a path under GITHUB_API_URL."""
        owner, name = self.repository.split("/", 1)
        return f"/repos/{owner}/{name}/actions/runs/{self.run_id}/deployment_protection_rule"


class WorkflowRunDelivery(models.Model):
    """One `workflow_run` "completed" webhook received (POST /github/webhook): an attempt of
    a workflow run ended, so the access bound to it ended too (grants.runs). Kept so that a
    replay is recognised and changes nothing, and to show what each completion ended."""

    # X-GitHub-Delivery (GitHub's id of the event, which its own redeliveries share).
    delivery_id = models.CharField(max_length=100, unique=True, editable=False)
    # Canonical (core.names), as requests keep it: matched by plain equality.
    repository = models.CharField(max_length=200, editable=False, help_text="owner/repo")
    run_id = models.PositiveBigIntegerField(editable=False)
    run_attempt = models.PositiveIntegerField(editable=False)
    # GitHub's conclusion of the attempt (success, failure, cancelled, ...); "" when null.
    conclusion = models.CharField(max_length=50, blank=True, editable=False)
    received_at = models.DateTimeField(default=timezone.now, editable=False)
    grants_ended = models.PositiveIntegerField(
        default=0, editable=False, help_text="Requests of the run whose access ended"
    )
    requests_cancelled = models.PositiveIntegerField(
        default=0, editable=False, help_text="Pending requests of the run cancelled"
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "workflow run deliveries"
        constraints = [
            # An attempt completes once. The delivery id is not signed, so a replay can come
            # under a fresh one (or the App and a repository webhook both deliver it):
            # grants.runs acts on a completion once relying on this constraint.
            models.UniqueConstraint(
                fields=["repository", "run_id", "run_attempt"], name="workflow_run_completed_once"
            ),
        ]

    def __str__(self):
        return f"run {self.run_id} attempt {self.run_attempt} of {self.repository} completed"
