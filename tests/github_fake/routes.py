"""The endpoints of the local GitHub: OAuth web flow, REST API, OIDC issuer, /_fake control.

Each handler is registered with the path template GitHub's OpenAPI description uses, so the
dispatcher can validate REST request bodies against that very operation (openapi.py).
Handlers run under the state lock, one at a time; they turn state into shapes and refusals
into GitHub's error bodies.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from . import openapi, shapes
from .state import GitHubError, ProtectionRuleReview, SchemaViolation, not_found


@dataclass
class Call:
    """One request, as the handlers see it."""

    method: str
    path: str  # canonical, still percent-encoded
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    data: bytes
    urls: shapes.Urls
    fake: object  # the GitHubServer
    token: object = None  # state.Token once authenticated

    @property
    def state(self):
        return self.fake.state

    def json(self):
        """The body as JSON; None when empty; GitHubError 400 when it does not parse."""
        if not self.data.strip():
            return None
        try:
            return json.loads(self.data)
        except ValueError:
            raise GitHubError(400, "Problems parsing JSON") from None

    def form(self) -> dict[str, str]:
        """Query, form-encoded body or JSON body, merged: the OAuth endpoints take any."""
        params = dict(self.query)
        if self.headers.get("content-type", "").startswith("application/json"):
            params.update({k: str(v) for k, v in (self.json() or {}).items()})
        else:
            params.update(parse_qsl(self.data.decode(errors="replace")))
        return params


@dataclass
class Reply:
    status: int
    body: object = None  # dict/list: JSON; str: HTML; bytes: as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Route:
    method: str
    template: str
    handler: Callable
    auth: str | None  # "token", "user" (a user's token), "jwt" (an App's), or None
    pattern: re.Pattern

    @property
    def is_rest(self) -> bool:
        return openapi.operation(self.method, self.template) is not None


ROUTES: list[Route] = []


def route(method: str, template: str, auth: str | None = "token"):
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))

    def register(handler):
        ROUTES.append(Route(method, template, handler, auth, re.compile(regex + r"\Z")))
        return handler

    return register


# -- dispatch --------------------------------------------------------------------------------


def canonical_path(state, path: str) -> str:
    """Resolve GitHub's id-based aliases to the name-based paths the routes use."""
    if m := re.match(r"/repositories/(\d+)(/.*)?\Z", path):
        repo = state.repo_by_id(int(m[1]))
        return f"/repos/{repo.full_name}{m[2] or ''}" if repo else path
    if m := re.match(r"/(?:organizations/\d+/team|teams)/(\d+)(/.*)?\Z", path):
        team = state.team_by_id(int(m[1]))
        return f"/orgs/{team.org}/teams/{team.slug}{m[2] or ''}" if team else path
    if m := re.match(r"/organizations/(\d+)(/.*)?\Z", path):
        org = next((o for o in state.orgs.values() if o.id == int(m[1])), None)
        return f"/orgs/{org.login}{m[2] or ''}" if org else path
    return path


def dispatch(call: Call) -> Reply:
    for candidate in ROUTES:
        match = candidate.pattern.match(call.path)
        if match and candidate.method == call.method:
            break
    else:
        call.state.count_rate_limited_call()
        return Reply(404, shapes.error("Not Found", 404))
    params = {name: unquote(value) for name, value in match.groupdict().items()}
    counted = not candidate.template.startswith("/_fake/")
    if counted:
        call.state.count_rate_limited_call()  # before the handler: GET /rate_limit sees it
    try:
        _authenticate(call, candidate)
        reply = None
        if candidate.is_rest and call.method in {"PUT", "POST", "PATCH"}:
            reply = _validate_body(call, candidate)
        if reply is None:
            with call.state.lock:
                reply = candidate.handler(call, **params)
    except GitHubError as refusal:
        reply = Reply(
            refusal.status, shapes.error(refusal.message, refusal.status, **refusal.extra)
        )
    if candidate.is_rest and call.method == "GET" and reply.status == 200:
        reply = _conditional(call, reply)
    # GitHub does not count a 304 against the rate limit when the request was authorised
    # ("Best practices for using the REST API", conditional requests); every other answer
    # counts, refusals included.
    if counted and reply.status == 304 and call.token is not None:
        call.state.count_rate_limited_call(-1)
    if candidate.is_rest:
        reply.headers.update(_rest_headers(call))
    return reply


def _conditional(call: Call, reply: Reply) -> Reply:
    """Tag a GET's answer with an ETag, and answer 304 with no body when If-None-Match names
    it. GitHub's ETags are weak validators of the representation and are specific to the
    token that asked (GitHub support: "It's currently expected for ETags to be auth token
    specific"), so an App's hourly new installation token gets 200s again; the fake hashes
    the token with the body to behave alike."""
    credential = call.token.value if call.token is not None else ""
    representation = json.dumps(
        {"token": credential, "body": reply.body, "link": reply.headers.get("link")},
        sort_keys=True,
        default=str,
    )
    etag = f'W/"{hashlib.sha256(representation.encode()).hexdigest()[:40]}"'
    reply.headers["etag"] = etag
    if _none_match(call.headers.get("if-none-match", ""), etag):
        # RFC 9110 15.4.5: a 304 carries the ETag (and the other headers a 200 would), no body.
        return Reply(304, None, {"etag": etag})
    return reply


def _none_match(header: str, etag: str) -> bool:
    """If-None-Match compares weakly (RFC 9110 13.1.2): W/"x" and "x" match; * matches any."""
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(",") if tag.strip())


def _authenticate(call: Call, candidate: Route) -> None:
    if candidate.auth in {None, "jwt"}:
        return
    scheme, _, credential = call.headers.get("authorization", "").partition(" ")
    if not scheme:
        raise GitHubError(401, "Requires authentication")
    token = call.state.token(credential.strip()) if scheme.lower() in {"token", "bearer"} else None
    if token is None:
        raise GitHubError(401, "Bad credentials")
    if candidate.auth == "user" and token.login is None:
        raise GitHubError(403, "Resource not accessible by integration")
    call.token = token


def _validate_body(call: Call, candidate: Route) -> Reply | None:
    body = call.json()
    errors = openapi.request_body_errors(call.method, candidate.template, body)
    if not errors:
        return None
    operation = openapi.operation(call.method, candidate.template)
    call.state.record_schema_violation(
        SchemaViolation(call.method, call.path, operation["operationId"], errors, body)
    )
    doc = operation.get("externalDocs", {}).get("url", shapes.DOCS)
    return Reply(422, shapes.error("Invalid request.\n\n" + "\n".join(errors), 422, doc))


def _rest_headers(call: Call) -> dict[str, str]:
    state = call.state
    headers = {
        "x-github-api-version-selected": "2022-11-28",
        "x-github-media-type": "github.v3; format=json",
        "x-ratelimit-limit": "5000",
        "x-ratelimit-remaining": str(max(0, 5000 - state.rate_limit_used)),
        "x-ratelimit-used": str(min(5000, state.rate_limit_used)),
        "x-ratelimit-reset": str(state.rate_limit_reset),
        "x-ratelimit-resource": "core",
    }
    if call.token is not None and call.token.scopes is not None:
        headers["x-oauth-scopes"] = ", ".join(call.token.scopes)
    return headers


def paginate(call: Call, items: list, wrap: Callable[[list], object] = list) -> Reply:
    """One page of a list, with GitHub's Link header (per_page at most 100)."""
    try:
        per_page = min(max(int(call.query.get("per_page", 30)), 1), 100)
        page = max(int(call.query.get("page", 1)), 1)
    except ValueError:
        raise GitHubError(422, "Invalid per_page or page") from None
    last = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    links = {"prev": page - 1, "next": page + 1, "first": 1, "last": last}
    wanted = ["prev", "first"] if page > 1 else []
    wanted += ["next", "last"] if page < last else []
    headers = {}
    if wanted:
        base = f"{call.urls.api}{call.path}"
        headers["link"] = ", ".join(
            f"<{base}?{urlencode({**call.query, 'per_page': per_page, 'page': links[rel]})}>; "
            f'rel="{rel}"'
            for rel in wanted
        )
    return Reply(200, wrap(chunk), headers)


# -- OAuth web flow --------------------------------------------------------------------------

_SIGN_IN_PAGE = """<!doctype html>
<html><head><title>Sign in to local GitHub</title></head>
<body style="font-family: sans-serif; max-width: 28em; margin: 4em auto">
<h1>Sign in to local GitHub</h1>
<p>{error}</p>
<form method="post" action="/login/oauth/authorize">
  <label>Sign in to local GitHub as: <input name="login" list="logins" autofocus required></label>
  <datalist id="logins">{options}</datalist>
  {hidden}
  <button type="submit">Authorize</button>
</form>
</body></html>
"""


@route("GET", "/login/oauth/authorize", auth=None)
def oauth_authorize(call: Call) -> Reply:
    params = call.query
    if params.get("client_id") != call.state.client_id:
        return Reply(404, "<h1>404: unknown OAuth application (client_id)</h1>")
    if call.state.oauth_user:
        return _redirect_with_code(call, params, call.state.oauth_user)
    return _sign_in_page(call, params)


@route("POST", "/login/oauth/authorize", auth=None)
def oauth_sign_in(call: Call) -> Reply:
    params = call.form()
    if params.get("client_id") != call.state.client_id:
        return Reply(404, "<h1>404: unknown OAuth application (client_id)</h1>")
    login = params.pop("login", "").strip()
    if login.lower() not in call.state.users:
        return _sign_in_page(call, params, error=f"No user {login!r} on local GitHub.")
    return _redirect_with_code(call, params, login)


def _sign_in_page(call: Call, params: dict, error: str = "") -> Reply:
    options = "".join(f'<option value="{html.escape(u.login)}">' for u in call.state.users.values())
    hidden = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in params.items()
    )
    page = _SIGN_IN_PAGE.format(error=html.escape(error), options=options, hidden=hidden)
    return Reply(200, page)


def _redirect_with_code(call: Call, params: dict, login: str) -> Reply:
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri:
        return Reply(400, "<h1>redirect_uri is required by the local GitHub</h1>")
    code = call.state.issue_oauth_code(
        login,
        params["client_id"],
        redirect_uri,
        params.get("scope", ""),
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    )
    parts = urlsplit(redirect_uri)
    extra = {"code": code, **({"state": params["state"]} if "state" in params else {})}
    query = "&".join(filter(None, [parts.query, urlencode(extra)]))
    return Reply(302, "", {"location": urlunsplit(parts._replace(query=query))})


@route("POST", "/login/oauth/access_token", auth=None)
def oauth_access_token(call: Call) -> Reply:
    params = call.form()
    scheme, _, credential = call.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        client_id, _, client_secret = base64.b64decode(credential).decode().partition(":")
        params.setdefault("client_id", client_id)
        params.setdefault("client_secret", client_secret)
    answer = call.state.exchange_oauth_code(
        params.get("client_id", ""),
        params.get("client_secret", ""),
        params.get("code", ""),
        params.get("redirect_uri"),
        params.get("code_verifier"),
    )
    if "application/json" in call.headers.get("accept", ""):
        return Reply(200, answer)
    return Reply(
        200,
        urlencode(answer).encode(),
        {"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
    )


# -- users and organizations -----------------------------------------------------------------


def _token_user(call: Call):
    return call.state.user(call.token.login)


def _has_scope(call: Call, *wanted: str) -> bool:
    scopes = call.token.scopes
    return scopes is None or any(s in scopes for s in wanted)


@route("GET", "/user", auth="user")
def get_authenticated_user(call: Call) -> Reply:
    return Reply(200, shapes.private_user(call.urls, _token_user(call)))


@route("GET", "/user/emails", auth="user")
def list_emails(call: Call) -> Reply:
    # Without the user:email (or user) scope GitHub answers 404, and says so in its docs.
    if not _has_scope(call, "user:email", "user"):
        raise not_found()
    return Reply(200, shapes.email_addresses(_token_user(call)))


@route("GET", "/user/memberships/orgs/{org}", auth="user")
def get_own_membership(call: Call, org: str) -> Reply:
    found = call.state.org(org)
    user = _token_user(call)
    membership = found.members.get(user.login.lower())
    if membership is None:
        raise not_found()
    return Reply(200, shapes.org_membership(call.urls, found, user, membership))


@route("GET", "/users/{username}")
def get_user(call: Call, username: str) -> Reply:
    user = call.state.users.get(username.lower())
    if user is None:
        raise not_found()  # GitHub also answers organizations here; the fake does not

    return Reply(200, shapes.public_user(call.urls, user))


@route("GET", "/orgs/{org}")
def get_org(call: Call, org: str) -> Reply:
    return Reply(200, shapes.organization_full(call.urls, call.state.org(org)))


@route("GET", "/orgs/{org}/members/{username}")
def check_member(call: Call, org: str, username: str) -> Reply:
    membership = call.state.org(org).members.get(username.lower())
    if membership is None or membership.state != "active":
        raise not_found()
    return Reply(204)


@route("GET", "/orgs/{org}/memberships/{username}")
def get_membership(call: Call, org: str, username: str) -> Reply:
    found = call.state.org(org)
    membership = found.members.get(username.lower())
    if membership is None:
        raise not_found()
    return Reply(
        200, shapes.org_membership(call.urls, found, call.state.user(username), membership)
    )


@route("GET", "/orgs/{org}/teams/{team_slug}")
def get_team(call: Call, org: str, team_slug: str) -> Reply:
    return Reply(200, shapes.team_full(call.urls, call.state, call.state.team(org, team_slug)))


@route("GET", "/orgs/{org}/teams/{team_slug}/members")
def list_team_members(call: Call, org: str, team_slug: str) -> Reply:
    team = call.state.team(org, team_slug)
    role = call.query.get("role", "all")
    logins = [login for login, r in team.members.items() if role == "all" or r == role]
    return paginate(
        call, [shapes.team_member(call.urls, call.state.user(login)) for login in logins]
    )


@route("GET", "/rate_limit")
def get_rate_limit(call: Call) -> Reply:
    state = call.state
    core = {
        "limit": 5000,
        "remaining": max(0, 5000 - state.rate_limit_used),
        "reset": state.rate_limit_reset,
        "used": min(5000, state.rate_limit_used),
    }
    search = {"limit": 30, "remaining": 30, "reset": state.rate_limit_reset, "used": 0}
    return Reply(200, {"resources": {"core": core, "search": search}, "rate": core})


# -- repositories and environments -----------------------------------------------------------


def _repo(call: Call, owner: str, repo: str):
    found = call.state.repo(f"{owner}/{repo}")
    token = call.token
    # An installation token restricted to some repositories does not see the others: GitHub
    # answers 404, as for a repository that does not exist.
    if token is not None and token.repository_ids is not None:
        if found.id not in token.repository_ids:
            raise not_found()
    return found


@route("GET", "/repos/{owner}/{repo}")
def get_repo(call: Call, owner: str, repo: str) -> Reply:
    return Reply(200, shapes.full_repository(call.urls, call.state, _repo(call, owner, repo)))


@route("GET", "/repos/{owner}/{repo}/environments")
def list_environments(call: Call, owner: str, repo: str) -> Reply:
    found = _repo(call, owner, repo)
    envs = [
        shapes.environment(call.urls, call.state, found, e) for e in found.environments.values()
    ]
    return paginate(call, envs, lambda page: {"total_count": len(envs), "environments": page})


@route("GET", "/repos/{owner}/{repo}/environments/{environment_name}")
def get_environment(call: Call, owner: str, repo: str, environment_name: str) -> Reply:
    found = _repo(call, owner, repo)
    env = call.state.environment_of(found, environment_name)
    return Reply(200, shapes.environment(call.urls, call.state, found, env))


@route("PUT", "/repos/{owner}/{repo}/environments/{environment_name}")
def put_environment(call: Call, owner: str, repo: str, environment_name: str) -> Reply:
    found = _repo(call, owner, repo)
    env = call.state.put_environment(found, environment_name, call.json())
    return Reply(200, shapes.environment(call.urls, call.state, found, env))


@route("DELETE", "/repos/{owner}/{repo}/environments/{environment_name}")
def delete_environment(call: Call, owner: str, repo: str, environment_name: str) -> Reply:
    call.state.delete_environment(_repo(call, owner, repo), environment_name)
    return Reply(204)


def _env(call: Call, owner: str, repo: str, environment_name: str):
    return call.state.environment_of(_repo(call, owner, repo), environment_name)


@route("GET", "/repos/{owner}/{repo}/environments/{environment_name}/secrets")
def list_environment_secrets(call: Call, owner: str, repo: str, environment_name: str) -> Reply:
    secrets = [shapes.secret(s) for s in _env(call, owner, repo, environment_name).secrets.values()]
    return paginate(call, secrets, lambda page: {"total_count": len(secrets), "secrets": page})


@route("GET", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key")
def get_environment_public_key(call: Call, owner: str, repo: str, environment_name: str) -> Reply:
    return Reply(200, shapes.public_key(_env(call, owner, repo, environment_name).key))


@route("GET", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}")
def get_environment_secret(
    call: Call, owner: str, repo: str, environment_name: str, secret_name: str
) -> Reply:
    found = _env(call, owner, repo, environment_name).secrets.get(secret_name.upper())
    if found is None:
        raise not_found()
    return Reply(200, shapes.secret(found))


@route("PUT", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}")
def put_environment_secret(
    call: Call, owner: str, repo: str, environment_name: str, secret_name: str
) -> Reply:
    env = _env(call, owner, repo, environment_name)
    created = call.state.put_secret(env.secrets, env.key, secret_name, call.json())
    return Reply(201, {}) if created else Reply(204)


@route("DELETE", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}")
def delete_environment_secret(
    call: Call, owner: str, repo: str, environment_name: str, secret_name: str
) -> Reply:
    call.state.delete_secret(_env(call, owner, repo, environment_name).secrets, secret_name)
    return Reply(204)


@route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule")
def review_custom_gate(call: Call, owner: str, repo: str, run_id: str) -> Reply:
    # Only the App whose rule is pending may review it, so only its installation token
    # works; GitHub refuses a personal token here (the wording is our own).
    if call.token.kind != "installation":
        raise GitHubError(
            403, "Only a GitHub App installation can review its deployment protection rule"
        )
    found = _repo(call, owner, repo)
    body = call.json()
    call.state.environment_of(found, body["environment_name"])
    call.state.record_protection_rule_review(
        ProtectionRuleReview(
            repo=found.full_name,
            run_id=_int(run_id),
            environment_name=body["environment_name"],
            state=body.get("state"),
            comment=body.get("comment"),
            at=time.time(),
            installation_id=call.token.installation_id,
        )
    )
    return Reply(204)


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}")
def get_workflow_run_attempt(
    call: Call, owner: str, repo: str, run_id: str, attempt_number: str
) -> Reply:
    found = _repo(call, owner, repo)
    run = call.state.workflow_run(found.full_name, _int(run_id))
    attempt = _int(attempt_number)
    if not 1 <= attempt <= len(run.triggering_actors):
        raise not_found()
    return Reply(200, shapes.workflow_run(call.urls, call.state, found, run, attempt))


# -- organization secrets --------------------------------------------------------------------


@route("GET", "/orgs/{org}/actions/secrets")
def list_org_secrets(call: Call, org: str) -> Reply:
    found = call.state.org(org)
    secrets = [shapes.org_secret(call.urls, found, s) for s in found.secrets.values()]
    return paginate(call, secrets, lambda page: {"total_count": len(secrets), "secrets": page})


@route("GET", "/orgs/{org}/actions/secrets/public-key")
def get_org_public_key(call: Call, org: str) -> Reply:
    return Reply(200, shapes.public_key(call.state.org(org).key))


@route("GET", "/orgs/{org}/actions/secrets/{secret_name}")
def get_org_secret(call: Call, org: str, secret_name: str) -> Reply:
    found = call.state.org(org)
    return Reply(
        200, shapes.org_secret(call.urls, found, call.state.org_secret(found, secret_name))
    )


@route("PUT", "/orgs/{org}/actions/secrets/{secret_name}")
def put_org_secret(call: Call, org: str, secret_name: str) -> Reply:
    created = call.state.put_org_secret(call.state.org(org), secret_name, call.json())
    return Reply(201, {}) if created else Reply(204)


@route("DELETE", "/orgs/{org}/actions/secrets/{secret_name}")
def delete_org_secret(call: Call, org: str, secret_name: str) -> Reply:
    call.state.delete_secret(call.state.org(org).secrets, secret_name)
    return Reply(204)


@route("GET", "/orgs/{org}/actions/secrets/{secret_name}/repositories")
def list_org_secret_repositories(call: Call, org: str, secret_name: str) -> Reply:
    state = call.state
    secret = state.org_secret(state.org(org), secret_name)
    repos = [
        shapes.minimal_repository(call.urls, state, state.repo_by_id(i))
        for i in secret.repository_ids
    ]
    return paginate(call, repos, lambda page: {"total_count": len(repos), "repositories": page})


@route("PUT", "/orgs/{org}/actions/secrets/{secret_name}/repositories")
def set_org_secret_repositories(call: Call, org: str, secret_name: str) -> Reply:
    ids = call.json()["selected_repository_ids"]
    call.state.set_org_secret_repositories(call.state.org(org), secret_name, ids)
    return Reply(204)


@route("PUT", "/orgs/{org}/actions/secrets/{secret_name}/repositories/{repository_id}")
def add_org_secret_repository(call: Call, org: str, secret_name: str, repository_id: str) -> Reply:
    call.state.add_org_secret_repository(call.state.org(org), secret_name, _int(repository_id))
    return Reply(204)


@route("DELETE", "/orgs/{org}/actions/secrets/{secret_name}/repositories/{repository_id}")
def remove_org_secret_repository(
    call: Call, org: str, secret_name: str, repository_id: str
) -> Reply:
    call.state.remove_org_secret_repository(call.state.org(org), secret_name, _int(repository_id))
    return Reply(204)


def _int(text: str) -> int:
    if not text.isdigit():
        raise not_found()
    return int(text)


# -- GitHub Apps -----------------------------------------------------------------------------


@route("POST", "/app/installations/{installation_id}/access_tokens", auth="jwt")
def create_installation_token(call: Call, installation_id: str) -> Reply:
    scheme, _, app_jwt = call.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not app_jwt:
        raise GitHubError(401, "A JSON web token could not be decoded")
    token, _ = call.state.issue_installation_token(
        _int(installation_id), app_jwt.strip(), call.json()
    )
    answer = {
        "token": token.value,
        "expires_at": shapes.iso(token.expires_at),
        "permissions": token.permissions,
        "repository_selection": "all" if token.repository_ids is None else "selected",
    }
    if token.repository_ids is not None:
        answer["repositories"] = [
            shapes.full_repository(call.urls, call.state, call.state.repo_by_id(i))
            for i in token.repository_ids
        ]
    return Reply(201, answer)


@route("DELETE", "/installation/token")
def revoke_installation_token(call: Call) -> Reply:
    # Only an installation token can revoke itself; an unknown, expired or revoked one was
    # already refused with 401 "Bad credentials" by _authenticate.
    if call.token.kind != "installation":
        raise GitHubError(403, "Resource not accessible by personal access token")
    call.state.revoke_installation_token(call.token)
    return Reply(204)


# -- OIDC issuer for Actions tokens ----------------------------------------------------------


@route("GET", "/oidc/.well-known/jwks", auth=None)
def oidc_jwks(call: Call) -> Reply:
    return Reply(200, call.fake.oidc.jwks())


@route("GET", "/oidc/.well-known/openid-configuration", auth=None)
def oidc_configuration(call: Call) -> Reply:
    return Reply(200, call.fake.oidc.configuration(call.fake.oidc_issuer))


# -- control API for out-of-process tests (not part of GitHub) -------------------------------


@route("POST", "/_fake/faults", auth=None)
def control_add_fault(call: Call) -> Reply:
    try:
        call.fake.faults.add_from_json(call.json() or {})
    except (TypeError, ValueError) as problem:
        raise GitHubError(400, str(problem)) from None
    return Reply(201, {"pending": len(call.fake.faults.pending)})


@route("DELETE", "/_fake/faults", auth=None)
def control_clear_faults(call: Call) -> Reply:
    call.fake.faults.clear()
    return Reply(204)


@route("POST", "/_fake/reset", auth=None)
def control_reset(call: Call) -> Reply:
    call.fake.reset()
    return Reply(204)


@route("POST", "/_fake/seed", auth=None)
def control_seed(call: Call) -> Reply:
    call.state.load(call.json() or {})
    return Reply(204)


@route("GET", "/_fake/state", auth=None)
def control_state(call: Call) -> Reply:
    return Reply(200, call.state.dump())


@route("GET", "/_fake/requests", auth=None)
def control_requests(call: Call) -> Reply:
    return Reply(200, [asdict(r) for r in call.state.requests])


@route("POST", "/_fake/oauth-user", auth=None)
def control_oauth_user(call: Call) -> Reply:
    call.state.set_oauth_user((call.json() or {}).get("login"))
    return Reply(204)


@route("POST", "/_fake/oidc/token", auth=None)
def control_mint_oidc_token(call: Call) -> Reply:
    body = call.json() or {}
    return Reply(
        200, {"token": call.fake.mint_oidc_token(body.get("claims") or {}, kid=body.get("kid"))}
    )


@route("POST", "/_fake/oidc/rotate", auth=None)
def control_rotate_oidc_key(call: Call) -> Reply:
    return Reply(
        200, {"kid": call.fake.rotate_oidc_key(keep_old=(call.json() or {}).get("keep_old", True))}
    )
