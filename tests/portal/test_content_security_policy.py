"""The Content-Security-Policy on the pages people use: strict for scripts (no
'unsafe-inline', no 'unsafe-eval'), with the API docs' inline code let in by its nonce."""

import re

import pytest

pytestmark = pytest.mark.django_db


def policy_of(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d.split()[1:] for d in header.split("; ")}


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/", "/api/docs/"])
def test_pages_allow_only_the_portals_own_scripts(client, path):
    response = client.get(path)
    assert response.status_code == 200
    policy = policy_of(response)
    for directive in ("script-src", "style-src"):
        sources = policy[directive]
        assert sources[0] == "'self'"
        assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources
        assert all(s == "'self'" or s.startswith("'nonce-") for s in sources)
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]


def test_the_api_docs_inline_code_carries_the_nonce_of_its_own_response(client):
    first, second = client.get("/api/docs/"), client.get("/api/docs/")
    nonces = []
    for response in (first, second):
        (source,) = [s for s in policy_of(response)["script-src"] if s.startswith("'nonce-")]
        nonce = source.removeprefix("'nonce-").removesuffix("'")
        page = response.content.decode()
        inline = re.findall(r"<(script|style)(?: nonce=\"([^\"]*)\")?>\s*\S", page)
        assert inline, "the page has inline code"
        assert {(tag, found) for tag, found in inline} == {("script", nonce), ("style", nonce)}
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_the_github_sign_in_may_hand_the_browser_on_to_github(client, settings):
    # The sign-in button posts to the portal, which redirects to GitHub's authorize page:
    # browsers hold that redirect to form-action too.
    policy = policy_of(client.get("/accounts/login/"))
    assert policy["form-action"] == ["'self'", settings.GITHUB_URL]
