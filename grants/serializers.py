"""The API's shapes of grants and of the grant check's answer."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from grants.models import Grant
from requests_app.models import AccessKind
from requests_app.serializers import EnvironmentField, RepositoryField


class GrantSerializer(serializers.ModelSerializer):
    request = serializers.IntegerField(source="access_request_id", read_only=True)
    requester = serializers.CharField(source="access_request.requester.username", read_only=True)
    repository = serializers.CharField(source="access_request.repository", read_only=True)
    environment = serializers.CharField(source="access_request.environment", read_only=True)
    access = serializers.CharField(source="access_request.access", read_only=True)
    request_status = serializers.CharField(source="access_request.status", read_only=True)
    secret = serializers.SerializerMethodField()
    github_status = serializers.CharField(
        read_only=True,
        help_text="For people: pending, retrying, applied, being revoked, revocation "
        "overdue, revoked or failed",
    )
    active = serializers.SerializerMethodField(
        help_text="Whether the access is in force now (answered from time, like the check)."
    )
    dry_run = serializers.BooleanField(source="target.dry_run", read_only=True)
    end_reason = serializers.ChoiceField(
        choices=Grant.EndReason.choices,
        allow_blank=True,
        read_only=True,
        help_text="Why the grant ended; empty while it has not.",
    )
    revoke_requested_by = serializers.SerializerMethodField()

    class Meta:
        model = Grant
        fields = [
            "id",
            "request",
            "requester",
            "repository",
            "environment",
            "access",
            "kind",
            "secret",
            "login",
            "state",
            "github_status",
            "active",
            "request_status",
            "dry_run",
            "created_at",
            "applied_at",
            "expires_at",
            "revoke_requested_at",
            "revoke_requested_by",
            "revoked_at",
            "end_reason",
            "last_error",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_secret(self, grant) -> str | None:
        return grant.secret.name if grant.secret_id else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_revoke_requested_by(self, grant) -> str | None:
        user = grant.revoke_requested_by
        return user.username if user is not None else None

    def get_active(self, grant) -> bool:
        return grant.access_request.is_in_force(self.context["now"])


class GrantFilterSerializer(serializers.Serializer):
    """Query parameters of GET /api/v1/grants/."""

    state = serializers.ChoiceField(choices=Grant.State.choices, required=False)
    repository = RepositoryField(required=False)
    environment = EnvironmentField(required=False)
    active = serializers.BooleanField(
        required=False,
        default=None,
        allow_null=True,
        help_text="true: only grants in force now (request active, not past expires_at).",
    )


class GrantCheckQuerySerializer(serializers.Serializer):
    """Query parameters of the grant check. With an OIDC token all are optional and may
    only repeat what the token's claims say."""

    repository = RepositoryField(required=False, allow_blank=True)
    environment = EnvironmentField(required=False, allow_blank=True)
    access = serializers.ChoiceField(choices=AccessKind.choices, required=False, allow_blank=True)
    secret = serializers.CharField(max_length=100, required=False, allow_blank=True)
    user = serializers.CharField(
        max_length=150,
        required=False,
        allow_blank=True,
        help_text="Whose grant (a portal username = GitHub login); defaults to the caller, "
        "or to the job's actor with an OIDC token.",
    )


class CheckApproverSerializer(serializers.Serializer):
    login = serializers.CharField()
    approved_at = serializers.DateTimeField()


class CheckedGrantSerializer(serializers.Serializer):
    """The grant in force, as the check reports it. It documents the shape (the schema);
    the check writes the answer itself (grants.check.CheckAnswer.as_json), and a test holds
    the two together."""

    id = serializers.IntegerField(allow_null=True, help_text="The grant; null until created.")
    request = serializers.IntegerField(help_text="The access request it was granted for.")
    user = serializers.CharField()
    repository = serializers.CharField()
    environment = serializers.CharField()
    access = serializers.CharField()
    secret = serializers.CharField(allow_null=True)
    break_glass = serializers.BooleanField()
    granted_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    approvers = CheckApproverSerializer(many=True)
    workflow_ref_pattern = serializers.CharField(
        help_text="Only workflows whose job_workflow_ref matches may use the grant; "
        "empty: any workflow."
    )
    ref_pattern = serializers.CharField(
        help_text="Only workflows whose ref matches may use the grant; empty: any ref."
    )
    run_id = serializers.IntegerField(
        allow_null=True,
        help_text="A workflow filed the request: the check answers allowed on the grant "
        "only to this run, and it ends when the run completes. Null: a person's grant.",
    )


class GrantCheckSerializer(serializers.Serializer):
    allowed = serializers.BooleanField()
    grant = CheckedGrantSerializer(allow_null=True)
    reason = serializers.CharField()
