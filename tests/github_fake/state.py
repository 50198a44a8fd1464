"""The local GitHub's world: accounts, repositories, environments, secrets, workflow runs,
tokens, logs.

GitHubState is plain Python behind one reentrant lock. It has three faces:
- seeding helpers for tests (add_user, add_environment, ...), which create whatever they
  mention so a test states only what it is about;
- the operations the HTTP routes call (put_environment, put_environment_secret, ...), which
  enforce GitHub's documented rules and raise GitHubError(status, message) like GitHub;
- readers for assertions (environment, reviewers, environment_secret_value, requests, ...).

dump() and load() use the same vocabulary as the seeding helpers, so a dump is a seed file.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt

from .keys import SealedBoxKey, public_key_pem, random_token, stateless_installation_token

APP_TOKEN = "ghp_airlocktestapptoken000000000000000"
DEFAULT_CLIENT_ID = "airlock-test-client"
DEFAULT_CLIENT_SECRET = "airlock-test-secret"
MAX_REVIEWERS = 6  # GitHub: "You can list up to six users or teams as reviewers."
MAX_WAIT_TIMER = 43_200  # minutes (30 days), per GitHub's docs
OAUTH_CODE_TTL = 600  # seconds; GitHub's codes expire after 10 minutes


class GitHubError(Exception):
    """A refusal, answered as GitHub's JSON error body with this status."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def not_found() -> GitHubError:
    return GitHubError(404, "Not Found")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _locked(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    return wrapper


@dataclass
class User:
    login: str
    id: int
    name: str | None = None
    email: str | None = None
    site_admin: bool = False
    created_at: datetime = field(default_factory=now)


@dataclass
class Membership:
    role: str = "member"  # admin | member | billing_manager
    state: str = "active"  # active | pending (invited, not yet accepted)


@dataclass
class Secret:
    name: str
    value: str
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)


@dataclass
class OrgSecret(Secret):
    visibility: str = "selected"  # all | private | selected
    repository_ids: list[int] = field(default_factory=list)


@dataclass
class Org:
    login: str
    id: int
    name: str | None = None
    members: dict[str, Membership] = field(default_factory=dict)  # by lowercased login
    secrets: dict[str, OrgSecret] = field(default_factory=dict)  # by upper-case name
    key: SealedBoxKey = field(default_factory=SealedBoxKey)
    created_at: datetime = field(default_factory=now)


@dataclass
class Team:
    org: str
    slug: str
    id: int
    name: str
    members: dict[str, str] = field(default_factory=dict)  # lowercased login -> member|maintainer
    created_at: datetime = field(default_factory=now)


@dataclass
class Environment:
    name: str
    id: int
    rule_ids: dict[str, int]  # protection rule type -> its stable id
    wait_timer: int = 0
    prevent_self_review: bool = False
    reviewers: list[tuple[str, int]] = field(default_factory=list)  # ("User"|"Team", id)
    deployment_branch_policy: dict | None = None
    can_admins_bypass: bool = True
    secrets: dict[str, Secret] = field(default_factory=dict)  # by upper-case name
    key: SealedBoxKey = field(default_factory=SealedBoxKey)
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)


@dataclass
class WorkflowRun:
    """A workflow run and its attempts. Attempt n (from 1) was triggered by
    triggering_actors[n - 1]: the first by the run's actor, a re-run by whoever re-ran it,
    while `actor` stays the run's author, as on GitHub."""

    id: int
    actor: str  # login
    triggering_actors: list[str]  # logins, one per attempt
    run_number: int
    workflow_id: int
    event: str = "workflow_dispatch"
    head_branch: str = "main"
    head_sha: str = "0" * 40
    path: str = ".github/workflows/deploy.yml"
    name: str = "deploy"
    created_at: datetime = field(default_factory=now)
    attempts_started_at: list[datetime] = field(default_factory=list)  # one per attempt


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    private: bool = True
    no_read_access: set[str] = field(default_factory=set)  # lowercased logins
    environments: dict[str, Environment] = field(default_factory=dict)  # by lowercased name
    runs: dict[int, WorkflowRun] = field(default_factory=dict)  # by run id
    created_at: datetime = field(default_factory=now)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Token:
    value: str
    kind: str  # personal | oauth | installation
    scopes: tuple[str, ...] | None = None  # None: every scope
    login: str | None = None  # the user a personal or OAuth token belongs to
    expires_at: datetime | None = None
    installation_id: int | None = None  # the App installation an installation token acts for
    # An installation token's scope, as minted: the repositories it may reach (ids; None: all
    # the installation's) and the permissions it carries ({name: level}).
    repository_ids: tuple[int, ...] | None = None
    permissions: dict | None = None
    created_at: datetime | None = None
    revoked_at: datetime | None = None  # DELETE /installation/token

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


LEVELS = {"read": 1, "write": 2, "admin": 3}
NOT_GRANTED = "The permissions requested are not granted to this installation."
NOT_ACCESSIBLE = (
    "There is at least one repository that does not exist or is not accessible to the parent "
    "installation."
)


@dataclass
class App:
    id: int
    public_key_pem: str
    installations: dict[int, dict] = field(default_factory=dict)  # id -> account, permissions


@dataclass
class OAuthCode:
    login: str
    client_id: str
    redirect_uri: str | None
    scopes: tuple[str, ...]
    code_challenge: str | None
    code_challenge_method: str | None
    issued: float = field(default_factory=time.monotonic)


@dataclass
class RecordedRequest:
    """One request as the server saw it, before any fault was applied."""

    method: str
    path: str  # canonical: without /api/v3, aliases such as /repositories/{id} resolved
    query: dict[str, str]
    headers: dict[str, str]
    json: object
    at: float  # time.time() when it arrived
    raw_path: str = ""
    status: int | None = None  # what was answered, fault included

    @property
    def is_write(self) -> bool:
        return self.method in {"PUT", "POST", "PATCH", "DELETE"} and self.path.startswith(
            ("/repos/", "/orgs/", "/user")
        )


@dataclass
class SchemaViolation:
    method: str
    path: str
    operation_id: str
    errors: list[str]
    body: object


@dataclass
class ProtectionRuleReview:
    """A POST .../actions/runs/{run_id}/deployment_protection_rule callback."""

    repo: str
    run_id: int
    environment_name: str
    state: str | None
    comment: str | None
    at: float
    installation_id: int | None = None  # whose installation token posted it


def _reviewer_spec(spec) -> tuple[str, str]:
    """("User", "alice") | ("Team", "acme/sre") | "alice" | "acme/sre" -> (type, name)."""
    if isinstance(spec, str):
        return ("Team", spec) if "/" in spec else ("User", spec)
    kind, name = spec
    if kind not in {"User", "Team"}:
        raise ValueError(f"reviewer type must be User or Team, not {kind!r}")
    return kind, name


class GitHubState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(1000)
        self._taken_ids: set[int] = set()
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------

    @_locked
    def reset(self) -> None:
        """Forget everything but the preset app token and OAuth client."""
        self.users: dict[str, User] = {}
        self.orgs: dict[str, Org] = {}
        self.teams: dict[tuple[str, str], Team] = {}
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, Token] = {}
        self.apps: dict[int, App] = {}
        self.oauth_codes: dict[str, OAuthCode] = {}
        self.oauth_user: str | None = None
        self.client_id = DEFAULT_CLIENT_ID
        self.client_secret = DEFAULT_CLIENT_SECRET
        self._requests: list[RecordedRequest] = []
        self._schema_violations: list[SchemaViolation] = []
        self.schema_violations_expected = False
        self._callbacks: list[ProtectionRuleReview] = []
        self.rate_limit_used = 0
        self.rate_limit_reset = int(time.time()) + 3600
        self.add_token(APP_TOKEN, scopes=("repo", "admin:org", "read:org", "workflow"))

    def _next_id(self, wanted: int | None = None) -> int:
        """An id no other object has (ids are unique across kinds, which GitHub's need not be)."""
        if wanted is None:
            wanted = next(i for i in self._ids if i not in self._taken_ids)
        self._taken_ids.add(wanted)
        return wanted

    # -- seeding ---------------------------------------------------------------------------

    @property
    def app_token(self) -> str:
        """A token every REST endpoint accepts, like a PAT with repo and admin:org."""
        return APP_TOKEN

    @_locked
    def add_user(
        self,
        login: str,
        id: int | None = None,
        name: str | None = None,
        email: str | None = None,
        orgs=(),
        site_admin: bool = False,
    ) -> User:
        user = self.users.get(login.lower())
        if user is None:
            user = User(login=login, id=self._next_id(id), site_admin=site_admin)
            self.users[login.lower()] = user
        if name is not None:
            user.name = name
        if email is not None:
            user.email = email
        for org in orgs:
            self.add_org_member(org, login)
        return user

    def _user_or_create(self, login: str) -> User:
        return self.users.get(login.lower()) or self.add_user(login)

    @_locked
    def add_org(
        self, login: str, id: int | None = None, name: str | None = None, members=()
    ) -> Org:
        org = self.orgs.get(login.lower())
        if org is None:
            org = Org(login=login, id=self._next_id(id), name=name)
            self.orgs[login.lower()] = org
        for member in members:
            self.add_org_member(login, member)
        return org

    def _org_or_create(self, login: str) -> Org:
        return self.orgs.get(login.lower()) or self.add_org(login)

    @_locked
    def add_org_member(
        self, org: str, login: str, role: str = "member", state: str = "active"
    ) -> None:
        """Make a user a member of an org; state="pending" is an invitation not yet accepted."""
        self._user_or_create(login)
        self._org_or_create(org).members[login.lower()] = Membership(role=role, state=state)

    @_locked
    def remove_org_member(self, org: str, login: str) -> None:
        self.org(org).members.pop(login.lower(), None)

    @_locked
    def add_team(
        self,
        org: str,
        slug: str,
        members=(),
        id: int | None = None,
        name: str | None = None,
        maintainers=(),
    ) -> Team:
        self._org_or_create(org)
        team = self.teams.get((org.lower(), slug.lower()))
        if team is None:
            team = Team(org=org, slug=slug, id=self._next_id(id), name=name or slug)
            self.teams[(org.lower(), slug.lower())] = team
        for login, role in [(m, "member") for m in members] + [
            (m, "maintainer") for m in maintainers
        ]:
            if login.lower() not in self.orgs[org.lower()].members:
                self.add_org_member(org, login)
            team.members[login.lower()] = role
        return team

    @_locked
    def set_team_members(self, org: str, slug: str, members) -> None:
        """Replace a team's members, as a change on GitHub would between two syncs."""
        self.team(org, slug).members.clear()
        self.add_team(org, slug, members)

    @_locked
    def add_repo(
        self, full_name: str, id: int | None = None, private: bool = True, no_read_access=()
    ) -> Repo:
        owner, name = full_name.split("/")
        repo = self.repos.get(full_name.lower())
        if repo is None:
            if owner.lower() not in self.users:
                self._org_or_create(owner)
            repo = Repo(owner=owner, name=name, id=self._next_id(id), private=private)
            self.repos[full_name.lower()] = repo
        repo.no_read_access.update(login.lower() for login in no_read_access)
        return repo

    def _repo_or_create(self, full_name: str) -> Repo:
        return self.repos.get(full_name.lower()) or self.add_repo(full_name)

    @_locked
    def deny_read_access(self, repo: str, login: str) -> None:
        """GitHub refuses a reviewer without read access to the repository."""
        self._repo_or_create(repo).no_read_access.add(login.lower())

    @_locked
    def add_environment(
        self,
        repo: str,
        name: str,
        reviewers=(),
        wait_timer: int = 0,
        prevent_self_review: bool = False,
        deployment_branch_policy: dict | None = None,
        can_admins_bypass: bool = True,
        id: int | None = None,
    ) -> Environment:
        """Reviewers: ("User", "alice"), ("Team", "acme/sre"), or just "alice" / "acme/sre"."""
        target = self._repo_or_create(repo)
        env = self._environment_or_create(target, name, id)
        env.reviewers = [self._reviewer_ref(target, *_reviewer_spec(s)) for s in reviewers]
        env.wait_timer = wait_timer
        env.prevent_self_review = prevent_self_review
        env.deployment_branch_policy = deployment_branch_policy
        env.can_admins_bypass = can_admins_bypass
        return env

    def _environment_or_create(self, repo: Repo, name: str, id: int | None = None) -> Environment:
        env = repo.environments.get(name.lower())
        if env is None:
            rule_ids = {
                kind: self._next_id()
                for kind in ("wait_timer", "required_reviewers", "branch_policy")
            }
            env = Environment(name=name, id=self._next_id(id), rule_ids=rule_ids)
            repo.environments[name.lower()] = env
        return env

    def _reviewer_ref(self, repo: Repo, kind: str, name: str) -> tuple[str, int]:
        if kind == "User":
            return ("User", self._user_or_create(name).id)
        org, _, slug = name.rpartition("/")
        team = self.teams.get(((org or repo.owner).lower(), slug.lower()))
        return ("Team", (team or self.add_team(org or repo.owner, slug)).id)

    @_locked
    def add_workflow_run(
        self, repo: str, run_id: int | None = None, actor: str = "octocat", **fields
    ) -> WorkflowRun:
        """A workflow run started by actor (a user, created if new), at its first attempt;
        fields: event, head_branch, head_sha, path, name (WorkflowRun)."""
        target = self._repo_or_create(repo)
        self._user_or_create(actor)
        run_id = self._next_id(run_id)
        started = now()
        run = WorkflowRun(
            id=run_id,
            actor=actor,
            triggering_actors=[actor],
            run_number=len(target.runs) + 1,
            workflow_id=self._next_id(),
            created_at=started,
            attempts_started_at=[started],
            **fields,
        )
        target.runs[run_id] = run
        return run

    @_locked
    def rerun_workflow(self, repo: str, run_id: int, triggering_actor: str) -> int:
        """Re-run a workflow run as triggering_actor (a user, created if new): the number of
        the new attempt. The run's actor stays its author."""
        run = self.workflow_run(repo, run_id)
        self._user_or_create(triggering_actor)
        run.triggering_actors.append(triggering_actor)
        run.attempts_started_at.append(now())
        return len(run.triggering_actors)

    @_locked
    def add_environment_secret(self, repo: str, env: str, name: str, value: str) -> Secret:
        target = self._environment_or_create(self._repo_or_create(repo), env)
        secret = Secret(name=name.upper(), value=value)
        target.secrets[secret.name] = secret
        return secret

    @_locked
    def add_org_secret(
        self,
        org: str,
        name: str,
        visibility: str = "selected",
        repositories=(),
        value: str = "org-secret",
    ) -> OrgSecret:
        """repositories: full names ("acme/api", created if missing) or repository ids."""
        owner = self._org_or_create(org)
        ids = [r if isinstance(r, int) else self._repo_or_create(r).id for r in repositories]
        secret = OrgSecret(
            name=name.upper(), value=value, visibility=visibility, repository_ids=ids
        )
        owner.secrets[secret.name] = secret
        return secret

    @_locked
    def add_token(self, token: str, scopes=None, login: str | None = None) -> Token:
        """A token the REST API accepts; with login it also answers /user as that user."""
        if login is not None:
            self._user_or_create(login)
        record = Token(
            value=token,
            kind="personal",
            scopes=tuple(scopes) if scopes is not None else None,
            login=login,
        )
        self.tokens[token] = record
        return record

    @_locked
    def set_oauth_user(self, login: str | None) -> None:
        """Who is "signed in to GitHub" in the browser: authorize answers for them at once."""
        if login is not None:
            self._user_or_create(login)
        self.oauth_user = login

    @_locked
    def set_oauth_client(self, client_id: str, client_secret: str) -> None:
        self.client_id, self.client_secret = client_id, client_secret

    @_locked
    def register_app(
        self,
        app_id: int,
        key_pem: str,
        installation_id: int | None = None,
        account: str | None = None,
        permissions: dict | None = None,
    ) -> int:
        """Register a GitHub App by its key (private or public PEM) with one installation.

        Returns the installation id, for POST /app/installations/{id}/access_tokens.
        """
        app = self.apps.get(int(app_id))
        if app is None:
            app = self.apps[int(app_id)] = App(
                id=int(app_id), public_key_pem=public_key_pem(key_pem)
            )
        return self.add_installation(app_id, installation_id, account, permissions)

    @_locked
    def add_installation(
        self,
        app_id: int,
        installation_id: int | None = None,
        account: str | None = None,
        permissions: dict | None = None,
    ) -> int:
        installation_id = self._next_id(installation_id)
        self.apps[int(app_id)].installations[installation_id] = {
            "account": account,
            "permissions": permissions
            or {"environments": "write", "secrets": "write", "metadata": "read", "members": "read"},
        }
        return installation_id

    # -- lookups (raise 404 like GitHub) ---------------------------------------------------

    def user(self, login: str) -> User:
        try:
            return self.users[login.lower()]
        except KeyError:
            raise not_found() from None

    def user_by_id(self, user_id: int) -> User | None:
        return next((u for u in self.users.values() if u.id == user_id), None)

    def org(self, login: str) -> Org:
        try:
            return self.orgs[login.lower()]
        except KeyError:
            raise not_found() from None

    def team(self, org: str, slug: str) -> Team:
        try:
            return self.teams[(org.lower(), slug.lower())]
        except KeyError:
            raise not_found() from None

    def team_by_id(self, team_id: int) -> Team | None:
        return next((t for t in self.teams.values() if t.id == team_id), None)

    def repo(self, full_name: str) -> Repo:
        try:
            return self.repos[full_name.lower()]
        except KeyError:
            raise not_found() from None

    def repo_by_id(self, repo_id: int) -> Repo | None:
        return next((r for r in self.repos.values() if r.id == repo_id), None)

    def workflow_run(self, repo: str, run_id: int) -> WorkflowRun:
        found = self.repo(repo).runs.get(run_id)
        if found is None:
            raise not_found()
        return found

    def environment_of(self, repo: Repo, name: str) -> Environment:
        try:
            return repo.environments[name.lower()]
        except KeyError:
            raise not_found() from None

    def account(self, login: str) -> User | Org:
        """The user or organization that owns something."""
        return self.users.get(login.lower()) or self.org(login)

    # -- authentication --------------------------------------------------------------------

    def token(self, value: str) -> Token | None:
        """The token that authenticates a request: None when unknown, expired or revoked."""
        token = self.tokens.get(value)
        if token is None or token.revoked:
            return None
        if token.expires_at is not None and token.expires_at <= now():
            return None
        return token

    def installation_token(self, value: str) -> Token | None:
        """A minted installation token by its value, even expired or revoked: for tests'
        assertions on its scope (repository_ids, permissions) and revoked_at."""
        token = self.tokens.get(value)
        return token if token is not None and token.kind == "installation" else None

    @property
    def installation_tokens(self) -> list[Token]:
        """Every installation token minted since the last reset, oldest first."""
        return [t for t in self.tokens.values() if t.kind == "installation"]

    def token_repositories(self, token: Token) -> list[str]:
        """The full names of the repositories an installation token was restricted to."""
        if token.repository_ids is None:
            return []
        return [self.repo_by_id(i).full_name for i in token.repository_ids]

    @_locked
    def revoke_installation_token(self, token: Token) -> None:
        """DELETE /installation/token: the token stops working at once."""
        token.revoked_at = now()

    def _installation_repositories(self, installation: dict, names, ids) -> tuple[int, ...] | None:
        """The ids of the repositories a mint asks for (names in the installation's account,
        or ids), None when it asks for none; 422 like GitHub for one it cannot reach."""
        if names is None and ids is None:
            return None
        account = (installation.get("account") or "").lower()
        reachable = [r for r in self.repos.values() if not account or r.owner.lower() == account]
        chosen: list[int] = []
        for name in names or ():
            found = next((r for r in reachable if r.name.lower() == str(name).lower()), None)
            if found is None:
                raise GitHubError(422, NOT_ACCESSIBLE)
            chosen.append(found.id)
        for repo_id in ids or ():
            if not any(r.id == repo_id for r in reachable):
                raise GitHubError(422, NOT_ACCESSIBLE)
            chosen.append(repo_id)
        return tuple(dict.fromkeys(chosen))

    @staticmethod
    def _installation_permissions(installation: dict, wanted: dict | None) -> dict:
        """What a mint is granted: all the installation holds, or the narrower set asked
        for; 422 like GitHub for a permission it lacks or a level above what it holds."""
        held = installation["permissions"]
        if not wanted:
            return dict(held)
        for name, level in wanted.items():
            if LEVELS.get(level, 99) > LEVELS.get(held.get(name), 0):
                raise GitHubError(422, NOT_GRANTED)
        return dict(wanted)

    @_locked
    def issue_installation_token(
        self, installation_id: int, app_jwt: str, body: dict | None = None
    ) -> tuple[Token, dict]:
        """Check an App's JWT the way GitHub does and mint an installation token, restricted
        to the body's repositories / repository_ids and permissions when it names them."""
        try:
            claims = jwt.decode(app_jwt, options={"verify_signature": False})
            app = self.apps[int(claims["iss"])]
            jwt.decode(
                app_jwt,
                app.public_key_pem,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=60,
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            raise GitHubError(401, "A JSON web token could not be decoded") from None
        if claims["exp"] - claims["iat"] > 660:
            raise GitHubError(
                401,
                "'Expiration time' claim ('exp') is too far in the future",
            )
        installation = app.installations.get(installation_id)
        if installation is None:
            raise not_found()
        body = body or {}
        repository_ids = self._installation_repositories(
            installation, body.get("repositories"), body.get("repository_ids")
        )
        permissions = self._installation_permissions(installation, body.get("permissions"))
        expires_at = now() + timedelta(hours=1)
        token = Token(
            value=stateless_installation_token(
                app_id=app.id, installation_id=installation_id, expires_at=expires_at
            ),
            kind="installation",
            expires_at=expires_at,
            installation_id=installation_id,
            repository_ids=repository_ids,
            permissions=permissions,
            created_at=now(),
        )
        self.tokens[token.value] = token
        return token, installation

    # -- OAuth web flow --------------------------------------------------------------------

    @_locked
    def issue_oauth_code(
        self,
        login: str,
        client_id: str,
        redirect_uri: str | None,
        scope: str,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> str:
        code = random_token("")[:20]
        self.oauth_codes[code] = OAuthCode(
            login=self.user(login).login,
            client_id=client_id,
            redirect_uri=redirect_uri,
            scopes=tuple(s for s in scope.replace(",", " ").split() if s),
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
        )
        return code

    @_locked
    def exchange_oauth_code(
        self,
        client_id: str,
        client_secret: str,
        code: str,
        redirect_uri: str | None,
        code_verifier: str | None,
    ) -> dict:
        """The body of POST /login/oauth/access_token: a token, or GitHub's error triple."""
        doc = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"
        if (client_id, client_secret) != (self.client_id, self.client_secret):
            return {
                "error": "incorrect_client_credentials",
                "error_description": "The client_id and/or client_secret passed are incorrect.",
                "error_uri": f"{doc}/#incorrect-client-credentials",
            }
        grant = self.oauth_codes.pop(code, None)  # single use, like GitHub's
        bad_code = {
            "error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired.",
            "error_uri": f"{doc}/#bad-verification-code",
        }
        if grant is None or grant.client_id != client_id:
            return bad_code
        if time.monotonic() - grant.issued > OAUTH_CODE_TTL:
            return bad_code
        if redirect_uri and grant.redirect_uri and redirect_uri != grant.redirect_uri:
            return {
                "error": "redirect_uri_mismatch",
                "error_description": "The redirect_uri MUST match the registered callback URL "
                "for this application.",
                "error_uri": f"{doc}/#redirect-uri-mismatch2",
            }
        if grant.code_challenge and not _pkce_matches(grant, code_verifier):
            return bad_code
        token = Token(
            value=random_token("gho_"), kind="oauth", scopes=grant.scopes, login=grant.login
        )
        self.tokens[token.value] = token
        return {
            "access_token": token.value,
            "token_type": "bearer",
            "scope": ",".join(grant.scopes),
        }

    # -- environments ----------------------------------------------------------------------

    @_locked
    def put_environment(self, repo: Repo, name: str, body: dict | None) -> Environment:
        """PUT .../environments/{name}: every setting is replaced; one not sent is reset.

        GitHub documents the body, not what an omitted field keeps. The fake takes the strict
        reading (omitted = default), so code that relies on an omitted field being kept fails
        here rather than in production. PyGithub always sends all four fields.
        """
        body = body or {}
        wait_timer = body.get("wait_timer") or 0
        if not 0 <= wait_timer <= MAX_WAIT_TIMER:
            raise GitHubError(422, f"Wait timer must be between 0 and {MAX_WAIT_TIMER} minutes.")
        reviewers = [(r.get("type"), r.get("id")) for r in body.get("reviewers") or []]
        if len(reviewers) > MAX_REVIEWERS:
            raise GitHubError(
                422,
                f"Only {MAX_REVIEWERS} reviewers (users or teams) can be required; "
                f"got {len(reviewers)}.",
            )
        if len(set(reviewers)) != len(reviewers):
            raise GitHubError(422, "Reviewers must be unique.")
        for kind, reviewer_id in reviewers:
            self._check_reviewer(repo, kind, reviewer_id)
        policy = body.get("deployment_branch_policy")
        if policy is not None and policy["protected_branches"] == policy["custom_branch_policies"]:
            raise GitHubError(
                422,
                "Only one of protected_branches and custom_branch_policies can be true.",
            )
        env = self._environment_or_create(repo, name)
        env.wait_timer = wait_timer
        env.prevent_self_review = bool(body.get("prevent_self_review"))
        env.reviewers = reviewers
        env.deployment_branch_policy = dict(policy) if policy is not None else None
        env.updated_at = now()
        return env

    def _check_reviewer(self, repo: Repo, kind: str, reviewer_id: int) -> None:
        if kind not in {"User", "Team"} or not isinstance(reviewer_id, int):
            raise GitHubError(422, "Each reviewer needs a type (User or Team) and an id.")
        if kind == "User":
            user = self.user_by_id(reviewer_id)
            if user is None:
                raise GitHubError(422, f"Reviewer with id {reviewer_id} (User) could not be found.")
            if user.login.lower() in repo.no_read_access:
                raise GitHubError(
                    422, f"{user.login} doesn't have access to the repository {repo.full_name}."
                )
        else:
            team = self.team_by_id(reviewer_id)
            if team is None or team.org.lower() != repo.owner.lower():
                raise GitHubError(422, f"Reviewer with id {reviewer_id} (Team) could not be found.")

    @_locked
    def delete_environment(self, repo: Repo, name: str) -> None:
        self.environment_of(repo, name)
        del repo.environments[name.lower()]

    @_locked
    def put_secret(
        self, secrets: dict, key: SealedBoxKey, name: str, body: dict, factory=Secret
    ) -> bool:
        """Store a secret sealed to `key`; True when it was created, False when updated."""
        name = _secret_name(name)
        if body.get("key_id") != key.key_id:
            raise GitHubError(
                422, "Bad request - key_id is not valid for this secret's public key."
            )
        value = key.decrypt(body.get("encrypted_value", ""))
        if value is None:
            raise GitHubError(
                422, "Bad request - encrypted_value could not be decrypted with key_id."
            )
        existing = secrets.get(name)
        if existing is None:
            secrets[name] = factory(name=name, value=value)
            return True
        existing.value = value
        existing.updated_at = now()
        return False

    @_locked
    def delete_secret(self, secrets: dict, name: str) -> None:
        if secrets.pop(name.upper(), None) is None:
            raise not_found()

    # -- organization secrets --------------------------------------------------------------

    def org_secret(self, org: Org, name: str) -> OrgSecret:
        try:
            return org.secrets[name.upper()]
        except KeyError:
            raise not_found() from None

    @_locked
    def put_org_secret(self, org: Org, name: str, body: dict) -> bool:
        ids = self._org_repository_ids(org, body.get("selected_repository_ids"))
        if body["visibility"] != "selected" and ids:
            raise GitHubError(
                422, "selected_repository_ids can only be set when visibility is selected."
            )
        # The value is optional on update: a PUT may change only who can see the secret.
        if "encrypted_value" in body or name.upper() not in org.secrets:
            created = self.put_secret(org.secrets, org.key, name, body, factory=OrgSecret)
        else:
            created = False
        secret = org.secrets[name.upper()]
        secret.updated_at = now()
        secret.visibility = body["visibility"]
        if body["visibility"] != "selected":
            secret.repository_ids = []
        elif body.get("selected_repository_ids") is not None:
            secret.repository_ids = ids
        return created

    def _org_repository_ids(self, org: Org, ids) -> list[int]:
        result = []
        for repo_id in ids or []:
            repo = self.repo_by_id(int(repo_id))
            if repo is None or repo.owner.lower() != org.login.lower():
                raise GitHubError(
                    422, f"Repository with id {repo_id} could not be found in {org.login}."
                )
            if repo.id not in result:
                result.append(repo.id)
        return result

    def _selected(self, org: Org, name: str) -> OrgSecret:
        secret = self.org_secret(org, name)
        if secret.visibility != "selected":
            # GitHub documents a bare 409 Conflict; the fake adds a message for humans.
            raise GitHubError(409, "Conflict: the secret's visibility is not selected.")
        return secret

    @_locked
    def set_org_secret_repositories(self, org: Org, name: str, ids: list[int]) -> None:
        secret = self._selected(org, name)
        secret.repository_ids = self._org_repository_ids(org, ids)
        secret.updated_at = now()

    @_locked
    def add_org_secret_repository(self, org: Org, name: str, repo_id: int) -> None:
        secret = self._selected(org, name)
        for known in self._org_repository_ids(org, [repo_id]):
            if known not in secret.repository_ids:
                secret.repository_ids.append(known)

    @_locked
    def remove_org_secret_repository(self, org: Org, name: str, repo_id: int) -> None:
        secret = self._selected(org, name)
        if repo_id in secret.repository_ids:
            secret.repository_ids.remove(repo_id)

    # -- logs ------------------------------------------------------------------------------

    @_locked
    def record_request(self, request: RecordedRequest) -> RecordedRequest:
        self._requests.append(request)
        return request

    @_locked
    def count_rate_limited_call(self, calls: int = 1) -> None:
        """Count answers against the hourly limit: every answer but an authorised 304 (a
        request is counted as it arrives, and given back when it ends in such a 304). Once
        x-ratelimit-reset has passed, a new window starts, as on GitHub."""
        now = time.time()
        if now >= self.rate_limit_reset:
            self.rate_limit_used, self.rate_limit_reset = 0, int(now) + 3600
            if calls < 0:
                return  # given back for a request counted in the window that ended
        self.rate_limit_used += calls

    @_locked
    def spend_rate_limit(self, *, remaining: int, reset_in: int = 3600) -> None:
        """Leave `remaining` of the 5,000 in this window, which resets in `reset_in`
        seconds (x-ratelimit-reset): the next answers report it, and after the reset the
        count starts again from nothing."""
        self.rate_limit_used = max(0, 5000 - remaining)
        self.rate_limit_reset = int(time.time()) + reset_in

    @property
    def rate_limited_calls(self) -> int:
        """Answers counted against the rate limit since the reset (x-ratelimit-used)."""
        return self.rate_limit_used

    @_locked
    def record_schema_violation(self, violation: SchemaViolation) -> None:
        self._schema_violations.append(violation)

    @_locked
    def record_protection_rule_review(self, review: ProtectionRuleReview) -> None:
        self._callbacks.append(review)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far (a copy), oldest first; /_fake control calls excluded."""
        with self.lock:
            return list(self._requests)

    @property
    def writes(self) -> list[RecordedRequest]:
        """The PUT/POST/PATCH/DELETE calls on /repos, /orgs and /user resources."""
        return [r for r in self.requests if r.is_write]

    @property
    def schema_violations(self) -> list[SchemaViolation]:
        with self.lock:
            return list(self._schema_violations)

    @property
    def callbacks(self) -> list[ProtectionRuleReview]:
        with self.lock:
            return list(self._callbacks)

    def expect_schema_violations(self) -> None:
        """Declare that this test sends bodies GitHub would refuse, on purpose."""
        self.schema_violations_expected = True

    # -- readers for assertions ------------------------------------------------------------

    @_locked
    def environment(self, repo: str, env: str) -> dict | None:
        """The environment's settings in the seeding vocabulary, or None if it is absent."""
        target = self.repos.get(repo.lower())
        found = target and target.environments.get(env.lower())
        if not found:
            return None
        return {
            "name": found.name,
            "id": found.id,
            "wait_timer": found.wait_timer,
            "prevent_self_review": found.prevent_self_review,
            "reviewers": [self._reviewer_name(kind, rid) for kind, rid in found.reviewers],
            "deployment_branch_policy": found.deployment_branch_policy,
            "can_admins_bypass": found.can_admins_bypass,
            "secrets": {name: s.value for name, s in found.secrets.items()},
        }

    def _reviewer_name(self, kind: str, reviewer_id: int) -> tuple[str, str]:
        if kind == "User":
            return ("User", self.user_by_id(reviewer_id).login)
        team = self.team_by_id(reviewer_id)
        return ("Team", f"{team.org}/{team.slug}")

    def reviewers(self, repo: str, env: str) -> list[str]:
        """Required reviewers in order: a login for a user, "org/slug" for a team."""
        found = self.environment(repo, env)
        return [name for _, name in found["reviewers"]] if found else []

    def environment_secret_value(self, repo: str, env: str, name: str) -> str | None:
        found = self.environment(repo, env)
        return found["secrets"].get(name.upper()) if found else None

    @_locked
    def org_secret_repositories(self, org: str, name: str) -> list[str]:
        """Full names of the repositories selected for an org secret, sorted."""
        secret = self.org_secret(self.org(org), name)
        return sorted(self.repo_by_id(i).full_name for i in secret.repository_ids)

    @_locked
    def org_secret_value(self, org: str, name: str) -> str:
        return self.org_secret(self.org(org), name).value

    # -- dump / load -----------------------------------------------------------------------

    @_locked
    def dump(self) -> dict:
        """Everything a seed needs, in the seeding helpers' vocabulary (JSON-ready)."""
        return {
            "users": [
                {
                    "login": u.login,
                    "id": u.id,
                    "name": u.name,
                    "email": u.email,
                    "site_admin": u.site_admin,
                }
                for u in self.users.values()
            ],
            "orgs": [
                {
                    "login": o.login,
                    "id": o.id,
                    "name": o.name,
                    "members": [
                        {"login": self.users[m].login, "role": ms.role, "state": ms.state}
                        for m, ms in o.members.items()
                    ],
                }
                for o in self.orgs.values()
            ],
            "teams": [
                {
                    "org": t.org,
                    "slug": t.slug,
                    "id": t.id,
                    "name": t.name,
                    "members": [self.users[m].login for m, r in t.members.items() if r == "member"],
                    "maintainers": [
                        self.users[m].login for m, r in t.members.items() if r != "member"
                    ],
                }
                for t in self.teams.values()
            ],
            "repos": [
                {
                    "full_name": r.full_name,
                    "id": r.id,
                    "private": r.private,
                    "no_read_access": sorted(r.no_read_access),
                }
                for r in self.repos.values()
            ],
            "environments": [
                {"repo": r.full_name, **self.environment(r.full_name, e.name)}
                for r in self.repos.values()
                for e in r.environments.values()
            ],
            "workflow_runs": [
                {
                    "repo": r.full_name,
                    "id": run.id,
                    "actor": run.actor,
                    "reruns": run.triggering_actors[1:],
                }
                for r in self.repos.values()
                for run in r.runs.values()
            ],
            "org_secrets": [
                {
                    "org": o.login,
                    "name": s.name,
                    "visibility": s.visibility,
                    "value": s.value,
                    "repositories": [i for i in s.repository_ids],
                }
                for o in self.orgs.values()
                for s in o.secrets.values()
            ],
            "tokens": [
                {
                    "token": t.value,
                    "scopes": list(t.scopes) if t.scopes is not None else None,
                    "login": t.login,
                }
                for t in self.tokens.values()
                if t.kind == "personal"
            ],
            "apps": [
                {
                    "app_id": a.id,
                    "public_key_pem": a.public_key_pem,
                    "installations": [{"id": i, **inst} for i, inst in a.installations.items()],
                }
                for a in self.apps.values()
            ],
            "oauth": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "user": self.oauth_user,
            },
        }

    @_locked
    def load(self, seed: dict) -> None:
        """Add what a seed (or a dump) describes; call reset() first for a clean slate."""
        for u in seed.get("users", []):
            self.add_user(
                u["login"],
                u.get("id"),
                u.get("name"),
                u.get("email"),
                site_admin=u.get("site_admin", False),
            )
        for o in seed.get("orgs", []):
            self.add_org(o["login"], o.get("id"), o.get("name"))
            for m in o.get("members", []):
                m = {"login": m} if isinstance(m, str) else m
                self.add_org_member(
                    o["login"], m["login"], m.get("role", "member"), m.get("state", "active")
                )
        for t in seed.get("teams", []):
            self.add_team(
                t["org"],
                t["slug"],
                t.get("members", ()),
                t.get("id"),
                t.get("name"),
                t.get("maintainers", ()),
            )
        for r in seed.get("repos", []):
            self.add_repo(
                r["full_name"], r.get("id"), r.get("private", True), r.get("no_read_access", ())
            )
        for e in seed.get("environments", []):
            self.add_environment(
                e["repo"],
                e["name"],
                [tuple(r) if isinstance(r, list) else r for r in e.get("reviewers", ())],
                e.get("wait_timer", 0),
                e.get("prevent_self_review", False),
                e.get("deployment_branch_policy"),
                e.get("can_admins_bypass", True),
                e.get("id"),
            )
            for name, value in e.get("secrets", {}).items():
                self.add_environment_secret(e["repo"], e["name"], name, value)
        for w in seed.get("workflow_runs", []):
            run = self.add_workflow_run(w["repo"], w.get("id"), w.get("actor", "octocat"))
            for login in w.get("reruns", ()):
                self.rerun_workflow(w["repo"], run.id, login)
        for s in seed.get("org_secrets", []):
            self.add_org_secret(
                s["org"],
                s["name"],
                s.get("visibility", "selected"),
                s.get("repositories", ()),
                s.get("value", "org-secret"),
            )
        for t in seed.get("tokens", []):
            self.add_token(t["token"], t.get("scopes"), t.get("login"))
        for a in seed.get("apps", []):
            for inst in a.get("installations", [{}]):
                self.register_app(
                    a["app_id"],
                    a["public_key_pem"],
                    inst.get("id"),
                    inst.get("account"),
                    inst.get("permissions"),
                )
        oauth = seed.get("oauth", {})
        if "client_id" in oauth:
            self.set_oauth_client(oauth["client_id"], oauth["client_secret"])
        if oauth.get("user"):
            self.set_oauth_user(oauth["user"])


def _secret_name(name: str) -> str:
    """GitHub's secret naming rules; names are stored upper-case."""
    name = name.upper()
    valid = name.replace("_", "").isalnum() and name.isascii() and not name[0].isdigit()
    if not valid or name.startswith("GITHUB_"):
        raise GitHubError(
            422,
            "Secret names can only contain alphanumeric characters ([a-z], [A-Z], [0-9]) or "
            "underscores (_), must not start with a number, and must not start with GITHUB_.",
        )
    return name


def _pkce_matches(grant: OAuthCode, verifier: str | None) -> bool:
    if not verifier:
        return False
    if (grant.code_challenge_method or "plain").upper() == "S256":
        digest = hashlib.sha256(verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == grant.code_challenge
    return verifier == grant.code_challenge
