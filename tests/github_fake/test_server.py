"""The local GitHub answers like GitHub: shapes checked against GitHub's OpenAPI schemas."""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from github import Auth, Github, GithubException
from github.EnvironmentDeploymentBranchPolicy import EnvironmentDeploymentBranchPolicyParams
from github.EnvironmentProtectionRuleReviewer import ReviewerParams
from nacl.public import PublicKey, SealedBox

from tests.github_fake import cut_openapi, openapi
from tests.github_fake.keys import new_app_private_key_pem
from tests.github_fake.routes import ROUTES
from tests.github_fake.server import GitHubServer

ENV = "/repos/{owner}/{repo}/environments/{environment_name}"
ENV_SECRET = ENV + "/secrets/{secret_name}"
ORG_SECRET = "/orgs/{org}/actions/secrets/{secret_name}"


@pytest.fixture
def api(github):
    """A requests session on the REST API with the app token, GitHub's headers set."""
    session = requests.Session()
    session.headers.update(
        {
            "Authorization": f"Bearer {github.app_token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
    )
    session.base = github.api_url
    yield session
    session.close()


@pytest.fixture
def gh(github):
    """PyGithub on the fake, without its own retries (so faults show) or throttling."""
    client = pygithub(github, Auth.Token(github.app_token))
    yield client
    client.close()


def pygithub(github, auth):
    # PyGithub waits 0.25 s between requests and 1 s between writes by default.
    return Github(
        base_url=github.api_url,
        auth=auth,
        retry=None,
        seconds_between_requests=0,
        seconds_between_writes=0,
    )


def call(session, method, path, **kwargs):
    return session.request(method, session.base + path, timeout=5, **kwargs)


def assert_shape(response, method, template):
    """The response is what GitHub's OpenAPI description says that operation answers."""
    body = response.json() if response.content else None
    errors = openapi.response_errors(method, template, response.status_code, body)
    assert errors == [], f"{method} {template} {response.status_code}: {errors[:5]}"


def seal(public_key_b64, value):
    box = SealedBox(PublicKey(base64.b64decode(public_key_b64)))
    return base64.b64encode(box.encrypt(value.encode())).decode()


# -- the subset and the routes ---------------------------------------------------------------


def test_every_rest_route_is_an_operation_of_the_subset_and_the_reverse():
    rest = {
        (r.method.lower(), r.template)
        for r in ROUTES
        if not r.template.startswith(("/login", "/oidc", "/_fake"))
    }
    assert rest == set(cut_openapi.OPERATIONS)
    assert all(openapi.operation(m, t) for m, t in rest)


def test_rest_is_served_under_api_v3_and_at_the_root(github, api):
    github.add_repo("acme/api")
    assert call(api, "GET", "/repos/acme/api").status_code == 200
    root = api.get(f"{github.base_url}/repos/acme/api", timeout=5)
    assert root.status_code == 200
    assert root.json()["url"] == f"{github.base_url}/repos/acme/api"


def test_id_based_aliases_resolve_to_the_named_resource(github, gh):
    repo = github.add_repo("acme/api", id=5150)
    assert gh.get_repo(5150).full_name == "acme/api"
    assert github.requests[-1].path == "/repos/acme/api"
    assert github.requests[-1].raw_path == "/api/v3/repositories/5150"
    assert repo.id == 5150


def test_rate_limit_answers_githubs_shape(github, api):
    response = call(api, "GET", "/rate_limit")
    assert_shape(response, "GET", "/rate_limit")
    assert response.json()["rate"]["remaining"] == 4999


def test_requests_without_or_with_a_bad_token_are_401(github):
    github.add_repo("acme/api")
    anonymous = requests.get(f"{github.api_url}/repos/acme/api", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json()["message"] == "Requires authentication"
    bad = requests.get(
        f"{github.api_url}/repos/acme/api", headers={"Authorization": "token nope"}, timeout=5
    )
    assert (bad.status_code, bad.json()["message"]) == (401, "Bad credentials")


# -- users, organizations, teams -------------------------------------------------------------


def test_user_endpoints_answer_githubs_shapes(github):
    github.add_user("alice", id=4242, name="Alice", email="alice@example.com")
    github.add_token("gho_alice", scopes=["read:user", "user:email"], login="alice")
    session = requests.Session()
    session.headers["Authorization"] = "token gho_alice"
    session.base = github.api_url

    me = call(session, "GET", "/user")
    assert_shape(me, "GET", "/user")
    assert (me.json()["login"], me.json()["id"], me.json()["type"]) == ("alice", 4242, "User")
    assert me.headers["x-oauth-scopes"] == "read:user, user:email"

    emails = call(session, "GET", "/user/emails")
    assert_shape(emails, "GET", "/user/emails")
    assert emails.json()[0] == {
        "email": "alice@example.com",
        "primary": True,
        "verified": True,
        "visibility": "private",
    }
    public = call(session, "GET", "/users/alice")
    assert_shape(public, "GET", "/users/{username}")
    assert public.json()["id"] == 4242
    assert call(session, "GET", "/users/nobody").status_code == 404


def test_user_emails_is_404_without_the_email_scope_as_github_documents(github):
    github.add_token("gho_bob", scopes=["read:user"], login="bob")
    response = requests.get(
        f"{github.api_url}/user/emails", headers={"Authorization": "token gho_bob"}, timeout=5
    )
    assert response.status_code == 404


def test_the_app_token_belongs_to_no_user(github, api):
    response = call(api, "GET", "/user")
    assert response.status_code == 403


def test_own_org_membership_is_active_pending_or_404(github):
    github.add_org("acme")
    github.add_org_member("acme", "alice")
    github.add_org_member("acme", "bob", state="pending")
    github.add_user("mallory")
    for login in ("alice", "bob", "mallory"):
        github.add_token(f"gho_{login}", login=login)

    def membership(login):
        return requests.get(
            f"{github.api_url}/user/memberships/orgs/acme",
            headers={"Authorization": f"token gho_{login}"},
            timeout=5,
        )

    active = membership("alice")
    assert_shape(active, "GET", "/user/memberships/orgs/{org}")
    assert (active.json()["state"], active.json()["role"]) == ("active", "member")
    assert active.json()["organization"]["login"] == "acme"
    assert active.json()["user"]["login"] == "alice"
    assert membership("bob").json()["state"] == "pending"
    assert membership("mallory").status_code == 404


def test_org_member_checks(github, api):
    github.add_user("alice", orgs=["acme"])
    github.add_user("mallory")
    assert call(api, "GET", "/orgs/acme/members/alice").status_code == 204
    assert call(api, "GET", "/orgs/acme/members/mallory").status_code == 404
    membership = call(api, "GET", "/orgs/acme/memberships/alice")
    assert_shape(membership, "GET", "/orgs/{org}/memberships/{username}")
    assert_shape(call(api, "GET", "/orgs/acme"), "GET", "/orgs/{org}")


def test_team_members_are_paginated_with_a_link_header(github, api, gh):
    members = [f"user{i}" for i in range(5)]
    github.add_team("acme", "sre", members)
    team = call(api, "GET", "/orgs/acme/teams/sre")
    assert_shape(team, "GET", "/orgs/{org}/teams/{team_slug}")

    first = call(api, "GET", "/orgs/acme/teams/sre/members", params={"per_page": 2})
    assert_shape(first, "GET", "/orgs/{org}/teams/{team_slug}/members")
    assert [m["login"] for m in first.json()] == ["user0", "user1"]
    assert 'rel="next"' in first.headers["link"] and "page=3" in first.headers["link"]
    last = call(api, "GET", "/orgs/acme/teams/sre/members", params={"per_page": 2, "page": 3})
    assert [m["login"] for m in last.json()] == ["user4"]

    # PyGithub follows the team's id-based url and the Link header.
    gh.per_page = 2
    logins = [m.login for m in gh.get_organization("acme").get_team_by_slug("sre").get_members()]
    assert logins == members


def test_pygithub_get_user_by_login_gives_the_id(github, gh):
    github.add_user("alice", id=77)
    assert gh.get_user("alice").id == 77


# -- repositories and environments -----------------------------------------------------------


def seed_production(github):
    github.add_team("acme", "sre", ["bob"])
    return github.add_environment(
        "acme/api",
        "production",
        reviewers=[("User", "alice"), ("Team", "acme/sre")],
        wait_timer=30,
        prevent_self_review=True,
        deployment_branch_policy={"protected_branches": True, "custom_branch_policies": False},
    )


def test_repository_and_environment_answer_githubs_shapes(github, api):
    seed_production(github)
    repo = call(api, "GET", "/repos/acme/api")
    assert_shape(repo, "GET", "/repos/{owner}/{repo}")
    assert repo.json()["owner"]["login"] == "acme"

    env = call(api, "GET", "/repos/acme/api/environments/production")
    assert_shape(env, "GET", ENV)
    rules = {rule["type"]: rule for rule in env.json()["protection_rules"]}
    assert list(rules) == ["wait_timer", "required_reviewers", "branch_policy"]
    assert rules["wait_timer"]["wait_timer"] == 30
    reviewers = rules["required_reviewers"]
    assert reviewers["prevent_self_review"] is True
    assert [
        (r["type"], r["reviewer"]["slug" if r["type"] == "Team" else "login"])
        for r in reviewers["reviewers"]
    ] == [
        ("User", "alice"),
        ("Team", "sre"),
    ]
    assert env.json()["deployment_branch_policy"] == {
        "protected_branches": True,
        "custom_branch_policies": False,
    }
    listing = call(api, "GET", "/repos/acme/api/environments")
    assert_shape(listing, "GET", "/repos/{owner}/{repo}/environments")
    assert listing.json()["total_count"] == 1


def test_missing_environment_is_404_with_githubs_body(github, api):
    github.add_repo("acme/api")
    response = call(api, "GET", "/repos/acme/api/environments/nope")
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"
    assert "documentation_url" in response.json()


def test_pygithub_reads_protection_rules(github, gh):
    seed_production(github)
    env = gh.get_repo("acme/api").get_environment("production")
    reviewers = next(r for r in env.protection_rules if r.type == "required_reviewers").reviewers
    assert [(r.type, getattr(r.reviewer, "login", None) or r.reviewer.slug) for r in reviewers] == [
        ("User", "alice"),
        ("Team", "sre"),
    ]
    assert env.deployment_branch_policy.protected_branches is True


def test_put_environment_replaces_every_setting(github, api):
    seed_production(github)
    carol = github.add_user("carol")
    response = call(
        api,
        "PUT",
        "/repos/acme/api/environments/production",
        json={"reviewers": [{"type": "User", "id": carol.id}]},
    )
    assert_shape(response, "PUT", ENV)
    assert github.environment("acme/api", "production") | {"id": 0} == {
        "name": "production",
        "id": 0,
        "wait_timer": 0,
        "prevent_self_review": False,
        "reviewers": [("User", "carol")],
        "deployment_branch_policy": None,
        "can_admins_bypass": True,
        "secrets": {},
    }
    assert github.writes[-1].json == {"reviewers": [{"type": "User", "id": carol.id}]}


def test_pygithub_create_environment_sends_every_field(github, gh):
    seed_production(github)
    alice = gh.get_user("alice")
    gh.get_repo("acme/api").create_environment(
        "production",
        wait_timer=30,
        reviewers=[ReviewerParams("User", alice.id)],
        prevent_self_review=True,
        deployment_branch_policy=EnvironmentDeploymentBranchPolicyParams(protected_branches=True),
    )
    assert github.reviewers("acme/api", "production") == ["alice"]
    assert github.writes[-1].json["deployment_branch_policy"] == {
        "protected_branches": True,
        "custom_branch_policies": False,
    }


def test_more_than_six_reviewers_is_refused(github, api):
    ids = [github.add_user(f"user{i}").id for i in range(7)]
    github.add_repo("acme/api")
    body = {"reviewers": [{"type": "User", "id": i} for i in ids]}
    response = call(api, "PUT", "/repos/acme/api/environments/production", json=body)
    assert response.status_code == 422
    assert "6 reviewers" in response.json()["message"]
    assert github.environment("acme/api", "production") is None


def test_unknown_reviewers_and_reviewers_without_access_are_refused(github, api):
    github.add_repo("acme/api", no_read_access=["eve"])
    eve = github.add_user("eve")
    unknown = call(
        api,
        "PUT",
        "/repos/acme/api/environments/production",
        json={"reviewers": [{"type": "User", "id": 1}]},
    )
    assert unknown.status_code == 422
    no_access = call(
        api,
        "PUT",
        "/repos/acme/api/environments/production",
        json={"reviewers": [{"type": "User", "id": eve.id}]},
    )
    assert no_access.status_code == 422
    assert "doesn't have access" in no_access.json()["message"]


def test_a_body_the_schema_refuses_is_422_and_recorded(github, api):
    github.expect_schema_violations()
    github.add_repo("acme/api")
    response = call(
        api,
        "PUT",
        "/repos/acme/api/environments/production",
        json={"wait_timer": "5", "can_admins_bypass": False},
    )
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith("Invalid request.\n\n")
    assert '"can_admins_bypass" is not a permitted key.' in message
    [violation] = github.schema_violations
    assert violation.operation_id == "repos/create-or-update-environment"
    assert github.environment("acme/api", "production") is None


def test_unexpected_schema_violations_are_reported_for_teardown(github, api):
    github.add_repo("acme/api")
    call(api, "PUT", "/repos/acme/api/environments/production", json={"wait_timer": "5"})
    assert len(github.unexpected_schema_violations()) == 1
    github.expect_schema_violations()  # this test means it; teardown stays quiet
    assert github.unexpected_schema_violations() == []


# -- secrets ---------------------------------------------------------------------------------


def test_environment_secret_written_by_pygithub_is_decrypted(github, gh):
    github.add_environment("acme/api", "production")
    env = gh.get_repo("acme/api").get_environment("production")
    env.create_secret("deploy_token", "s3cret value")
    assert (
        github.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") == "s3cret value"
    )
    assert [s.name for s in env.get_secrets()] == ["DEPLOY_TOKEN"]
    assert env.delete_secret("DEPLOY_TOKEN") is True
    assert github.environment_secret_value("acme/api", "production", "DEPLOY_TOKEN") is None


def test_environment_secret_lifecycle_over_http(github, api):
    github.add_environment("acme/api", "production")
    base = "/repos/acme/api/environments/production/secrets"
    key = call(api, "GET", f"{base}/public-key")
    assert_shape(key, "GET", ENV + "/secrets/public-key")
    key_id, public = key.json()["key_id"], key.json()["key"]

    created = call(
        api, "PUT", f"{base}/TOKEN", json={"encrypted_value": seal(public, "one"), "key_id": key_id}
    )
    assert (created.status_code, created.json()) == (201, {})
    updated = call(
        api, "PUT", f"{base}/TOKEN", json={"encrypted_value": seal(public, "two"), "key_id": key_id}
    )
    assert updated.status_code == 204
    assert github.environment_secret_value("acme/api", "production", "token") == "two"

    wrong_key = call(
        api, "PUT", f"{base}/TOKEN", json={"encrypted_value": seal(public, "x"), "key_id": "1"}
    )
    assert wrong_key.status_code == 422
    metadata = call(api, "GET", f"{base}/TOKEN")
    assert_shape(metadata, "GET", ENV_SECRET)
    assert_shape(call(api, "GET", base), "GET", ENV + "/secrets")
    assert call(api, "DELETE", f"{base}/TOKEN").status_code == 204
    assert call(api, "DELETE", f"{base}/TOKEN").status_code == 404
    assert call(api, "GET", f"{base}/TOKEN").status_code == 404


def test_org_secret_selected_repositories(github, api, gh):
    github.add_repo("acme/web")
    api_repo = github.add_repo("acme/api")
    github.add_org_secret("acme", "NPM_TOKEN", repositories=["acme/web"])
    secret = call(api, "GET", "/orgs/acme/actions/secrets/NPM_TOKEN")
    assert_shape(secret, "GET", ORG_SECRET)
    assert secret.json()["selected_repositories_url"].endswith(
        "/orgs/acme/actions/secrets/NPM_TOKEN/repositories"
    )

    pygithub_secret = gh.get_organization("acme").get_secret("NPM_TOKEN")
    assert pygithub_secret.add_repo(gh.get_repo("acme/api")) is True
    assert github.org_secret_repositories("acme", "NPM_TOKEN") == ["acme/api", "acme/web"]
    listing = call(api, "GET", "/orgs/acme/actions/secrets/NPM_TOKEN/repositories")
    assert_shape(listing, "GET", ORG_SECRET + "/repositories")
    assert listing.json()["total_count"] == 2
    assert pygithub_secret.remove_repo(gh.get_repo("acme/api")) is True
    assert github.org_secret_repositories("acme", "NPM_TOKEN") == ["acme/web"]

    replaced = call(
        api,
        "PUT",
        "/orgs/acme/actions/secrets/NPM_TOKEN/repositories",
        json={"selected_repository_ids": [api_repo.id]},
    )
    assert replaced.status_code == 204
    assert github.org_secret_repositories("acme", "NPM_TOKEN") == ["acme/api"]


def test_org_secret_repositories_conflict_unless_visibility_is_selected(github, api):
    repo = github.add_repo("acme/api")
    github.add_org_secret("acme", "EVERYWHERE", visibility="all")
    response = call(api, "PUT", f"/orgs/acme/actions/secrets/EVERYWHERE/repositories/{repo.id}")
    assert response.status_code == 409
    # A PUT without a value changes only who sees the secret.
    narrowed = call(
        api,
        "PUT",
        "/orgs/acme/actions/secrets/EVERYWHERE",
        json={"visibility": "selected", "selected_repository_ids": [repo.id]},
    )
    assert narrowed.status_code == 204
    assert github.org_secret_repositories("acme", "EVERYWHERE") == ["acme/api"]


def test_org_secret_written_by_pygithub(github, gh):
    github.add_repo("acme/api")
    org = gh.get_organization("acme")
    org.create_secret(
        "SHARED", "value", visibility="selected", selected_repositories=[gh.get_repo("acme/api")]
    )
    assert github.org_secret_value("acme", "SHARED") == "value"
    assert github.org_secret_repositories("acme", "SHARED") == ["acme/api"]


# -- deployment protection rule callback and GitHub Apps -------------------------------------


def _installation_session(github, installation_id):
    """A session on the REST API with an installation token of a registered App."""
    token = requests.post(
        f"{github.api_url}/app/installations/{installation_id}/access_tokens",
        headers={"Authorization": f"Bearer {_app_jwt(github.app_key)}"},
        timeout=5,
    ).json()["token"]
    session = requests.Session()
    session.headers["Authorization"] = f"token {token}"
    session.base = github.api_url
    return session


def _app_jwt(key):
    moment = int(time.time())
    return jwt.encode({"iss": "123", "iat": moment - 60, "exp": moment + 300}, key, "RS256")


@pytest.fixture
def installation(github):
    github.app_key = new_app_private_key_pem()
    return github.register_app(123, github.app_key)


RUN_ATTEMPT = "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}"


def test_a_run_attempt_names_its_triggering_actor_in_githubs_shape(github, api):
    run = github.add_workflow_run("acme/api", run_id=77, actor="erin")
    assert github.rerun_workflow("acme/api", 77, triggering_actor="dave") == 2
    first = call(api, "GET", "/repos/acme/api/actions/runs/77/attempts/1")
    second = call(api, "GET", "/repos/acme/api/actions/runs/77/attempts/2")
    for response in (first, second):
        assert response.status_code == 200
        assert_shape(response, "get", RUN_ATTEMPT)
    assert (first.json()["run_attempt"], first.json()["triggering_actor"]["login"]) == (1, "erin")
    assert second.json()["actor"]["login"] == "erin"  # the author, on every attempt
    assert second.json()["triggering_actor"] == {
        **second.json()["triggering_actor"],
        "login": "dave",
        "id": github.user("dave").id,
    }
    assert second.json()["id"] == run.id
    assert second.json()["previous_attempt_url"].endswith("/actions/runs/77/attempts/1")


@pytest.mark.parametrize(
    "path",
    [
        "/repos/acme/api/actions/runs/78/attempts/1",  # no such run
        "/repos/acme/api/actions/runs/77/attempts/3",  # no such attempt
        "/repos/acme/api/actions/runs/77/attempts/0",
        "/repos/acme/other/actions/runs/77/attempts/1",  # the run is another repository's
    ],
)
def test_an_unknown_run_attempt_is_404(github, api, path):
    github.add_repo("acme/other")
    github.add_workflow_run("acme/api", run_id=77, actor="erin")
    github.rerun_workflow("acme/api", 77, triggering_actor="dave")
    response = call(api, "GET", path)
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"


def test_run_attempts_take_faults(github, api):
    github.add_workflow_run("acme/api", run_id=77, actor="erin")
    github.faults.add("GET", "/repos/*/*/actions/runs/*/attempts/*", status=502, times=1)
    path = "/repos/acme/api/actions/runs/77/attempts/1"
    assert call(api, "GET", path).status_code == 502
    assert call(api, "GET", path).status_code == 200


def test_deployment_protection_rule_callback_is_recorded(github, installation):
    github.add_environment("acme/api", "production")
    session = _installation_session(github, installation)
    body = {"environment_name": "production", "state": "approved", "comment": "grant 7 active"}
    response = call(
        session, "POST", "/repos/acme/api/actions/runs/99/deployment_protection_rule", json=body
    )
    assert response.status_code == 204
    [callback] = github.callbacks
    assert (callback.repo, callback.run_id, callback.state, callback.comment) == (
        "acme/api",
        99,
        "approved",
        "grant 7 active",
    )
    assert callback.installation_id == installation


def test_a_status_comment_without_a_state_is_a_valid_callback(github, installation):
    github.add_environment("acme/api", "production")
    session = _installation_session(github, installation)
    body = {"environment_name": "production", "comment": "waiting for a grant"}
    response = call(
        session, "POST", "/repos/acme/api/actions/runs/99/deployment_protection_rule", json=body
    )
    assert response.status_code == 204
    assert github.callbacks[0].state is None


def test_a_callback_needs_a_state_or_a_comment(github, installation):
    github.add_environment("acme/api", "production")
    github.expect_schema_violations()
    session = _installation_session(github, installation)
    response = call(
        session,
        "POST",
        "/repos/acme/api/actions/runs/99/deployment_protection_rule",
        json={"environment_name": "production"},
    )
    assert response.status_code == 422
    assert github.callbacks == []


def test_a_personal_token_cannot_review_a_deployment_protection_rule(github, api):
    github.add_environment("acme/api", "production")
    body = {"environment_name": "production", "state": "approved"}
    response = call(
        api, "POST", "/repos/acme/api/actions/runs/99/deployment_protection_rule", json=body
    )
    assert response.status_code == 403
    assert github.callbacks == []


def test_the_deployment_protection_rule_event_matches_githubs_schema(github):
    github.add_user("dave")
    github.add_environment("acme/api", "production")
    payload = github.deployment_protection_rule_event(
        "acme/api", "production", run_id=4242, login="dave", installation_id=77
    )
    assert openapi.webhook_payload_errors("deployment-protection-rule-requested", payload) == []
    assert payload["deployment_callback_url"] == (
        f"{github.api_url}/repos/acme/api/actions/runs/4242/deployment_protection_rule"
    )
    assert (payload["sender"]["login"], payload["installation"]["id"]) == ("dave", 77)
    assert payload["ref"] == "main"  # a name, as GitHub sends it, not refs/heads/main
    assert payload["organization"]["login"] == "acme"


def test_a_webhook_delivery_is_signed_with_the_secret_over_the_exact_body(github):
    body, headers = github.webhook_delivery("ping", {"zen": "Keep it logically awesome."}, "s3")
    expected = hmac.new(b"s3", body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == f"sha256={expected}"
    assert headers["X-GitHub-Event"] == "ping"
    assert headers["X-GitHub-Delivery"]


def test_app_installation_token_from_pygithub_app_auth(github):
    pem = new_app_private_key_pem()
    installation_id = github.register_app(123, pem)
    github.add_repo("acme/api")
    auth = Auth.AppAuth(123, pem).get_installation_auth(installation_id)
    client = pygithub(github, auth)
    assert client.get_repo("acme/api").full_name == "acme/api"
    [token_call] = [r for r in github.requests if r.path.endswith("/access_tokens")]
    assert token_call.status == 201
    client.close()


def test_app_token_request_with_a_foreign_key_is_401(github):
    github.register_app(123, new_app_private_key_pem())
    forged = jwt.encode(
        {"iss": "123", "iat": int(time.time()) - 60, "exp": int(time.time()) + 300},
        new_app_private_key_pem(),
        algorithm="RS256",
    )
    response = requests.post(
        f"{github.api_url}/app/installations/1/access_tokens",
        headers={"Authorization": f"Bearer {forged}"},
        timeout=5,
    )
    assert response.status_code == 401


# -- scoped installation tokens (issue 15) ---------------------------------------------------

ACCESS_TOKENS = "/app/installations/{installation_id}/access_tokens"


@pytest.fixture
def acme_app(github):
    """App 123 installed on acme with contents write and metadata read; acme/api, acme/web
    and other/api exist."""
    github.app_key = new_app_private_key_pem()
    for name in ("acme/api", "acme/web", "other/api"):
        github.add_repo(name)
    return github.register_app(
        123, github.app_key, account="acme", permissions={"contents": "write", "metadata": "read"}
    )


def mint(github, installation_id, body=None):
    return requests.post(
        f"{github.api_url}/app/installations/{installation_id}/access_tokens",
        headers={"Authorization": f"Bearer {_app_jwt(github.app_key)}"},
        json=body,
        timeout=5,
    )


def with_token(github, token, method, path):
    return requests.request(
        method, github.api_url + path, headers={"Authorization": f"token {token}"}, timeout=5
    )


def test_a_token_restricted_to_one_repository_and_permissions_records_that_scope(github, acme_app):
    response = mint(
        github, acme_app, {"repositories": ["api"], "permissions": {"contents": "read"}}
    )
    assert response.status_code == 201
    assert_shape(response, "post", ACCESS_TOKENS)
    body = response.json()
    assert body["permissions"] == {"contents": "read"}
    assert body["repository_selection"] == "selected"
    assert [r["full_name"] for r in body["repositories"]] == ["acme/api"]
    token = github.installation_token(body["token"])
    assert token.permissions == {"contents": "read"}
    assert github.token_repositories(token) == ["acme/api"]
    assert token.installation_id == acme_app and not token.revoked
    assert github.installation_tokens == [token]


def test_a_token_by_repository_id_is_restricted_to_it(github, acme_app):
    web = github.repo("acme/web")
    response = mint(github, acme_app, {"repository_ids": [web.id]})
    assert response.status_code == 201
    token = github.installation_token(response.json()["token"])
    assert github.token_repositories(token) == ["acme/web"]
    assert token.permissions == {"contents": "write", "metadata": "read"}  # all it holds


def test_a_token_without_restrictions_has_all_repositories_and_permissions(github, acme_app):
    response = mint(github, acme_app)
    assert response.status_code == 201
    assert_shape(response, "post", ACCESS_TOKENS)
    body = response.json()
    assert body["repository_selection"] == "all" and "repositories" not in body
    assert body["permissions"] == {"contents": "write", "metadata": "read"}
    assert github.installation_token(body["token"]).repository_ids is None


@pytest.mark.parametrize(
    "permissions",
    [{"issues": "read"}, {"metadata": "write"}, {"contents": "read", "actions": "write"}],
    ids=["not-held", "above-the-level-held", "one-of-them-not-held"],
)
def test_a_permission_the_installation_lacks_is_422(github, acme_app, permissions):
    response = mint(github, acme_app, {"repositories": ["api"], "permissions": permissions})
    assert response.status_code == 422
    assert response.json()["message"] == (
        "The permissions requested are not granted to this installation."
    )
    assert github.installation_tokens == []


@pytest.mark.parametrize(
    "body",
    [{"repositories": ["nope"]}, {"repository_ids": [999999]}, {"repositories": ["api", "x"]}],
    ids=["unknown-name", "unknown-id", "one-unknown"],
)
def test_a_repository_the_installation_cannot_reach_is_422(github, acme_app, body):
    response = mint(github, acme_app, body)
    assert response.status_code == 422
    message = response.json()["message"]
    assert "at least one repository that does not exist or is not accessible" in message
    assert github.installation_tokens == []


def test_a_repository_of_another_account_is_422(github, acme_app):
    other = github.repo("other/api")
    assert mint(github, acme_app, {"repository_ids": [other.id]}).status_code == 422


def test_the_mint_body_is_checked_against_githubs_schema(github, acme_app):
    github.expect_schema_violations()
    response = mint(github, acme_app, {"repositories": "api", "permissions": {"contents": "rw"}})
    assert response.status_code == 422
    assert response.json()["message"].startswith("Invalid request.")
    [violation] = github.schema_violations
    assert violation.operation_id == "apps/create-installation-access-token"


def test_a_restricted_token_gets_404_for_other_repositories(github, acme_app):
    token = mint(github, acme_app, {"repositories": ["api"]}).json()["token"]
    assert with_token(github, token, "GET", "/repos/acme/api").status_code == 200
    assert with_token(github, token, "GET", "/repos/acme/web").status_code == 404
    assert with_token(github, token, "GET", "/repos/acme/web/environments").status_code == 404
    web = github.repo("acme/web")
    assert with_token(github, token, "GET", f"/repositories/{web.id}").status_code == 404


def test_revoking_an_installation_token_is_204_then_it_stops_working(github, acme_app):
    token = mint(github, acme_app, {"repositories": ["api"]}).json()["token"]
    response = with_token(github, token, "DELETE", "/installation/token")
    assert response.status_code == 204
    assert_shape(response, "delete", "/installation/token")
    record = github.installation_token(token)
    assert record.revoked and record.revoked_at is not None
    refused = with_token(github, token, "GET", "/repos/acme/api")
    assert (refused.status_code, refused.json()["message"]) == (401, "Bad credentials")
    again = with_token(github, token, "DELETE", "/installation/token")
    assert (again.status_code, again.json()["message"]) == (401, "Bad credentials")


def test_revoking_an_unknown_or_expired_token_is_401(github, acme_app):
    unknown = with_token(github, "ghs_nosuchtoken", "DELETE", "/installation/token")
    assert (unknown.status_code, unknown.json()["message"]) == (401, "Bad credentials")
    token = mint(github, acme_app).json()["token"]
    github.installation_token(token).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    expired = with_token(github, token, "DELETE", "/installation/token")
    assert (expired.status_code, expired.json()["message"]) == (401, "Bad credentials")
    assert not github.installation_token(token).revoked


def test_only_an_installation_token_revokes_itself(github, api):
    response = call(api, "DELETE", "/installation/token")
    assert response.status_code == 403


def test_faults_apply_to_the_token_endpoints(github, acme_app):
    github.faults.add("POST", "/app/installations/*/access_tokens", status=502, times=1)
    assert mint(github, acme_app).status_code == 502
    token = mint(github, acme_app).json()["token"]
    github.faults.add("DELETE", "/installation/token", status=503, times=1)
    assert with_token(github, token, "DELETE", "/installation/token").status_code == 503
    assert not github.installation_token(token).revoked
    assert with_token(github, token, "DELETE", "/installation/token").status_code == 204


# -- OAuth web flow --------------------------------------------------------------------------


def authorize(github, **params):
    query = {
        "client_id": "airlock-test-client",
        "redirect_uri": "http://portal.test/accounts/github/login/callback/",
        "state": "xyz",
        "scope": "read:user user:email",
        **params,
    }
    return requests.get(
        f"{github.base_url}/login/oauth/authorize", params=query, allow_redirects=False, timeout=5
    )


def exchange(github, code, accept="application/json", **extra):
    form = {
        "client_id": "airlock-test-client",
        "client_secret": "airlock-test-secret",
        "code": code,
        "redirect_uri": "http://portal.test/accounts/github/login/callback/",
        **extra,
    }
    return requests.post(
        f"{github.base_url}/login/oauth/access_token",
        data=form,
        headers={"Accept": accept},
        timeout=5,
    )


def test_oauth_code_flow_over_http(github):
    github.add_user("alice", email="alice@example.com")
    github.set_oauth_user("alice")
    redirect = authorize(github)
    assert redirect.status_code == 302
    params = parse_qs(urlsplit(redirect.headers["location"]).query)
    assert params["state"] == ["xyz"]
    code = params["code"][0]

    token = exchange(github, code).json()
    assert token["token_type"] == "bearer" and token["scope"] == "read:user,user:email"
    me = requests.get(
        f"{github.api_url}/user",
        headers={"Authorization": f"token {token['access_token']}"},
        timeout=5,
    )
    assert me.json()["login"] == "alice"
    assert exchange(github, code).json()["error"] == "bad_verification_code"  # single use


def test_oauth_token_answer_is_urlencoded_unless_json_is_accepted(github):
    github.set_oauth_user("alice")
    code = parse_qs(urlsplit(authorize(github).headers["location"]).query)["code"][0]
    answer = exchange(github, code, accept="*/*")
    assert answer.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert parse_qs(answer.text)["token_type"] == ["bearer"]


def test_oauth_refuses_wrong_client_secret(github):
    github.set_oauth_user("alice")
    code = parse_qs(urlsplit(authorize(github).headers["location"]).query)["code"][0]
    answer = exchange(github, code, client_secret="wrong").json()
    assert answer["error"] == "incorrect_client_credentials"


def test_oauth_pkce_verifier_must_match(github):
    github.set_oauth_user("alice")
    verifier = "v" * 50
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    location = authorize(github, code_challenge=challenge, code_challenge_method="S256").headers[
        "location"
    ]
    code = parse_qs(urlsplit(location).query)["code"][0]
    assert "access_token" in exchange(github, code, code_verifier=verifier).json()


def test_authorize_without_a_signed_in_user_shows_a_sign_in_form(github):
    github.add_user("carol")
    page = authorize(github)
    assert page.status_code == 200 and "Sign in to local GitHub as" in page.text
    form = {
        "login": "carol",
        "client_id": "airlock-test-client",
        "redirect_uri": "http://portal.test/cb",
        "state": "s1",
    }
    signed_in = requests.post(
        f"{github.base_url}/login/oauth/authorize", data=form, allow_redirects=False, timeout=5
    )
    assert signed_in.status_code == 302
    assert signed_in.headers["location"].startswith("http://portal.test/cb?code=")


# -- faults and the request log --------------------------------------------------------------


def test_a_502_fault_answers_once_then_github_answers(github, api):
    github.add_environment("acme/api", "production")
    github.faults.add("PUT", "/repos/*/*/environments/*", status=502, times=1)
    path = "/repos/acme/api/environments/production"
    assert call(api, "PUT", path, json={}).status_code == 502
    assert call(api, "PUT", path, json={}).status_code == 200
    assert [r.status for r in github.writes] == [502, 200]


def test_fault_globs_stay_inside_a_path_segment(github, api):
    github.add_environment("acme/api", "production")
    github.faults.add("*", "/repos/*/*/environments/*", status=503, times=None)
    assert call(api, "GET", "/repos/acme/api/environments/production/secrets").status_code == 200
    assert call(api, "GET", "/repos/acme/api/environments/production").status_code == 503


def test_secondary_rate_limit_has_retry_after_and_pygithub_recognises_it(github, gh):
    github.add_repo("acme/api")
    github.faults.secondary_rate_limit("GET", "/repos/**", retry_after=7)
    with pytest.raises(GithubException) as refused:
        gh.get_repo("acme/api")
    assert refused.value.status == 403
    assert refused.value.headers["retry-after"] == "7"
    assert refused.value.__class__.__name__ == "RateLimitExceededException"


def test_primary_rate_limit_has_githubs_headers(github, api):
    github.faults.primary_rate_limit(reset_in=30, status=429)
    response = call(api, "GET", "/repos/acme/api")
    assert response.status_code == 429
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert int(response.headers["x-ratelimit-reset"]) >= int(time.time()) + 29


# -- conditional requests ---------------------------------------------------------------------


def test_a_get_carries_an_etag_and_if_none_match_with_it_is_a_free_304(github, api):
    seed_production(github)
    path = "/repos/acme/api/environments/production"
    first = call(api, "GET", path)
    etag = first.headers["etag"]
    assert etag.startswith('W/"') and etag.endswith('"')
    used = github.rate_limited_calls

    again = call(api, "GET", path, headers={"If-None-Match": etag})

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert github.rate_limited_calls == used  # GitHub does not count an authorised 304
    assert again.headers["x-ratelimit-remaining"] == first.headers["x-ratelimit-remaining"]
    assert int(again.headers["x-ratelimit-remaining"]) == 5000 - github.rate_limited_calls
    assert github.requests[-1].headers["if-none-match"] == etag
    assert github.requests[-1].status == 304


def test_if_none_match_compares_weakly_and_takes_a_list(github, api):
    github.add_repo("acme/api")
    etag = call(api, "GET", "/repos/acme/api").headers["etag"]
    strong = etag.removeprefix("W/")
    for header in (strong, f'"other", {etag}', "*"):
        answer = call(api, "GET", "/repos/acme/api", headers={"If-None-Match": header})
        assert answer.status_code == 304, header
    stale = call(api, "GET", "/repos/acme/api", headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200


def test_the_etag_changes_when_the_resource_changes(github, api):
    github.add_user("alice")
    seed_production(github)
    path = "/repos/acme/api/environments/production"
    etag = call(api, "GET", path).headers["etag"]
    call(api, "PUT", path, json={"wait_timer": 5})
    used = github.rate_limited_calls

    changed = call(api, "GET", path, headers={"If-None-Match": etag})

    assert changed.status_code == 200
    assert changed.json()["protection_rules"][0]["wait_timer"] == 5
    assert changed.headers["etag"] != etag
    assert github.rate_limited_calls == used + 1


def test_etags_are_specific_to_the_token_as_on_github(github, api):
    github.add_repo("acme/api")
    github.add_token("ghp_other")
    etag = call(api, "GET", "/repos/acme/api").headers["etag"]
    other = requests.get(
        f"{github.api_url}/repos/acme/api",
        headers={"Authorization": "token ghp_other", "If-None-Match": etag},
        timeout=5,
    )
    assert other.status_code == 200
    assert other.headers["etag"] != etag


def test_each_page_of_a_list_has_its_own_etag(github, api):
    github.add_team("acme", "sre", [f"user{i}" for i in range(3)])
    path = "/orgs/acme/teams/sre/members"
    first = call(api, "GET", path, params={"per_page": 2})
    second = call(api, "GET", path, params={"per_page": 2, "page": 2})
    assert first.headers["etag"] != second.headers["etag"]
    answer = call(
        api, "GET", path, params={"per_page": 2}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert answer.status_code == 304
    github.set_team_members("acme", "sre", ["user0", "user1"])
    answer = call(
        api, "GET", path, params={"per_page": 2}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert answer.status_code == 200  # the Link header changed: there is no page 2 now


def test_a_refusal_and_a_fault_count_against_the_rate_limit(github, api):
    assert call(api, "GET", "/repos/acme/nothing").status_code == 404
    github.add_repo("acme/api")
    github.faults.add("GET", "/repos/acme/api", status=502, times=1)
    assert call(api, "GET", "/repos/acme/api").status_code == 502
    assert github.rate_limited_calls == 2


def test_a_delay_longer_than_the_client_timeout_is_a_timeout(github, api):
    github.add_repo("acme/api")
    github.faults.timeout("GET", "/repos/acme/api", delay=0.5)
    with pytest.raises(requests.Timeout):
        api.get(f"{github.api_url}/repos/acme/api", timeout=0.2)
    assert call(api, "GET", "/repos/acme/api").status_code == 200


def test_a_request_held_past_a_reset_ends_with_the_github_it_was_sent_to(github, api):
    # A client that timed out goes on to the next test while the fault holds its request:
    # once the next test's reset has happened, that request must not count against the new
    # rate limit nor write to the new GitHub (it once did, half a test later).
    github.add_environment("acme/api", "production")
    github.faults.timeout("PUT", "/repos/acme/api/environments/production", delay=1.0)
    with pytest.raises(requests.Timeout):
        api.put(
            f"{github.api_url}/repos/acme/api/environments/production",
            json={"wait_timer": 30},
            timeout=0.2,
        )

    github.reset()
    github.add_environment("acme/api", "production")
    time.sleep(1.5)  # past the held request's delay: before the fix, it had woken and written

    assert github.rate_limited_calls == 0
    assert github.requests == []
    answer = call(api, "GET", "/repos/acme/api/environments/production")
    assert answer.status_code == 200
    assert answer.json()["protection_rules"] == []  # no wait timer written


def test_faults_can_be_added_over_http_for_other_processes(github, api):
    github.add_repo("acme/api")
    added = requests.post(
        f"{github.base_url}/_fake/faults",
        json={"kind": "add", "method": "GET", "path_glob": "/repos/**", "status": 500},
        timeout=5,
    )
    assert added.status_code == 201
    assert call(api, "GET", "/repos/acme/api").status_code == 500
    assert call(api, "GET", "/repos/acme/api").status_code == 200


def test_write_limit_answers_secondary_rate_limits(github, api):
    github.add_environment("acme/api", "production")
    github.faults.limit_writes(per_minute=2)
    statuses = [
        call(api, "PUT", "/repos/acme/api/environments/production", json={}).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 403]
    refused = call(api, "PUT", "/repos/acme/api/environments/production", json={})
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert call(api, "GET", "/repos/acme/api/environments/production").status_code == 200


def test_every_request_is_logged_with_its_time_and_body(github, api):
    github.add_repo("acme/api")
    before = time.time()
    call(api, "PUT", "/repos/acme/api/environments/staging", json={"wait_timer": 1})
    [logged] = github.requests
    assert (logged.method, logged.path, logged.json) == (
        "PUT",
        "/repos/acme/api/environments/staging",
        {"wait_timer": 1},
    )
    assert logged.headers["authorization"] == f"Bearer {github.app_token}"
    assert before <= logged.at <= time.time()
    assert logged.raw_path == "/api/v3/repos/acme/api/environments/staging"


# -- OIDC issuer -----------------------------------------------------------------------------


def test_minted_oidc_token_verifies_with_the_published_jwks(github):
    configuration = requests.get(
        f"{github.oidc_issuer}/.well-known/openid-configuration", timeout=5
    ).json()
    assert configuration["jwks_uri"] == f"{github.oidc_issuer}/.well-known/jwks"
    token = github.mint_oidc_token(
        {"repository": "acme/api", "environment": "production"}, aud="airlock"
    )
    keys = jwt.PyJWKClient(configuration["jwks_uri"])
    claims = jwt.decode(
        token,
        keys.get_signing_key_from_jwt(token).key,
        algorithms=["RS256"],
        audience="airlock",
        issuer=github.oidc_issuer,
    )
    assert claims["sub"] == "repo:acme/api:environment:production"
    assert claims["repository_owner"] == "acme"


def test_rotated_oidc_keys_stay_published_until_dropped(github):
    old = jwt.get_unverified_header(github.mint_oidc_token())["kid"]
    new = github.rotate_oidc_key()
    assert jwt.get_unverified_header(github.mint_oidc_token())["kid"] == new
    kids = [
        k["kid"]
        for k in requests.get(f"{github.oidc_issuer}/.well-known/jwks", timeout=5).json()["keys"]
    ]
    assert kids == [old, new]
    github.rotate_oidc_key(keep_old=False)
    kids = [
        k["kid"]
        for k in requests.get(f"{github.oidc_issuer}/.well-known/jwks", timeout=5).json()["keys"]
    ]
    assert old not in kids and new not in kids


def test_a_token_signed_with_an_unknown_kid_does_not_verify(github):
    token = github.mint_oidc_token(kid="NOT-PUBLISHED")
    with pytest.raises(jwt.PyJWKClientError):
        jwt.PyJWKClient(f"{github.oidc_issuer}/.well-known/jwks").get_signing_key_from_jwt(token)


# -- state file ------------------------------------------------------------------------------


def test_state_file_survives_a_restart(tmp_path):
    state_file = tmp_path / "github.json"
    with GitHubServer(state_file=str(state_file)) as first:
        first.add_environment("acme/api", "production", reviewers=["alice", "acme/sre"])
        first.add_workflow_run("acme/api", run_id=77, actor="erin")
        first.rerun_workflow("acme/api", 77, triggering_actor="dave")
        session = requests.Session()
        session.headers["Authorization"] = f"token {first.app_token}"
        bob = first.add_user("bob")
        body = {"reviewers": [{"type": "User", "id": bob.id}], "wait_timer": 3}
        session.put(f"{first.api_url}/repos/acme/api/environments/production", json=body, timeout=5)
    saved = json.loads(state_file.read_text())
    assert saved["environments"][0]["reviewers"] == [["User", "bob"]]
    with GitHubServer(state_file=str(state_file)) as second:
        assert second.reviewers("acme/api", "production") == ["bob"]
        assert second.environment("acme/api", "production")["wait_timer"] == 3
        run = second.workflow_run("acme/api", 77)
        assert (run.actor, run.triggering_actors) == ("erin", ["erin", "dave"])
