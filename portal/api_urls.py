"""URLs under /api/: version 1 of the REST API, its OpenAPI schema and its docs; anything
else under /api/ is a JSON 404."""

from django.urls import path, re_path, register_converter
from django.urls.converters import IntConverter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from grants import api as grants_api
from grants import api_tokens
from portal.api_errors import api_not_found
from requests_app import api as requests_api


class ObjectIdConverter(IntConverter):
    """An id that fits a bigint: a longer number is no id (404), not a database error."""

    regex = "[0-9]{1,18}"


register_converter(ObjectIdConverter, "object_id")

v1 = [
    path("requests/", requests_api.AccessRequestListCreateApi.as_view(), name="requests"),
    path("requests/<object_id:id>/", requests_api.AccessRequestDetailApi.as_view(), name="request"),
    path(
        "requests/<object_id:id>/approve",
        requests_api.AccessRequestApproveApi.as_view(),
        name="request-approve",
    ),
    path(
        "requests/<object_id:id>/deny",
        requests_api.AccessRequestDenyApi.as_view(),
        name="request-deny",
    ),
    path(
        "requests/<object_id:id>/cancel",
        requests_api.AccessRequestCancelApi.as_view(),
        name="request-cancel",
    ),
    path(
        "requests/<object_id:id>/extend",
        requests_api.AccessRequestExtendApi.as_view(),
        name="request-extend",
    ),
    path("grants/", grants_api.GrantListApi.as_view(), name="grants"),
    path("grants/check", grants_api.GrantCheckApi.as_view(), name="grant-check"),
    path("grants/<object_id:id>/", grants_api.GrantDetailApi.as_view(), name="grant"),
    path(
        "grants/<object_id:id>/revoke",
        grants_api.GrantRevokeApi.as_view(),
        name="grant-revoke",
    ),
    path("runs/release", grants_api.RunReleaseApi.as_view(), name="run-release"),
    path("tokens", api_tokens.TokenExchangeApi.as_view(), name="tokens"),
]

app_name = "api"

urlpatterns = [
    path("v1/", (v1, "v1", "v1")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^.*$", api_not_found),
]
