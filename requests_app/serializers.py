"""The API's shapes of access requests (contract: PRODUCT.md "REST API"); they check types
and sizes only, the rules are the services'."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.names import NameRefused, canonical_environment, canonical_repository
from requests_app.models import AccessKind, AccessRequest, Approval
from requests_app.rules import COMMENT_MAX_LENGTH, REASON_MAX_LENGTH, request_field_max_length
from requests_app.services.requests import run_detail

# Type bounds, not policy (AccessRequest.MAX_DURATION_MINUTES too): the policy's own
# limits are checked by the service.


class TargetNameField(serializers.CharField):
    """A repository or environment name, given back in its canonical form (core.names); a
    name outside GitHub's rules is a 400 on the field. Every API input naming a target uses
    these, so a filter, a request and the check compare the same names."""

    canonical = None  # the core.names function

    def run_validation(self, data=serializers.empty):
        # After CharField's own checks (type, blank, max_length), so they speak first.
        value = super().run_validation(data)
        if not value:
            return value
        try:
            return type(self).canonical(value, field=self.field_name or "name")
        except NameRefused as refusal:
            raise serializers.ValidationError(refusal.messages) from None


class RepositoryField(TargetNameField):
    canonical = staticmethod(canonical_repository)

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", request_field_max_length("repository"))
        kwargs.setdefault("help_text", "owner/name, e.g. acme/api (not case sensitive)")
        super().__init__(**kwargs)


class EnvironmentField(TargetNameField):
    canonical = staticmethod(canonical_environment)

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", request_field_max_length("environment"))
        kwargs.setdefault("help_text", "e.g. production (not case sensitive)")
        super().__init__(**kwargs)


class AccessRequestCreateSerializer(serializers.Serializer):
    repository = RepositoryField()
    environment = EnvironmentField()
    access = serializers.ChoiceField(choices=AccessKind.choices)
    secret = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Secret access only: the secret's name, e.g. DEPLOY_TOKEN.",
    )
    reason = serializers.CharField(max_length=REASON_MAX_LENGTH, trim_whitespace=True)
    duration_minutes = serializers.IntegerField(
        min_value=1,
        max_value=AccessRequest.MAX_DURATION_MINUTES,
        required=False,
        allow_null=True,
        help_text="Counted from the moment access is granted; empty: the policy's default.",
    )
    starts_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Optional start (ISO 8601 with time zone)."
    )
    break_glass = serializers.BooleanField(required=False, default=False)
    workflow_ref_pattern = serializers.CharField(
        max_length=request_field_max_length("workflow_ref_pattern"),
        required=False,
        allow_blank=True,
        default="",
        help_text="Optional: only workflows whose OIDC job_workflow_ref matches this glob "
        "(in full, case-sensitively) may use the grant, e.g. "
        "acme/api/.github/workflows/deploy.yml@refs/heads/main.",
    )
    ref_pattern = serializers.CharField(
        max_length=request_field_max_length("ref_pattern"),
        required=False,
        allow_blank=True,
        default="",
        help_text="Optional: only workflows whose OIDC ref matches this glob may use the "
        "grant, e.g. refs/heads/main or refs/tags/v*.",
    )


class WorkflowRequestCreateSerializer(serializers.Serializer):
    """Body of POST /api/v1/requests/ with a workflow's OIDC token: the target is the
    token's (repository and environment may only repeat it), and the request is bound to
    the run."""

    access = serializers.ChoiceField(choices=AccessKind.choices)
    secret = serializers.CharField(
        max_length=100, required=False, allow_null=True, allow_blank=True
    )
    reason = serializers.CharField(max_length=REASON_MAX_LENGTH, trim_whitespace=True)
    duration_minutes = serializers.IntegerField(
        min_value=1, max_value=AccessRequest.MAX_DURATION_MINUTES, required=False,
        allow_null=True,
    )
    repository = RepositoryField(required=False, allow_blank=True)
    environment = EnvironmentField(required=False, allow_blank=True)


class RunSerializer(serializers.Serializer):
    """The workflow run a request is bound to."""

    id = serializers.IntegerField()
    attempt = serializers.IntegerField(allow_null=True)
    workflow_ref = serializers.CharField(help_text="The job's job_workflow_ref claim")
    ref = serializers.CharField()
    sha = serializers.CharField()
    url = serializers.CharField(help_text="The run on GitHub")


class DecisionSerializer(serializers.Serializer):
    """Body of approve, deny, cancel and revoke."""

    comment = serializers.CharField(
        max_length=COMMENT_MAX_LENGTH, required=False, allow_blank=True, default=""
    )


class ApprovalSerializer(serializers.ModelSerializer):
    approver = serializers.CharField(source="approver.username", read_only=True)
    approved_at = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Approval
        fields = ["approver", "approved_at", "comment"]


class RequestGrantSerializer(serializers.Serializer):
    """The request's grant: its id and its state on GitHub."""

    id = serializers.IntegerField()
    state = serializers.CharField(help_text="pending, applied, revoked or failed")
    github_status = serializers.CharField(
        help_text="For people: pending, retrying, applied, being revoked, revocation "
        "overdue, revoked or failed"
    )
    applied_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)
    dry_run = serializers.BooleanField(source="target.dry_run")


class ExtensionSerializer(serializers.Serializer):
    """An extension of a request, as listed on the request it extends."""

    id = serializers.IntegerField()
    status = serializers.CharField()
    duration_minutes = serializers.IntegerField()
    expires_at = serializers.DateTimeField(allow_null=True)


class ExtendSerializer(serializers.Serializer):
    """Body of POST /api/v1/requests/{id}/extend."""

    reason = serializers.CharField(max_length=REASON_MAX_LENGTH, trim_whitespace=True)
    duration_minutes = serializers.IntegerField(
        min_value=1,
        max_value=AccessRequest.MAX_DURATION_MINUTES,
        required=False,
        allow_null=True,
        help_text="More time, added to the current end once approved; empty: the policy's "
        "default.",
    )


class AccessRequestSerializer(serializers.ModelSerializer):
    requester = serializers.CharField(source="requester.username", read_only=True)
    secret = serializers.SerializerMethodField()
    policy = serializers.CharField(source="policy.name", read_only=True)
    approvals = ApprovalSerializer(many=True, read_only=True)
    closed_by = serializers.SerializerMethodField()
    grant = serializers.SerializerMethodField()
    extends = serializers.PrimaryKeyRelatedField(
        read_only=True,
        allow_null=True,
        help_text="The request this one asks more time on (an extension), or null.",
    )
    extensions = serializers.SerializerMethodField()
    continues_original = serializers.BooleanField(
        read_only=True,
        allow_null=True,
        help_text="Extensions, once granted: true when access continued from the original's "
        "expiry without a gap; false when the original had already expired and this is a "
        "new grant. Null otherwise.",
    )
    review_outcome = serializers.SerializerMethodField(
        help_text="Break-glass access: the after-the-fact review, or null until an approver "
        "records it."
    )
    reviewed_by = serializers.SerializerMethodField()
    run = serializers.SerializerMethodField(
        help_text="The workflow run the request is bound to (a workflow filed it: only that "
        "run may use the grant, and it ends with the run), or null."
    )

    class Meta:
        model = AccessRequest
        fields = [
            "id",
            "status",
            "repository",
            "environment",
            "access",
            "secret",
            "reason",
            "duration_minutes",
            "requester",
            "policy",
            "approvals_required",
            "approvals",
            "break_glass",
            "workflow_ref_pattern",
            "ref_pattern",
            "created_at",
            "starts_at",
            "pending_until",
            "decided_at",
            "granted_at",
            "expires_at",
            "ended_at",
            "closed_by",
            "close_comment",
            "grant",
            "extends",
            "extensions",
            "continues_original",
            "review_outcome",
            "reviewed_by",
            "reviewed_at",
            "review_comment",
            "run",
        ]
        read_only_fields = fields

    @extend_schema_field(RunSerializer(allow_null=True))
    def get_run(self, access_request):
        return run_detail(access_request) if access_request.is_run_bound else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_secret(self, access_request) -> str | None:
        return access_request.secret.name if access_request.secret_id else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_closed_by(self, access_request) -> str | None:
        return access_request.closed_by.username if access_request.closed_by_id else None

    @extend_schema_field(
        serializers.ChoiceField(
            choices=AccessRequest.ReviewOutcome.choices, allow_null=True
        )
    )
    def get_review_outcome(self, access_request) -> str | None:
        return access_request.review_outcome or None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_reviewed_by(self, access_request) -> str | None:
        return access_request.reviewed_by.username if access_request.reviewed_by_id else None

    @extend_schema_field(ExtensionSerializer(many=True))
    def get_extensions(self, access_request):
        """Requests asking more time on this one, oldest first."""
        extensions = access_request.extensions.all()
        return ExtensionSerializer(sorted(extensions, key=lambda e: e.pk), many=True).data

    @extend_schema_field(RequestGrantSerializer(allow_null=True))
    def get_grant(self, access_request):
        grant = getattr(access_request, "grant", None)  # reverse one-to-one: may not exist
        return RequestGrantSerializer(grant).data if grant is not None else None


class AccessRequestFilterSerializer(serializers.Serializer):
    """Query parameters of GET /api/v1/requests/."""

    status = serializers.ChoiceField(choices=AccessRequest.Status.choices, required=False)
    repository = RepositoryField(required=False)
    environment = EnvironmentField(required=False)
    active = serializers.BooleanField(
        required=False,
        default=None,
        allow_null=True,
        help_text="true: only requests whose access is in force now (active, not past "
        "expires_at); false: all the others.",
    )
