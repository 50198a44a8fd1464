"""POST /api/v1/tokens: a workflow's OIDC token for a GitHub App installation token
restricted to its repository, under a `token` grant (grants.tokens has the rules).

The answer carries the token; nothing else does: no error body, log line or audit event.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from grants.tokens import TokenMintFailed, token_exchange
from integrations.github.permissions import format_permissions, permissions_refusal
from portal.api_errors import ErrorSerializer, error_responses
from portal.authentication import IsRunJob

LEVELS = ("read", "write", "admin")


class TokenExchangeRequestSerializer(serializers.Serializer):
    permissions = serializers.DictField(
        child=serializers.ChoiceField(choices=LEVELS),
        required=False,
        allow_empty=True,
        help_text=(
            "The permissions the token asks for, {name: read|write|admin}, with GitHub App "
            "repository permission names (for example contents, packages, deployments). "
            "They may only narrow the grant's; left out or empty: all the grant allows."
        ),
    )

    def validate_permissions(self, value):
        if value and (refusal := permissions_refusal(value)):
            raise serializers.ValidationError(refusal)
        return value


class TokenExchangeSerializer(serializers.Serializer):
    """The answer of POST /api/v1/tokens."""

    token = serializers.CharField(
        help_text="The installation access token: a secret. Mask it (::add-mask::) and never "
        "print it."
    )
    expires_at = serializers.DateTimeField(help_text="When GitHub expires the token (an hour).")
    permissions = serializers.DictField(
        child=serializers.CharField(), help_text="What the token may do in the repository."
    )
    repository = serializers.CharField(help_text="The one repository the token reaches.")
    grant_id = serializers.IntegerField()
    simulated = serializers.BooleanField(
        help_text="True in dry-run mode: nothing was minted, and the token is no token."
    )
    grant_expires_at = serializers.DateTimeField(
        help_text="When the grant ends: the token is revoked then, even before expires_at."
    )
    message = serializers.CharField()


class MintFailed(exceptions.APIException):
    default_code = "token_mint_failed"

    def __init__(self, message: str, status: int):
        self.status_code = status
        super().__init__(message)


class TokenExchangeApi(GenericAPIView):
    """The job's OIDC token for a GitHub token; only a workflow's OIDC token may call it."""

    permission_classes = [IsRunJob]
    serializer_class = TokenExchangeSerializer
    # A mint is a call to GitHub: the API's own rate per caller (portal/ratelimit.py)
    # bounds it, not the check's larger one.
    throttle_scope = "api"

    def permission_denied(self, request, message=None, code=None):
        if request.user and request.user.is_authenticated:
            message = (
                "Only a workflow's OIDC token can exchange for a GitHub token: the token is "
                "minted for the job's repository under the grant of who started its run. "
                "People use the access their grants give them on GitHub itself."
            )
        super().permission_denied(request, message=message, code=code)

    @extend_schema(
        operation_id="tokens_create",
        summary="Exchange a workflow's OIDC token for a GitHub token",
        description=(
            "With a GitHub Actions OIDC token only. While who started the run attempt holds "
            "a `token` grant in force for the job's repository and environment (a run-bound "
            "grant: for this run only; a grant restricted to workflows or refs: for those), "
            "Airlock mints a GitHub App installation access token restricted to that one "
            "repository, with the permissions approved on the grant's request or the fewer "
            "the body asks for. The token is revoked on GitHub when the grant ends "
            "(grant_expires_at), even before its own expiry. In dry-run mode nothing is "
            "minted: simulated is true and the token is a placeholder."
        ),
        request=TokenExchangeRequestSerializer,
        responses={
            201: TokenExchangeSerializer,
            **error_responses(400, 401, 403, 429),
            409: OpenApiResponse(
                response=ErrorSerializer,
                description="GitHub refused to mint the token (the App lacks a permission, "
                "or is not installed on the repository): GitHub's message says which.",
            ),
            503: OpenApiResponse(
                response=ErrorSerializer,
                description="No GitHub App credentials are configured, or GitHub or the "
                "OIDC issuer did not answer.",
            ),
        },
    )
    def post(self, request):
        body = TokenExchangeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            exchanged = token_exchange(
                job=request.user, permissions=body.validated_data.get("permissions") or None
            )
        except TokenMintFailed as failure:
            raise MintFailed(str(failure), failure.status) from None
        minted = exchanged.minted
        message = (
            f"A token for {minted.repository} with {format_permissions(minted.permissions)}, until "
            f"{minted.expires_at.isoformat()}."
        )
        if exchanged.grant_expires_at < minted.expires_at:
            message += (
                f" The grant ends sooner, at {exchanged.grant_expires_at.isoformat()}: the "
                "token is revoked then."
            )
        if exchanged.simulated:
            message = (
                "Simulated (dry-run): nothing was minted, and the token is a placeholder. "
                + message
            )
        answer = {
            "token": exchanged.token,
            "expires_at": minted.expires_at,
            "permissions": minted.permissions,
            "repository": minted.repository,
            "grant_id": minted.grant_id,
            "simulated": exchanged.simulated,
            "grant_expires_at": exchanged.grant_expires_at,
            "message": message,
        }
        response = Response(TokenExchangeSerializer(answer).data, status=201)
        response["Cache-Control"] = "no-store"
        return response
