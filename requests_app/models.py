"""Who may get access to what: approver groups, access policies, secret definitions,
access requests and their approvals."""

import re
from datetime import datetime, timedelta
from urllib.parse import quote

from django.conf import settings
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.durations import validate_positive_duration
from core.names import validate_github_login, validate_github_team, validate_slack_channel
from requests_app.crypto import decrypt_value, encrypt_value


class AccessKind(models.TextChoices):
    REVIEWER = "reviewer", "Required reviewer"
    SECRET = "secret", "Secret"
    # A GitHub App installation token for the one repository, minted per grant on the
    # job's demand (POST /api/v1/tokens) and revoked when the grant ends.
    TOKEN = "token", "GitHub token (minted per grant)"


class ApproverGroup(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # "org/team-slug": members can be synced from this GitHub team (see the grant engine).
    github_team = models.CharField(max_length=200, blank=True, validators=[validate_github_team])
    # A Slack channel id (C…/G…): requests routed to the group are posted there as cards
    # its members decide from (requests_app.slack).
    slack_channel = models.CharField(
        max_length=32,
        blank=True,
        validators=[validate_slack_channel],
        help_text="Slack channel id (e.g. C0123456789) where requests are posted as cards",
    )
    # Team sync (from github_team): when members were last read, and why it last failed.
    synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    sync_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def member_logins(self) -> list[str]:
        return sorted(self.members.values_list("login", flat=True))


class ApproverGroupMember(models.Model):
    """A GitHub login in a group. Kept as a login, not a user, so that people can be made
    approvers before they first sign in; they are matched to users by username."""

    group = models.ForeignKey(ApproverGroup, on_delete=models.CASCADE, related_name="members")
    login = models.CharField(
        max_length=100,
        validators=[validate_github_login],
        help_text="GitHub login (the portal username)",
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["login"]
        constraints = [
            # apply_policies and team sync add members idempotently relying on this.
            models.UniqueConstraint(
                models.functions.Lower("login"), "group", name="unique_login_per_group"
            ),
        ]

    def __str__(self):
        return f"{self.login} in {self.group}"


class SecretDefinition(models.Model):
    class Kind(models.TextChoices):
        ENVIRONMENT = "environment", "Environment secret (value held by Airlock)"
        ORGANIZATION = "organization", "Organization secret (repository added while granted)"
        # The value is a GitHub App installation token minted for the grant, scoped to the
        # target's repository with `permissions`, replaced before it expires, revoked at
        # the end: Airlock holds no long-lived value.
        GITHUB_TOKEN = "github_token", "GitHub token (minted per grant, environment secret)"

    name = models.CharField(
        max_length=100,
        unique=True,
        help_text="The secret's name on GitHub, e.g. DEPLOY_TOKEN",
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    org = models.CharField(max_length=100, blank=True, help_text="Organization secrets only")
    # GitHub token secrets only: the minted token's permissions, {name: level}
    # (integrations.github.permissions).
    permissions = models.JSONField(
        default=dict,
        blank=True,
        help_text='GitHub token secrets only: e.g. {"contents": "read", "packages": "write"}',
    )
    # Fernet token of the value; never shown back (environment secrets only).
    encrypted_value = models.BinaryField(blank=True, default=b"", editable=False)
    value_updated_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # The grant engine needs an org to add repositories to an organization secret.
            models.CheckConstraint(
                condition=~Q(kind="organization") | ~Q(org=""),
                name="organization_secret_has_org",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def has_value(self) -> bool:
        return bool(self.encrypted_value)

    def set_value(self, value: str) -> None:
        self.encrypted_value = encrypt_value(value)
        self.value_updated_at = timezone.now()

    def get_value(self) -> str:
        return decrypt_value(bytes(self.encrypted_value))


class AccessPolicy(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # Glob patterns (fnmatch), kept lower-case like the canonical names they are matched
    # against (core.names, requests_app.policies): "acme/*", "production", "prod-*".
    repository_patterns = models.JSONField(default=list)
    environment_patterns = models.JSONField(default=list)
    access_kinds = models.JSONField(default=list, help_text='e.g. ["reviewer", "secret"]')
    secrets = models.ManyToManyField(SecretDefinition, blank=True, related_name="policies")
    # Token access only: what a minted token may do in the target's repository, {name:
    # level} with GitHub App permission names (integrations.github.permissions); a job's
    # exchange may ask for less, never more.
    token_permissions = models.JSONField(
        default=dict,
        blank=True,
        help_text='Token access only: e.g. {"contents": "write", "packages": "write"}',
    )
    # The bounds of a policy's numbers and durations are these fields' validators: the
    # admin form and the policy file both check them (requests_app.rules).
    max_duration = models.DurationField(
        default=timedelta(hours=4), validators=[validate_positive_duration]
    )
    default_duration = models.DurationField(
        default=timedelta(hours=1), validators=[validate_positive_duration]
    )
    approvals_required = models.PositiveSmallIntegerField(
        default=1,
        validators=[MaxValueValidator(10)],
        help_text="Distinct approvals needed; 0 approves automatically (audited)",
    )
    approver_groups = models.ManyToManyField(ApproverGroup, blank=True, related_name="policies")
    reason_min_length = models.PositiveSmallIntegerField(
        default=10, validators=[MaxValueValidator(1000)]
    )
    pending_ttl = models.DurationField(
        default=timedelta(hours=24), validators=[validate_positive_duration]
    )
    break_glass = models.BooleanField(default=False, help_text="Allow break-glass access")
    break_glass_max_duration = models.DurationField(
        default=timedelta(hours=1), validators=[validate_positive_duration]
    )
    slack_approvals = models.BooleanField(
        default=True,
        help_text="Approvers may approve and deny from the Slack card; off: the card links "
        "to the admin instead",
    )
    workflow_requests = models.BooleanField(
        default=False,
        help_text="Let workflows file requests for this policy's targets with their OIDC "
        "token; the access is bound to the run and ends with it",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "access policies"
        constraints = [
            # Routing and the request form rely on a default that fits within the maximum.
            models.CheckConstraint(
                condition=Q(default_duration__lte=models.F("max_duration")),
                name="default_duration_within_max",
            ),
            models.CheckConstraint(
                condition=Q(max_duration__gt=timedelta(0)), name="max_duration_positive"
            ),
        ]

    def __str__(self):
        return self.name


# A commit id: hex digits only (SHA-1's 40, SHA-256's 64, or an abbreviation of either), so
# that nothing but a commit id is ever put into a link to GitHub.
_COMMIT_ID = re.compile(r"[0-9a-fA-F]{7,64}")


class AccessRequestQuerySet(models.QuerySet):
    def in_force(self, now: datetime):
        """Requests whose access holds at `now`: active and not yet past their end. The one
        statement of the rule; AccessRequest.is_in_force is the same for one row."""
        return self.filter(in_force_at(now))


def in_force_at(now: datetime, prefix: str = "") -> Q:
    """The "in force" rule as a condition, for a query that reaches requests through a
    relation (prefix "access_request__" from grants)."""
    return Q(**{f"{prefix}status": AccessRequest.Status.ACTIVE, f"{prefix}expires_at__gt": now})


class AccessRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        ACTIVE = "active"
        EXPIRED = "expired"
        REVOKED = "revoked"
        DENIED = "denied"
        CANCELLED = "cancelled"
        TIMED_OUT = "timed_out"
        FAILED = "failed"

    class ReviewOutcome(models.TextChoices):
        ACKNOWLEDGED = "acknowledged"
        ESCALATED = "escalated"

    OPEN_STATUSES = (Status.PENDING, Status.APPROVED, Status.ACTIVE)
    # Final: the request holds no access and never will again.
    CLOSED_STATUSES = (
        Status.EXPIRED,
        Status.REVOKED,
        Status.DENIED,
        Status.CANCELLED,
        Status.TIMED_OUT,
        Status.FAILED,
    )

    # The longest duration any request may name, whatever its policy: a type bound that
    # the request form and the API check alike, so that no number reaches date arithmetic
    # (a huge one overflows timedelta) or the column. The policy's own maximum, always far
    # below, is the service's to check.
    MAX_DURATION_MINUTES = 366 * 24 * 60

    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="access_requests"
    )
    # The requester's identity when they filed it (selectors.approver_identity), so that no
    # other account of theirs approves it even after a rename or a relinked GitHub account.
    requester_identity = models.CharField(max_length=160, blank=True, editable=False)
    # The target, in its canonical form (core.names): every lookup by target compares these
    # by plain equality.
    repository = models.CharField(max_length=200, db_index=True, help_text="owner/repo")
    environment = models.CharField(max_length=255, db_index=True)
    access = models.CharField(max_length=20, choices=AccessKind.choices)
    secret = models.ForeignKey(
        SecretDefinition, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.TextField()
    duration_minutes = models.PositiveIntegerField()
    policy = models.ForeignKey(AccessPolicy, on_delete=models.PROTECT, related_name="requests")
    # Copied from the policy when the request is made, so editing a policy never changes
    # what an open request needs.
    approvals_required = models.PositiveSmallIntegerField()
    break_glass = models.BooleanField(default=False)
    # An extension asks for more time on an open request's target: same policy, same
    # approvals, and the engine continues access without removing it in between.
    extends = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="extensions"
    )
    # Optional restrictions the grant check enforces from a workflow's OIDC claims
    # (globs on `job_workflow_ref` and `ref`); empty means any workflow or ref.
    workflow_ref_pattern = models.CharField(max_length=500, blank=True)
    ref_pattern = models.CharField(max_length=255, blank=True)
    # Token access and GitHub token secrets: the permissions its minted tokens may carry,
    # {name: level}, copied when the request is filed from the policy's token_permissions
    # (token access) or the secret definition's permissions (a GitHub token secret), so
    # that what was approved is what a job gets, whatever they say later (grants.tokens;
    # a token secret's edit may narrow a grant's tokens, never widen them: token_secrets).
    token_permissions = models.JSONField(default=dict, blank=True, editable=False)
    # The workflow run a request is bound to, when a workflow filed it (its verified OIDC
    # claims): Airlock's check and deployment gates answer on its grant only to this run,
    # and it ends when the run completes (on GitHub the access is the environment's while
    # it lasts). Null
    # run_id: a person filed it, and no run is bound.
    run_id = models.PositiveBigIntegerField(null=True, blank=True, editable=False)
    run_attempt = models.PositiveIntegerField(null=True, blank=True, editable=False)
    run_workflow_ref = models.CharField(max_length=500, blank=True, editable=False)
    run_ref = models.CharField(max_length=255, blank=True, editable=False)
    run_sha = models.CharField(max_length=64, blank=True, editable=False)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    pending_until = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    # Who closed the request without granting it (deny, cancel), and why.
    closed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    close_comment = models.TextField(blank=True)
    # Set by the grant engine when access is really granted on GitHub, and when it ends.
    granted_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    expiry_reminder_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Extensions only, set when the extension's grant starts: True when it continued the
    # original's access without a gap (its expiry counts from the original's), False when
    # the original had already ended and it is a new grant (counted from its own start).
    continues_original = models.BooleanField(null=True, blank=True, editable=False)
    # After-the-fact review of break-glass access by an approver.
    review_outcome = models.CharField(
        max_length=20, choices=ReviewOutcome.choices, blank=True, db_index=True
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)

    objects = AccessRequestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["repository", "environment", "status"], name="request_target"),
            # The grant check (grants/check/) looks up in-force requests by their
            # canonical target; without this it reads every active request.
            models.Index(
                fields=["repository", "environment"],
                condition=Q(status="active"),
                name="request_in_force_target",
            ),
            # A run's requests, found when the run files again, releases or completes.
            models.Index(
                fields=["repository", "run_id"],
                condition=Q(run_id__isnull=False),
                name="request_run",
            ),
            # Break-glass access nobody has reviewed yet, oldest first: the dashboard counts
            # and lists it on every load (selectors.admin_dashboard_requests). Few rows
            # match, so the count reads those and not every request ever filed.
            models.Index(
                fields=["created_at", "id"],
                condition=Q(break_glass=True, review_outcome=""),
                name="request_break_glass_review",
            ),
            # One repository's or environment's requests, newest first: the admin's and the
            # API's filters walk these and stop after a page, instead of sorting the
            # target's whole history on every load.
            models.Index(
                fields=["repository", "-created_at", "-id"], name="request_repository_newest"
            ),
            models.Index(
                fields=["environment", "-created_at", "-id"], name="request_environment_newest"
            ),
        ]
        constraints = [
            # The engine and the API's check rely on a secret request naming its secret.
            models.CheckConstraint(
                condition=Q(access__in=["reviewer", "token"], secret__isnull=True)
                | Q(access="secret", secret__isnull=False),
                name="secret_given_iff_secret_access",
            ),
            models.CheckConstraint(
                condition=Q(duration_minutes__gt=0), name="duration_positive"
            ),
            # "Active" means granted and timed: the check answers from expires_at.
            models.CheckConstraint(
                condition=~Q(status="active")
                | Q(granted_at__isnull=False, expires_at__isnull=False),
                name="active_has_grant_times",
            ),
        ]

    def __str__(self):
        return f"#{self.pk} {self.access} on {self.target}"

    @property
    def target(self) -> str:
        return f"{self.repository}:{self.environment}"

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.duration_minutes)

    @property
    def is_run_bound(self) -> bool:
        return self.run_id is not None

    @property
    def run_url(self) -> str:
        """The run on GitHub ("" when no run is bound)."""
        if self.run_id is None:
            return ""
        return f"{self._run_repository_url}/actions/runs/{int(self.run_id)}"

    @property
    def run_commit_url(self) -> str:
        """The run's commit on GitHub; "" when no run is bound, or when the sha is not a
        commit id (hex), since only a commit id is put into a link."""
        if self.run_id is None or not self.run_sha_is_commit_id:
            return ""
        return f"{self._run_repository_url}/commit/{self.run_sha}"

    @property
    def _run_repository_url(self) -> str:
        # The repository is canonical (core.names), which quoting leaves as it is; a row
        # stored before those rules still makes a URL of nothing but the repository.
        return f"{settings.GITHUB_URL}/{quote(self.repository, safe='/')}"

    @property
    def run_sha_is_commit_id(self) -> bool:
        return _COMMIT_ID.fullmatch(self.run_sha) is not None

    @property
    def run_short_sha(self) -> str:
        """The commit as people quote it: a commit id's first 7 characters, anything else
        whole (shown, never linked)."""
        return self.run_sha[:7] if self.run_sha_is_commit_id else self.run_sha

    @property
    def run_workflow(self) -> str:
        """The workflow file that filed the request, from job_workflow_ref: its path alone
        when it is the run's own ("acme/api/.github/workflows/deploy.yml@refs/heads/main"
        at ref refs/heads/main → ".github/workflows/deploy.yml"), else the whole ref, path
        and ref (a reusable workflow of another repository or called at another ref: the
        code that asked is not the run's ref, and approvers are shown where it came from)."""
        path, _, workflow_ref = self.run_workflow_ref.partition("@")
        owner_and_name = f"{self.repository}/"
        # The claim spells the repository as GitHub shows it; self.repository is canonical.
        if path.lower().startswith(owner_and_name) and workflow_ref == self.run_ref:
            return path[len(owner_and_name):]
        return self.run_workflow_ref

    def is_in_force(self, now: datetime) -> bool:
        return (
            self.status == self.Status.ACTIVE
            and self.expires_at is not None
            and self.expires_at > now
        )


class Approval(models.Model):
    request = models.ForeignKey(AccessRequest, on_delete=models.CASCADE, related_name="approvals")
    approver = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals_given"
    )
    # The approver's identity when they approved (selectors.approver_identity): the person,
    # whichever of their accounts they used.
    approver_identity = models.CharField(max_length=160, editable=False)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Approvals are counted per distinct person: access_request_approve counts the
            # rows, so one account, and one identity, may add one approval each.
            models.UniqueConstraint(fields=["request", "approver"], name="one_approval_each"),
            models.UniqueConstraint(
                fields=["request", "approver_identity"], name="one_approval_per_person"
            ),
            models.CheckConstraint(
                condition=~models.Q(approver_identity=""), name="approval_identity_recorded"
            ),
        ]

    def __str__(self):
        return f"{self.approver} approved #{self.request_id}"


class ApiToken(models.Model):
    """A personal API token: acts as its user on the REST API.

    Only the sha256 of the token is stored; the token itself is shown once, when it is
    made (requests_app.tokens). The prefix (the first characters) is kept to tell tokens
    apart on the "API tokens" page; it is not enough to use one.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for")
    prefix = models.CharField(max_length=16, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    # Written at most once a minute (requests_app.tokens), so a busy script costs no write
    # per call.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.prefix}… ({self.name}) of {self.user}"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now=None) -> bool:
        from django.utils import timezone

        return self.expires_at <= (now or timezone.now())



# Slack approvals' rows live beside these (requests_app.slack_models), kept out of this
# module's length; imported here so that Django finds them as this app's models.
from requests_app.slack_models import (  # noqa: E402
    SlackCard,
    SlackDelivery,
    SlackLink,
    SlackLinkCode,
)

__all__ = [
    "AccessKind",
    "AccessPolicy",
    "AccessRequest",
    "ApiToken",
    "Approval",
    "ApproverGroup",
    "ApproverGroupMember",
    "SecretDefinition",
    "SlackCard",
    "SlackDelivery",
    "SlackLink",
    "SlackLinkCode",
    "in_force_at",
]
