"""The check's answer is written without DRF's Response when the caller accepts plain JSON
(grants.api.plain_json_response): the same bytes and Content-Type as DRF would render, and
DRF itself for any other media type."""

import json

import pytest
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from grants.api import plain_json_response
from tests.api.conftest import active_request, oidc_client

pytestmark = pytest.mark.django_db

CHECK = "/api/v1/grants/check"


class _Negotiated:
    def __init__(self, media_type):
        self.accepted_renderer = JSONRenderer()
        self.accepted_media_type = media_type


def _as_drf_renders(data, media_type):
    response = Response(data)
    response.accepted_renderer = JSONRenderer()
    response.accepted_media_type = media_type
    response.renderer_context = {}
    response.render()
    return response.content, response["Content-Type"]


@pytest.mark.parametrize("media_type", ["application/json", "application/json; indent=4"])
def test_the_plain_answer_is_what_drf_renders(media_type):
    data = {
        "allowed": False,
        "grant": None,
        "reason": "dave holds no access to acme/api environment 'produção' now \u2028\u2029.",
        "nested": [{"n": 1, "f": 1.5, "t": True}],
    }
    response = plain_json_response(_Negotiated(media_type), data)
    if media_type == "application/json":
        assert not isinstance(response, Response)
    else:
        assert isinstance(response, Response)  # indented: DRF's own path
        response.accepted_renderer = JSONRenderer()
        response.accepted_media_type = media_type
        response.renderer_context = {}
        response.render()
    assert (response.content, response["Content-Type"]) == _as_drf_renders(data, media_type)


@pytest.mark.parametrize(
    ("accept", "indent"),
    [(None, None), ("*/*", None), ("application/json", None), ("application/json; indent=2", 2)],
)
def test_the_check_answers_compact_json_or_what_the_caller_asked(oidc, accept, indent):
    active_request("dave", approvers=["alice"])
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = oidc_client(oidc()).get(CHECK, **headers)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.content
    data = json.loads(body)
    assert data["allowed"] is True
    expected = json.dumps(data, indent=indent, ensure_ascii=False,
                          separators=(",", ": ") if indent else (",", ":"))
    assert body == expected.encode()
