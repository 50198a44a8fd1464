"""REST API for grants (/api/v1/grants/): list, read and revoke the grants the caller may
see, and the grant check workflows call before a sensitive step."""

from functools import cache, lru_cache

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from grants.check import grant_check_answer
from grants.runs import run_release
from grants.selectors import grants_visible_to
from grants.serializers import (
    GrantCheckQuerySerializer,
    GrantCheckSerializer,
    GrantFilterSerializer,
    GrantSerializer,
)
from grants.services import grant_revoke
from portal.api_errors import error_responses
from portal.authentication import IsPortalUser, IsRunJob
from requests_app.api import ApiPagination, query_filters, with_details
from requests_app.models import AccessRequest, in_force_at
from requests_app.serializers import AccessRequestSerializer, DecisionSerializer


def visible_grants(user):
    return (
        grants_visible_to(user=user)
        .select_related("revoke_requested_by")
        .order_by("-created_at", "-id")
    )


class GrantListApi(GenericAPIView):
    permission_classes = [IsPortalUser]
    serializer_class = GrantSerializer
    pagination_class = ApiPagination

    @extend_schema(
        operation_id="grants_list",
        summary="Grants the caller may see: their own; platform admins see all",
        parameters=[GrantFilterSerializer],
        responses={200: GrantSerializer(many=True), **error_responses(400, 401, 403)},
    )
    def get(self, request):
        filters = query_filters(GrantFilterSerializer, request)
        queryset = visible_grants(request.user)
        if filters.get("state"):
            queryset = queryset.filter(state=filters["state"])
        if filters.get("repository"):
            queryset = queryset.filter(access_request__repository=filters["repository"])
        if filters.get("environment"):
            queryset = queryset.filter(access_request__environment=filters["environment"])
        now = timezone.now()
        if filters.get("active") is not None:
            in_force = in_force_at(now, prefix="access_request__")
            queryset = (
                queryset.filter(in_force) if filters["active"] else queryset.exclude(in_force)
            )
        page = self.paginate_queryset(queryset)
        data = GrantSerializer(page, many=True, context={"now": now}).data
        return self.get_paginated_response(data)


class GrantDetailApi(GenericAPIView):
    permission_classes = [IsPortalUser]
    serializer_class = GrantSerializer

    @extend_schema(
        operation_id="grants_retrieve",
        summary="One grant",
        responses={200: GrantSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request, id):
        grant = get_object_or_404(visible_grants(request.user), pk=id)
        return Response(GrantSerializer(grant, context={"now": timezone.now()}).data)


class GrantRevokeApi(GenericAPIView):
    permission_classes = [IsPortalUser]
    serializer_class = DecisionSerializer

    @extend_schema(
        operation_id="grants_revoke",
        summary="End a grant early",
        description="The requester gives access back, or a platform admin takes it away. "
        "The check says no at once; GitHub follows as soon as the engine has run. 409 when "
        "the grant has already ended or is being revoked.",
        request=DecisionSerializer,
        responses={200: GrantSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    def post(self, request, id):
        grant = get_object_or_404(visible_grants(request.user), pk=id)
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant_revoke(grant=grant, user=request.user, comment=serializer.validated_data["comment"])
        fresh = visible_grants(request.user).get(pk=grant.pk)
        return Response(GrantSerializer(fresh, context={"now": timezone.now()}).data)


PLAIN_JSON_ACCEPTS = ("*/*", "application/json")


@cache
def _check_param_fields():
    # Bound once: validating a value only reads a field. A new serializer per call would
    # deep-copy its fields each time, a fifth of the check's cost.
    return GrantCheckQuerySerializer().fields


@lru_cache(maxsize=4096)
def _valid_param(name: str, raw: str):
    """The field's value for this text; ValidationError as the field raises it.

    Remembered, because the same workflows and people ask about the same targets again
    and again, and these fields' validation (type, length, NUL, surrogates, a target's
    canonical name) depends on the text alone: a third of an API-token check's CPU went to
    validating the same two names. Refusals are not remembered (lru_cache keeps returns only).
    """
    return _check_param_fields()[name].run_validation(raw)


def check_params(query) -> dict:
    """The check's query parameters, validated by GrantCheckQuerySerializer's own fields
    (its rules and messages) without building a serializer per call."""
    values, errors = {}, {}
    for name in _check_param_fields():
        if name in query:
            raw = query[name]
            try:
                values[name] = _valid_param(name, raw) if type(raw) is str else (
                    _check_param_fields()[name].run_validation(raw)
                )
            except ValidationError as problem:
                errors[name] = problem.detail
    if errors:
        raise ValidationError(errors)
    return values


class GrantCheckApi(GenericAPIView):
    """The one endpoint a workflow's OIDC token may call."""

    permission_classes = [IsAuthenticated]
    serializer_class = GrantCheckSerializer
    # Its own request rate, per workflow repository or person (portal/ratelimit.py).
    throttle_scope = "check"

    def perform_content_negotiation(self, request, force=False):
        # One renderer, JSON, and what callers send (the Action: application/json; curl:
        # */*; or nothing): the answer DRF's negotiation would reach, without parsing the
        # header for a choice there is not. Anything else (another type, parameters,
        # ?format=) is negotiated by DRF, 406 included.
        accept = request.META.get("HTTP_ACCEPT", "*/*")
        if accept in PLAIN_JSON_ACCEPTS and not self.format_kwarg and (
            api_settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            renderers = self.get_renderers()
            if len(renderers) == 1 and renderers[0].media_type == "application/json":
                return renderers[0], renderers[0].media_type
        return super().perform_content_negotiation(request, force)

    @extend_schema(
        operation_id="grants_check",
        summary="Is a grant in force now?",
        description=(
            "Answers from time: a grant counts while its request is active and its expires_at is "
            "in the future. With a GitHub Actions OIDC token, repository, environment and user "
            "(whoever started this run attempt: the triggering_actor claim when the token has "
            "one, else actor, and bound by actor_id to the GitHub account the portal knows for "
            "that user) come from the token's claims; parameters may only repeat them (403 "
            "otherwise). With an API token or a session, repository and environment are required "
            "and user defaults to the caller; only staff may ask about someone else. A grant "
            "restricted to a workflow or ref (the request's workflow_ref_pattern / ref_pattern) "
            "allows a workflow only when its token's job_workflow_ref / ref claims match; a "
            "person is answered allowed, with the restriction reported."
        ),
        parameters=[GrantCheckQuerySerializer],
        responses={200: GrantCheckSerializer, **error_responses(400, 401, 403, 429, 503)},
    )
    def get(self, request):
        answer = grant_check_answer(caller=request.user, **check_params(request.query_params))
        # Written by hand on this hot path; GrantCheckSerializer documents the shape, and
        # tests hold the two together.
        return plain_json_response(request, answer.as_json())


def plain_json_response(request, data) -> HttpResponse:
    """What Response(data) renders to, without its rendering machinery (a template
    response rendered after the view, a seventh of the check's CPU), when the negotiated
    answer is the renderer's plain media type: the renderer's own bytes, the same
    Content-Type. Any other media type (application/json; indent=4), or another renderer,
    is DRF's Response."""
    renderer = request.accepted_renderer
    # DRF's JSONRenderer reads nothing but the media type's indent from the context.
    if type(renderer) is not JSONRenderer or request.accepted_media_type != renderer.media_type:
        return Response(data)
    content_type = renderer.media_type
    if renderer.charset:
        content_type += f"; charset={renderer.charset}"
    return HttpResponse(renderer.render(data), content_type=content_type)


class RunReleaseSerializer(serializers.Serializer):
    """The answer of POST /api/v1/runs/release."""

    repository = serializers.CharField()
    run_id = serializers.IntegerField()
    ended = AccessRequestSerializer(
        many=True, help_text="Requests whose access ended now (their grants are revoked)."
    )
    cancelled = AccessRequestSerializer(
        many=True, help_text="The run's pending requests, now cancelled."
    )
    message = serializers.CharField()


class RunReleaseApi(GenericAPIView):
    """A workflow run gives back every grant bound to it (its last step, `if: always()`)."""

    permission_classes = [IsRunJob]
    serializer_class = RunReleaseSerializer

    @extend_schema(
        operation_id="runs_release",
        summary="End the calling run's grants",
        description="With a workflow's OIDC token only: ends every grant bound to the token's "
        "run (the check says no at once; GitHub follows as soon as the engine has run) and "
        "cancels the run's pending requests. Releasing twice is harmless: the second call "
        "finds nothing open.",
        request=None,
        responses={200: RunReleaseSerializer, **error_responses(401, 403)},
    )
    def post(self, request):
        released = run_release(job=request.user)
        repository, run_id, report = released.repository, released.run_id, released.report

        def shown(requests):
            ids = [r.pk for r in requests]
            return list(with_details(AccessRequest.objects.filter(pk__in=ids)).order_by("pk"))

        ended, cancelled = shown(report.ended), shown(report.cancelled)
        if ended or cancelled:
            message = (
                f"Released run {run_id} of {repository}: {len(ended)} grant(s) ended, "
                f"{len(cancelled)} pending request(s) cancelled."
            )
        else:
            message = (
                f"Run {run_id} of {repository} holds no open requests; nothing to release."
            )
        return Response(
            RunReleaseSerializer(
                {
                    "repository": repository,
                    "run_id": run_id,
                    "ended": ended,
                    "cancelled": cancelled,
                    "message": message,
                }
            ).data
        )
