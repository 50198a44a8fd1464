"""REST API for access requests (/api/v1/requests/): file, list, read, approve, deny and
cancel, through the same services as the web pages and the admin."""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from core.names import NameRefused, canonical_repository
from integrations.github.attempts import oidc_caller_of_attempt
from portal.api_errors import error_responses
from portal.authentication import IsPortalUser, IsPortalUserOrRunJob, OidcPrincipal
from portal.pagination import BoundedCount
from requests_app.models import AccessRequest, Approval, in_force_at
from requests_app.selectors import requests_visible_to
from requests_app.serializers import (
    AccessRequestCreateSerializer,
    AccessRequestFilterSerializer,
    AccessRequestSerializer,
    DecisionSerializer,
    ExtendSerializer,
    WorkflowRequestCreateSerializer,
)
from requests_app.services import (
    access_request_approve,
    access_request_cancel,
    access_request_create,
    access_request_deny,
    access_request_extend,
    access_request_file_for_run,
)

# The largest offset accepted; a bigger one is refused as input instead of overflowing in
# the database driver.
MAX_OFFSET = 2**31 - 1


class ApiPagination(LimitOffsetPagination):
    """?limit= (1..200, default 50) and ?offset=; a bad value is a 400, not ignored.

    `count` is the number of matches, counted up to COUNT_AHEAD rows past `offset` and no
    further (portal.pagination): a full COUNT(*) on every call would cost what the whole
    history costs, not what the page does. `count_exact` is false when the count stopped
    there; `count` is then a lower bound, and `next` is still exact (COUNT_AHEAD is more than
    the largest limit), so a client pages on `next` as before."""

    default_limit = 50
    max_limit = 200
    COUNT_AHEAD = 1000

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.limit = self.get_limit(request)
        self.offset = self.get_offset(request)
        counted = BoundedCount(queryset, self.offset + self.COUNT_AHEAD)
        self.count, self.count_exact = counted.count, counted.exact
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        if self.count <= self.offset:
            return []
        return list(queryset[self.offset:self.offset + self.limit])

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["count_exact"] = self.count_exact
        return response

    def get_paginated_response_schema(self, schema):
        envelope = super().get_paginated_response_schema(schema)
        envelope["properties"]["count"]["description"] = (
            f"Matches, counted up to {self.COUNT_AHEAD} past offset; a lower bound when "
            "count_exact is false."
        )
        envelope["properties"]["count_exact"] = {
            "type": "boolean",
            "description": "Whether count is the exact number of matches.",
        }
        envelope["required"] = [*envelope["required"], "count_exact"]
        return envelope

    def _number(self, request, name: str, default: int, minimum: int, maximum: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError({name: ["A whole number is required."]}) from None
        if not minimum <= value <= maximum:
            raise ValidationError({name: [f"Must be between {minimum} and {maximum}."]})
        return value

    def get_limit(self, request):
        return self._number(request, self.limit_query_param, self.default_limit, 1, self.max_limit)

    def get_offset(self, request):
        return self._number(request, self.offset_query_param, 0, 0, MAX_OFFSET)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters


def query_filters(serializer_class, request) -> dict:
    """Validated query parameters (a plain dict: a missing boolean stays missing)."""
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def visible_requests(user):
    return with_details(requests_visible_to(user=user))


def with_details(queryset):
    """What the API shows of each request, read in a fixed number of queries."""
    return (
        queryset
        .select_related("requester", "secret", "policy", "closed_by", "grant", "grant__target")
        .prefetch_related(
            Prefetch("approvals", queryset=Approval.objects.select_related("approver")),
            "extensions",
        )
        .order_by("-created_at", "-id")
    )


def run_requests(job: OidcPrincipal):
    """The requests a workflow job may read: those its own run filed."""
    run = job.workflow_run
    if run is None:
        return AccessRequest.objects.none()
    try:
        repository = canonical_repository(job.repository)
    except NameRefused:
        return AccessRequest.objects.none()
    return with_details(AccessRequest.objects.filter(repository=repository, run_id=run.run_id))


class AccessRequestListCreateApi(GenericAPIView):
    permission_classes = [IsPortalUserOrRunJob]
    oidc_methods = ("POST",)
    serializer_class = AccessRequestSerializer
    pagination_class = ApiPagination

    @extend_schema(
        operation_id="requests_list",
        summary="Requests the caller may see",
        description="Own requests, and those routed to the caller as an approver; newest "
        "first.",
        parameters=[AccessRequestFilterSerializer],
        responses={200: AccessRequestSerializer(many=True), **error_responses(400, 401, 403)},
    )
    def get(self, request):
        filters = query_filters(AccessRequestFilterSerializer, request)
        queryset = visible_requests(request.user)
        if filters.get("status"):
            queryset = queryset.filter(status=filters["status"])
        if filters.get("repository"):
            queryset = queryset.filter(repository=filters["repository"])
        if filters.get("environment"):
            queryset = queryset.filter(environment=filters["environment"])
        if filters.get("active") is not None:
            now = timezone.now()
            queryset = (
                queryset.filter(in_force_at(now)) if filters["active"] else
                queryset.exclude(in_force_at(now))
            )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(AccessRequestSerializer(page, many=True).data)

    @extend_schema(
        operation_id="requests_create",
        summary="File a request",
        description="A person files a request for any target. A workflow job files one for "
        "its own run with its OIDC token, where the matched policy says workflow_requests: "
        "the body is {access, reason, duration_minutes?, secret?}, the repository and "
        "environment come from the token (the body may only repeat them), the requester is "
        "the person who started the run, and the request is bound to the run (`run`). A "
        "second call from the same run for the same target answers 200 with the open "
        "request instead of filing another.",
        request=AccessRequestCreateSerializer,
        responses={
            200: AccessRequestSerializer,
            201: AccessRequestSerializer,
            **error_responses(400, 401, 403, 503),
        },
    )
    def post(self, request):
        if isinstance(request.user, OidcPrincipal):
            return self._file_for_run(request)
        serializer = AccessRequestCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        access_request = access_request_create(
            requester=request.user,
            repository=data["repository"],
            environment=data["environment"],
            access=data["access"],
            reason=data["reason"],
            duration_minutes=data.get("duration_minutes"),
            secret_name=data.get("secret") or None,
            starts_at=data.get("starts_at"),
            break_glass=data.get("break_glass", False),
            workflow_ref_pattern=data.get("workflow_ref_pattern") or "",
            ref_pattern=data.get("ref_pattern") or "",
        )
        fresh = visible_requests(request.user).get(pk=access_request.pk)
        return Response(AccessRequestSerializer(fresh).data, status=status.HTTP_201_CREATED)

    def _file_for_run(self, request):
        serializer = WorkflowRequestCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        job = oidc_caller_of_attempt(request.user)  # the requester is who started it
        access_request, created = access_request_file_for_run(
            job=job,
            access=data["access"],
            reason=data["reason"],
            duration_minutes=data.get("duration_minutes"),
            secret_name=data.get("secret") or None,
            repository=data.get("repository") or "",
            environment=data.get("environment") or "",
        )
        fresh = with_details(AccessRequest.objects.filter(pk=access_request.pk)).get()
        return Response(
            AccessRequestSerializer(fresh).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class AccessRequestDetailApi(GenericAPIView):
    permission_classes = [IsPortalUserOrRunJob]
    oidc_methods = ("GET",)
    serializer_class = AccessRequestSerializer

    @extend_schema(
        operation_id="requests_retrieve",
        summary="One request",
        description="People see their own requests and those routed to them; a workflow's "
        "OIDC token sees the requests its own run filed.",
        responses={200: AccessRequestSerializer, **error_responses(401, 403, 404)},
    )
    def get(self, request, id):
        if isinstance(request.user, OidcPrincipal):
            queryset = run_requests(request.user)
            access_request = queryset.filter(pk=id).first()
            if access_request is None:
                raise NotFound(f"This run filed no request #{id}.")
        else:
            access_request = get_object_or_404(visible_requests(request.user), pk=id)
        return Response(AccessRequestSerializer(access_request).data)


class _RequestTransitionApi(GenericAPIView):
    """POST {comment?} → the request after the service has acted on it."""

    permission_classes = [IsPortalUser]
    serializer_class = DecisionSerializer

    def act(self, *, access_request, user, comment):  # pragma: no cover - overridden
        raise NotImplementedError

    def post(self, request, id):
        access_request = get_object_or_404(visible_requests(request.user), pk=id)
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.act(
            access_request=access_request,
            user=request.user,
            comment=serializer.validated_data["comment"],
        )
        fresh = visible_requests(request.user).get(pk=access_request.pk)
        return Response(AccessRequestSerializer(fresh).data)


def _transition_schema(verb: str, description: str):
    return extend_schema(
        operation_id=f"requests_{verb}",
        summary=f"{verb.capitalize()} a request",
        description=description,
        request=DecisionSerializer,
        responses={
            200: AccessRequestSerializer,
            **error_responses(400, 401, 403, 404, 409),
        },
    )


class AccessRequestApproveApi(_RequestTransitionApi):
    @_transition_schema(
        "approve",
        "Add the caller's approval; the one that reaches the policy's count approves the "
        "request. 403 for one's own request or a request not routed to the caller; 409 "
        "when it is no longer pending or the caller already approved.",
    )
    def post(self, request, id):
        return super().post(request, id)

    def act(self, *, access_request, user, comment):
        access_request_approve(access_request=access_request, approver=user, comment=comment)


class AccessRequestDenyApi(_RequestTransitionApi):
    @_transition_schema(
        "deny",
        "Deny a pending request routed to the caller (never their own); 409 when it is no "
        "longer pending.",
    )
    def post(self, request, id):
        return super().post(request, id)

    def act(self, *, access_request, user, comment):
        access_request_deny(access_request=access_request, approver=user, comment=comment)


class AccessRequestCancelApi(_RequestTransitionApi):
    @_transition_schema(
        "cancel",
        "The requester withdraws a pending request; 409 when it is no longer pending.",
    )
    def post(self, request, id):
        return super().post(request, id)

    def act(self, *, access_request, user, comment):
        access_request_cancel(access_request=access_request, user=user, comment=comment)


class AccessRequestExtendApi(GenericAPIView):
    """POST {reason, duration_minutes?} → 201 with the new request that extends this one."""

    permission_classes = [IsPortalUser]
    serializer_class = ExtendSerializer

    @extend_schema(
        operation_id="requests_extend",
        summary="Ask for more time on active access",
        description="Files a request that extends this one, under the same policy (reason, "
        "approvals, maximum duration). Once approved, access continues from this request's "
        "expiry without a gap; approved after it expired, it is a new grant "
        "(`continues_original` says which). 403 for someone else's request; 409 when this "
        "request is not active, has expired, or already has an open extension.",
        request=ExtendSerializer,
        responses={201: AccessRequestSerializer, **error_responses(400, 401, 403, 404, 409)},
    )
    def post(self, request, id):
        original = get_object_or_404(visible_requests(request.user), pk=id)
        serializer = ExtendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        extension = access_request_extend(
            original=original,
            requester=request.user,
            reason=serializer.validated_data["reason"],
            duration_minutes=serializer.validated_data.get("duration_minutes"),
        )
        fresh = visible_requests(request.user).get(pk=extension.pk)
        return Response(AccessRequestSerializer(fresh).data, status=status.HTTP_201_CREATED)
