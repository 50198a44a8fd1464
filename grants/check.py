"""The grant check: does this person hold access to this target now?

Workflows ask it before a sensitive step (GET /api/v1/grants/check, and the Action in
action.yml). The answer comes from time alone: a request counts while its status is
active *and* its expires_at is in the future, so a grant whose end has passed says no at
once, even before the sweep has revoked it on GitHub. One query finds the request, with
its requester, secret, grant and approvals joined (in_force_grants).

Who may ask about what:
- A workflow (OIDC token): repository, environment and person come from the verified
  claims. Query parameters may only narrow them (repeat them, in any case); a
  different value is refused, and so is a token without an environment claim, because
  such a job does not run in a protected environment and so proves nothing about one.
- A person (API token or session): repository and environment must be given; user
  defaults to the caller. People may check their own grants; platform admins (staff
  with the permission to view grants) may check anyone's.
- Names are compared in their canonical form (core.names), the form requests are stored
  in, never with the database's case folding. A name outside GitHub's rules is refused:
  a 400 for a parameter, a 403 for a token whose claim names one.

Whose grant a workflow uses: the person who started this run attempt. On a re-run GitHub
keeps the original author in the `actor` claim, and whoever pressed "Re-run" is only the
run attempt's `triggering_actor`: one person's re-run must not use another's grant.
- A token that carries a `triggering_actor` claim is taken at its word (it is signed).
- A first attempt (`run_attempt` 1) was started by its `actor`: nothing more is asked.
- A re-run whose token names only the author, as every GitHub token does (GitHub's OIDC
  reference lists `actor` and `actor_id`, no `triggering_actor`), is looked up:
  GET /repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number} names the
  attempt's triggering actor, login and id (oidc_caller_of_attempt). Airlock's GitHub
  credentials need the Actions read permission for it. The answer never changes, so it is
  kept in Django's cache (shared through CACHE_URL) for ATTEMPT_STARTER_SECONDS: a job
  checking many times costs one GitHub call per attempt. When GitHub cannot answer (dry-run,
  404, a permanent error, an outage outlasting the short retries) the check is refused,
  saying why, and nothing is kept, so the next check asks again; it never falls back to
  `actor`.
The person is bound by GitHub numeric id where the portal knows it (the SocialAccount a
GitHub sign-in leaves): when the id for that person (`actor_id`; `triggering_actor_id` for a
different triggering actor in the token; the id GitHub named for a looked-up re-run) is not
the one the portal knows for that login, the answer is "not allowed", saying why. So a
renamed GitHub account's old login, registered again by someone else, does not inherit a
grant. Portal users who never signed in with GitHub (local accounts) are matched by login
alone.

Workflow and ref restrictions. A request may restrict its grant to workflows whose
`job_workflow_ref` claim matches a glob, and/or whose `ref` claim matches another
(AccessRequest.workflow_ref_pattern / ref_pattern; fnmatchcase, in full, so "*" also
crosses "/"). How each caller is answered:
- A workflow (OIDC token) is allowed only by a grant whose restrictions its verified claims
  match; a grant it does not match is passed over for the next one in force, and when none
  matches the answer is "not allowed", with the reason naming the restriction and the claim.
  Restrictions are the point of the feature: the job asking is the one that must qualify.
- A person (API token or session) is not a workflow: there is no claim to match. They are
  answered "allowed" for a restricted grant, and the answer reports the restriction (in the
  reason and in the grant's workflow_ref_pattern / ref_pattern), so someone checking their
  own grant sees both that it is in force and which workflows can use it.

Audit, aggregated to stay cheap (the audit log is one hash chain: every event takes its
lock, so one event per call would serialise every workflow on it):
- An answer "allowed" is recorded once per grant and workflow run attempt (OIDC), or once
  per grant and person per hour (API token or session), as "grant.checked".
- Answers "not allowed", and refusals to answer, are sampled: the first per caller and
  target in each minute is recorded as "grant.check_refused"; the rest of that minute's
  are not.
The "already recorded" marks live in Django's cache (cache.add is atomic in a shared
cache). With the default per-process cache each web process records its own first
answer, so a run may be recorded once per process: more, never fewer.
"""

from __future__ import annotations

import hashlib
import logging
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from functools import cache as memoize

from allauth.socialaccount.models import SocialAccount
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

import audit
from core.errors import NotAllowed
from core.names import NameRefused, ascii_lower, canonical_environment, canonical_repository
from grants.models import Grant
from grants.selectors import user_is_grants_admin
from integrations.github import GitHubClient, GitHubError, RetryPolicy, TransientGitHubError
from portal.authentication import OidcPrincipal
from requests_app.models import AccessRequest, Approval, SecretDefinition
from requests_app.signin import GITHUB

logger = logging.getLogger(__name__)

ALLOWED_MARK_MAX_SECONDS = 24 * 3600
PERSON_ALLOWED_MARK_SECONDS = 3600
REFUSED_SAMPLE_SECONDS = 60
# Who started a run attempt never changes; remembered this long, so that a job checking
# before every step costs GitHub one call per re-run attempt.
ATTEMPT_STARTER_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class CheckScope:
    """What a caller asks about, after the caller's limits are applied."""

    repository: str
    environment: str
    login: str
    access: str = ""
    secret: str = ""
    # The asking workflow's claims, which a restricted grant must match; None when the
    # caller is a person (not a workflow), who is told about restrictions instead.
    job_workflow_ref: str | None = None
    ref: str | None = None
    # The GitHub numeric id the workflow's token gives the person; None when it gives none
    # or the caller is a person.
    github_id: str | None = None

    @property
    def is_workflow(self) -> bool:
        return self.job_workflow_ref is not None


def _same(a: str, b: str) -> bool:
    # Logins: GitHub's are ASCII, compared without case.
    return a.casefold() == b.casefold()


def _claimed_target(caller: OidcPrincipal) -> tuple[str, str]:
    """The token's repository and environment claims in canonical form ("" for no
    environment); NotAllowed when a claim names something outside GitHub's rules."""
    try:
        repository = canonical_repository(caller.repository)
        environment = canonical_environment(caller.environment) if caller.environment else ""
    except NameRefused as refusal:
        raise NotAllowed(
            f"This job's OIDC token names a target outside GitHub's naming rules: "
            f"{' '.join(refusal.messages)}"
        ) from None
    return repository, environment


def oidc_caller_of_attempt(caller: OidcPrincipal) -> OidcPrincipal:
    """The caller, knowing who started its run attempt (whose grant it may use).

    A token's triggering_actor claim says it; so does the actor of a first attempt. For a
    re-run whose token names only the run's author (GitHub's tokens never carry
    triggering_actor) GitHub's REST API is asked, once per attempt: the answer is kept in
    the cache. NotAllowed when GitHub cannot say: a re-run never falls back to `actor`.
    """
    if caller.claims.get("triggering_actor") or caller.attempt_starter is not None:
        return caller
    if caller.run_attempt == "1":
        return caller  # the hot path: no cache, no GitHub
    run_id, attempt = caller.claims.get("run_id", ""), caller.run_attempt
    if not (run_id.isascii() and run_id.isdigit() and attempt.isascii() and attempt.isdigit()):
        raise _attempt_starter_unknown(
            "the OIDC token's run_id and run_attempt claims name no run attempt"
        )
    key = _mark("attempt-starter", ascii_lower(caller.repository), int(run_id), int(attempt))
    starter = cache.get(key)
    if starter is None:
        # Only an answer is kept: a failure (an outage, missing permission) is asked again.
        starter = _attempt_starter_from_github(caller.repository, int(run_id), int(attempt))
        cache.set(key, starter, ATTEMPT_STARTER_SECONDS)
    return replace(caller, attempt_starter=tuple(starter))


def _attempt_starter_from_github(repository: str, run_id: int, attempt: int) -> tuple[str, str]:
    if settings.AIRLOCK_DRY_RUN:
        raise _attempt_starter_unknown(
            "Airlock runs in dry-run mode, without GitHub credentials to ask GitHub"
        )
    client = GitHubClient(retry=RetryPolicy.interactive())
    try:
        login, account_id = client.run_attempt_triggering_actor(repository, run_id, attempt)
    except TransientGitHubError as error:
        raise _attempt_starter_unknown(f"{error}; try again shortly") from None
    except GitHubError as error:
        raise _attempt_starter_unknown(
            f"{error}; Airlock's GitHub credentials need the Actions read permission on the "
            f"repository"
        ) from None
    return login, str(account_id)


def _attempt_starter_unknown(why: str) -> NotAllowed:
    return NotAllowed(
        f"Airlock cannot tell who started this re-run: {why}. A re-run may use only the grant "
        f"of the person who started it, so it is refused."
    )


def restriction_refusal(access_request, *, job_workflow_ref: str | None, ref: str | None) -> str:
    """Why a workflow with these claims may not use this request's grant; "" if it may.

    access_request is anything with workflow_ref_pattern and ref_pattern: an
    AccessRequest, or the check's CheckedGrant.

    None for a claim means "not known" (the deployment webhook names no workflow, for
    instance): a grant restricted on that claim is then refused, never assumed to match.
    """
    pattern = access_request.workflow_ref_pattern
    if pattern:
        if job_workflow_ref is None:
            return f"only workflows matching '{pattern}' may use it, and the workflow is unknown"
        if not fnmatchcase(job_workflow_ref, pattern):
            return (
                f"only workflows matching '{pattern}' may use it; this one is "
                f"'{job_workflow_ref or '(none)'}'"
            )
    pattern = access_request.ref_pattern
    if pattern:
        if ref is None:
            return f"only refs matching '{pattern}' may use it, and the ref is unknown"
        if not fnmatchcase(ref, pattern):
            return f"only refs matching '{pattern}' may use it; this one is '{ref or '(none)'}'"
    return ""


def restriction_label(access_request) -> str:
    """The request's restrictions in words; "" when it has none."""
    parts = []
    if access_request.workflow_ref_pattern:
        parts.append(f"workflows matching '{access_request.workflow_ref_pattern}'")
    if access_request.ref_pattern:
        parts.append(f"refs matching '{access_request.ref_pattern}'")
    return " and ".join(parts)


def _canonical_parameters(repository: str, environment: str) -> tuple[str, str, dict]:
    """The parameters' names in canonical form ("" when not given), and the errors of
    those outside GitHub's rules."""
    names, errors = {}, {}
    for field, rule, value in (
        ("repository", canonical_repository, repository),
        ("environment", canonical_environment, environment),
    ):
        try:
            names[field] = rule(value) if value else ""
        except NameRefused as refusal:
            names[field] = ""
            errors.update(refusal.message_dict)
    return names["repository"], names["environment"], errors


def grant_check_scope(
    *,
    caller,
    repository: str = "",
    environment: str = "",
    user: str = "",
    access: str = "",
    secret: str = "",
) -> CheckScope:
    """The scope a caller may ask about; NotAllowed (403) or ValidationError (400) if none."""
    scope, _ = _scope_and_caller(
        caller=caller,
        repository=repository,
        environment=environment,
        user=user,
        access=access,
        secret=secret,
    )
    return scope


def _scope_and_caller(
    *, caller, repository: str, environment: str, user: str, access: str, secret: str
) -> tuple[CheckScope, object]:
    """grant_check_scope, and the caller it answers for: an OIDC caller knowing who started
    its run attempt (oidc_caller_of_attempt), so that the audit names that person."""
    # A name outside the rules is a 400 naming the field (the API's parameters arrive
    # canonical already: GrantCheckQuerySerializer).
    repository, environment, errors = _canonical_parameters(repository, environment)
    if isinstance(caller, OidcPrincipal):
        if errors:
            raise ValidationError(errors)
        claimed_repository, claimed_environment = _claimed_target(caller)
        if repository and repository != claimed_repository:
            raise NotAllowed(
                f"This job's OIDC token is for the repository {caller.repository}; it cannot "
                f"ask about {repository}."
            )
        if not claimed_environment:
            raise NotAllowed(
                "This job's OIDC token carries no environment claim: only a job that runs in "
                "a GitHub environment (jobs.<job_id>.environment) can check a grant for it."
            )
        if environment and environment != claimed_environment:
            raise NotAllowed(
                f"This job runs in the environment '{caller.environment}'; its OIDC token "
                f"cannot ask about '{environment}'."
            )
        caller = oidc_caller_of_attempt(caller)  # after the refusals that need no GitHub
        if user and not _same(user, caller.person):
            raise NotAllowed(
                f"This run attempt was started by {caller.person}; its OIDC token cannot ask "
                f"about {user}."
            )
        scope = CheckScope(
            repository=claimed_repository,
            environment=claimed_environment,
            login=caller.person,
            access=access,
            secret=secret,
            job_workflow_ref=caller.job_workflow_ref,
            ref=caller.ref,
            github_id=caller.person_github_id or None,
        )
        return scope, caller

    for name, value in (("repository", repository), ("environment", environment)):
        if not value and name not in errors:
            errors[name] = "Required: name the target to check."
    if errors:
        raise ValidationError(errors)
    login = user or caller.get_username()
    if not _same(login, caller.get_username()) and not user_is_grants_admin(user=caller):
        raise NotAllowed(
            "You may check only your own grants; platform admins may check anyone's."
        )
    scope = CheckScope(
        repository=repository, environment=environment, login=login, access=access, secret=secret
    )
    return scope, caller


# Grants in force for one person and target at once: a handful at most (overlapping
# grants, an extension). The bound keeps a pathological case to one bounded query.
MAX_CANDIDATES = 50
ACTIVE = AccessRequest.Status.ACTIVE.value
assert ACTIVE.isidentifier()  # written into SQL as a literal
assert GITHUB.isidentifier()  # the SocialAccount provider, written into SQL too


@dataclass(frozen=True)
class CheckedGrant:
    """The grant in force, as the check reports it: plain values read in one query."""

    request: int
    grant: int | None
    user: str
    repository: str
    environment: str
    access: str
    secret: str | None
    break_glass: bool
    granted_at: datetime | None
    expires_at: datetime
    workflow_ref_pattern: str
    ref_pattern: str
    approvers: tuple[tuple[str, datetime], ...] = ()
    # The holder signed in with GitHub, and the asking token's GitHub id is not theirs.
    other_github_account: bool = False

    def as_json(self) -> dict:
        return {
            "id": self.grant,
            "request": self.request,
            "user": self.user,
            "repository": self.repository,
            "environment": self.environment,
            "access": self.access,
            "secret": self.secret,
            "break_glass": self.break_glass,
            "granted_at": _iso(self.granted_at),
            "expires_at": _iso(self.expires_at),
            "approvers": [
                {"login": login, "approved_at": _iso(approved_at)}
                for login, approved_at in self.approvers
            ],
            "workflow_ref_pattern": self.workflow_ref_pattern,
            "ref_pattern": self.ref_pattern,
        }


@dataclass(frozen=True)
class CheckAnswer:
    allowed: bool
    grant: CheckedGrant | None
    reason: str

    def as_json(self) -> dict:
        """The API's answer (GrantCheckSerializer documents it)."""
        return {
            "allowed": self.allowed,
            "grant": self.grant.as_json() if self.grant else None,
            "reason": self.reason,
        }


def _iso(value: datetime | None) -> str | None:
    # As DRF writes a DateTimeField (in the current time zone, UTC here).
    if value is None:
        return None
    value = timezone.localtime(value).isoformat()
    return value.removesuffix("+00:00") + "Z" if value.endswith("+00:00") else value


def _aware(value) -> datetime | None:
    """A datetime column read by hand: SQLite gives naive UTC (or text), PostgreSQL aware."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value


@memoize
def _in_force_sql(vendor: str, by_access: bool, by_secret: bool, by_github_id: bool) -> str:
    """The check's one query: the person's requests in force on the target (at most
    MAX_CANDIDATES, longest-lasting first), each with its grant, secret and approvals, and
    with by_github_id whether the holder's GitHub account, if the portal knows one, is
    another than the given id's.

    Written by hand because the check is the hot path: the ORM took ten times longer to
    build this query than the database took to run it. Tables are named from the models'
    metadata, columns are the fields' names (the tests run it on SQLite and PostgreSQL).
    The target is matched by plain equality of canonical names (core.names), which the
    partial index request_in_force_target serves; the login case-insensitively.
    """
    del vendor  # part of the cache key: quoting differs between backends
    # The status is written into the query, not bound: PostgreSQL uses a partial index
    # (WHERE status = 'active') only for a query whose plan can prove that condition, and
    # a prepared statement's generic plan cannot prove it of a parameter.
    q = connection.ops.quote_name
    request, user = AccessRequest._meta.db_table, get_user_model()._meta.db_table
    secret, grant = SecretDefinition._meta.db_table, Grant._meta.db_table
    approval, social = Approval._meta.db_table, SocialAccount._meta.db_table
    r, u, s, g, a, au, c = (q(alias) for alias in ("r", "u", "s", "g", "a", "au", "c"))
    sa = q("sa")
    # EXISTS, not a join: a user may have linked more than one GitHub account.
    other_account = "0"
    if by_github_id:
        other_account = (
            f"(EXISTS (SELECT 1 FROM {q(social)} {sa} WHERE {sa}.{q('user_id')} = {u}.{q('id')}"
            f" AND {sa}.{q('provider')} = '{GITHUB}') AND NOT EXISTS (SELECT 1 FROM "
            f"{q(social)} {sa} WHERE {sa}.{q('user_id')} = {u}.{q('id')} "
            f"AND {sa}.{q('provider')} = '{GITHUB}' AND {sa}.{q('uid')} = %s))"
        )
    extra = ""
    if by_access:
        extra += f" AND {r}.{q('access')} = %s"
    if by_secret:
        extra += f" AND UPPER({s}.{q('name')}) = UPPER(%s)"
    return (
        f"SELECT {c}.*, {au}.{q('username')}, {a}.{q('created_at')} FROM ("
        f"SELECT {r}.{q('id')} AS request_id, {g}.{q('id')} AS grant_id, "
        f"{u}.{q('username')} AS login, {r}.{q('repository')}, {r}.{q('environment')}, "
        f"{r}.{q('access')}, {s}.{q('name')} AS secret_name, {r}.{q('break_glass')}, "
        f"{r}.{q('granted_at')}, {r}.{q('expires_at')}, {r}.{q('workflow_ref_pattern')}, "
        f"{r}.{q('ref_pattern')}, {other_account} AS other_github_account "
        f"FROM {q(request)} {r} "
        f"INNER JOIN {q(user)} {u} ON {u}.{q('id')} = {r}.{q('requester_id')} "
        f"LEFT JOIN {q(secret)} {s} ON {s}.{q('id')} = {r}.{q('secret_id')} "
        f"LEFT JOIN {q(grant)} {g} ON {g}.{q('access_request_id')} = {r}.{q('id')} "
        f"WHERE {r}.{q('status')} = '{ACTIVE}' AND {r}.{q('expires_at')} > %s "
        f"AND {r}.{q('repository')} = %s "
        f"AND {r}.{q('environment')} = %s "
        f"AND UPPER({u}.{q('username')}) = UPPER(%s){extra} "
        f"ORDER BY {r}.{q('expires_at')} DESC, {r}.{q('id')} DESC LIMIT {MAX_CANDIDATES}"
        f") {c} "
        f"LEFT JOIN {q(approval)} {a} ON {a}.{q('request_id')} = {c}.request_id "
        f"LEFT JOIN {q(user)} {au} ON {au}.{q('id')} = {a}.{q('approver_id')} "
        f"ORDER BY {c}.{q('expires_at')} DESC, {c}.request_id DESC, "
        f"{a}.{q('created_at')}, {a}.{q('id')}"
    )


def _fetch_all(sql: str, params: list) -> list[tuple]:
    """Run the check's query, which also serves as the connection's health check.

    Django's health check (CONN_HEALTH_CHECKS) costs a round trip, SELECT 1, before a
    request's first query on a reused connection: a fifth of the check's time. The check
    skips it and lets its own query find out instead: if the reused connection turns out
    dead, it is closed and the query runs once more on a new one. The query only reads,
    so running it twice is harmless.
    """
    recover = (
        connection.connection is not None
        and connection.health_check_enabled
        and not connection.health_check_done
        and not connection.in_atomic_block
    )
    if recover:
        connection.health_check_done = True
        try:
            return _run(sql, params)
        except (InterfaceError, OperationalError):
            logger.warning("The database connection was lost; the grant check reconnects")
            connection.close()
    return _run(sql, params)


def _run(sql: str, params: list) -> list[tuple]:
    """On PostgreSQL, as a prepared statement.

    PostgreSQL spends longer planning this six-table query than running it. psycopg
    prepares a statement once it has run this often on a connection (prepare_threshold),
    but only for a cursor that binds parameters on the server; Django's cursors bind them
    on the client. So this one query runs on a server-binding cursor over Django's
    connection, wrapped by Django (errors, execute wrappers, the debug query log).
    DATABASE_PREPARED_STATEMENTS=false (prepare_threshold None) turns preparing off.
    """
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(sql, params)
            return cursor.fetchall()
        import psycopg

        prepared = connection.make_cursor(psycopg.Cursor(connection.connection))
        logged = (
            cursor.debug_sql(connection.ops.compose_sql(sql, params))
            if connection.queries_logged
            else nullcontext()
        )
        with prepared, logged:
            prepared.execute(sql, params)
            return prepared.fetchall()


def in_force_grants(*, scope: CheckScope, now: datetime) -> list[CheckedGrant]:
    """The scope's requests in force at now, longest-lasting first, in one query."""
    params = [] if scope.github_id is None else [scope.github_id]  # in the select list
    params += [
        connection.ops.adapt_datetimefield_value(now),
        scope.repository,
        scope.environment,
        scope.login,
    ]
    if scope.access:
        params.append(scope.access)
    if scope.secret:
        params.append(scope.secret)
    sql = _in_force_sql(
        connection.vendor, bool(scope.access), bool(scope.secret), scope.github_id is not None
    )
    rows = _fetch_all(sql, params)
    found: dict[int, CheckedGrant] = {}
    approvers: dict[int, list] = {}
    for row in rows:
        request_id = row[0]
        if request_id not in found:
            found[request_id] = CheckedGrant(
                request=request_id,
                grant=row[1],
                user=row[2],
                repository=row[3],
                environment=row[4],
                access=row[5],
                secret=row[6],
                break_glass=bool(row[7]),
                granted_at=_aware(row[8]),
                expires_at=_aware(row[9]),
                workflow_ref_pattern=row[10],
                ref_pattern=row[11],
                other_github_account=bool(row[12]),
            )
            approvers[request_id] = []
        if row[13] is not None:
            approvers[request_id].append((row[13], _aware(row[14])))
    return [replace(candidate, approvers=tuple(approvers[pk])) for pk, candidate in found.items()]


def grant_check(*, scope: CheckScope, now: datetime | None = None) -> CheckAnswer:
    """The request in force now for the scope (the one that lasts longest, among those a
    workflow's claims satisfy), in one query."""
    candidates = in_force_grants(scope=scope, now=now or timezone.now())
    what = f"{scope.access} access" if scope.access else "access"
    if scope.secret:
        what += f" to the secret {scope.secret}"
    target = f"{scope.repository} environment '{scope.environment}'"
    if not candidates:
        return CheckAnswer(
            allowed=False, grant=None, reason=f"{scope.login} holds no {what} to {target} now."
        )
    if candidates[0].other_github_account:  # one holder: the same for every candidate
        return CheckAnswer(
            allowed=False,
            grant=None,
            reason=(
                f"This run attempt was started by the GitHub account id {scope.github_id} "
                f"named {scope.login}, not the one the portal knows as {scope.login} (who "
                f"signed in with GitHub): a renamed or re-registered GitHub login does not "
                f"take over another person's grant."
            ),
        )
    found, refusals = None, []
    for candidate in candidates:
        refusal = (
            restriction_refusal(candidate, job_workflow_ref=scope.job_workflow_ref, ref=scope.ref)
            if scope.is_workflow
            else ""
        )
        if not refusal:
            found = candidate
            break
        refusals.append(f"request #{candidate.request}: {refusal}")
    if found is None:
        return CheckAnswer(
            allowed=False,
            grant=None,
            reason=(
                f"{scope.login} holds {what} to {target}, but not for this workflow: "
                f"{'; '.join(refusals)}."
            ),
        )
    reason = (
        f"{found.user} holds {found.access} access to {target} until "
        f"{found.expires_at.isoformat()} (request #{found.request})."
    )
    restricted = restriction_label(found)
    if restricted:
        reason = reason[:-1] + f", restricted to {restricted}."
    return CheckAnswer(allowed=True, grant=found, reason=reason)


def grant_check_answer(
    *,
    caller,
    repository: str = "",
    environment: str = "",
    user: str = "",
    access: str = "",
    secret: str = "",
) -> CheckAnswer:
    """The check as the API runs it: the caller's scope, the answer, and its audit.

    Raises NotAllowed (after auditing it, sampled) when the caller may not ask this, and
    ValidationError when a person leaves out the target.
    """
    try:
        scope, caller = _scope_and_caller(
            caller=caller,
            repository=repository,
            environment=environment,
            user=user,
            access=access,
            secret=secret,
        )
    except NotAllowed as refusal:
        if isinstance(caller, OidcPrincipal):
            repository = repository or caller.repository
            environment = environment or caller.environment
        grant_check_refusal_audit(
            caller=caller, repository=repository, environment=environment, reason=str(refusal)
        )
        raise
    answer = grant_check(scope=scope)
    if answer.allowed:
        grant_check_audit(caller=caller, scope=scope, answer=answer)
    else:
        grant_check_refusal_audit(
            caller=caller,
            repository=scope.repository,
            environment=scope.environment,
            reason=answer.reason,
        )
    return answer


# --- audit ------------------------------------------------------------------------------------


def _mark(*parts) -> str:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return f"airlock:grant-check:{digest}"


def _caller_detail(caller) -> dict:
    if isinstance(caller, OidcPrincipal):
        claims = caller.claims
        starter = caller.attempt_starter  # (login, id) GitHub named for a re-run, if asked
        return {
            "via": "oidc",
            "sub": caller.sub,
            "actor": caller.actor,
            "actor_id": claims.get("actor_id"),
            "triggering_actor": claims.get("triggering_actor") or (starter and starter[0]),
            "triggering_actor_id": claims.get("triggering_actor_id") or (starter and starter[1]),
            "repository": caller.repository,
            "environment": caller.environment,
            "run_id": claims.get("run_id"),
            "run_attempt": claims.get("run_attempt"),
            "job_workflow_ref": caller.job_workflow_ref,
            "ref": caller.ref,
        }
    return {"via": "user", "user": caller.get_username()}


def grant_check_audit(*, caller, scope: CheckScope, answer: CheckAnswer) -> bool:
    """Record an allowed answer (aggregated, see the module docstring); True if recorded."""
    checked = answer.grant
    now = timezone.now()
    if isinstance(caller, OidcPrincipal):
        mark = _mark("allowed", checked.request, caller.repository, caller.run)
        seconds = (checked.expires_at - now).total_seconds()
        ttl = int(min(max(seconds, 60), ALLOWED_MARK_MAX_SECONDS))
    else:
        hour = int(now.timestamp() // PERSON_ALLOWED_MARK_SECONDS)
        mark = _mark("allowed", checked.request, caller.get_username(), hour)
        ttl = PERSON_ALLOWED_MARK_SECONDS
    if not cache.add(mark, 1, ttl):
        return False
    try:
        if checked.grant is not None:
            target = Grant.objects.select_related("secret", "target").get(pk=checked.grant)
        else:
            target = AccessRequest.objects.get(pk=checked.request)
        audit.log_event(
            action="grant.checked",
            actor=caller,
            target=target,
            reason=answer.reason,
            detail={
                "allowed": True,
                "request": checked.request,
                "login": scope.login,
                "access": scope.access or None,
                "expires_at": checked.expires_at,
                **_caller_detail(caller),
            },
        )
    except Exception:
        cache.delete(mark)  # so the next check records it
        raise
    return True


def grant_check_refusal_audit(*, caller, repository: str, environment: str, reason: str) -> bool:
    """Record a "no" (or a refusal to answer), sampled once per caller, target and minute."""
    minute = int(timezone.now().timestamp() // REFUSED_SAMPLE_SECONDS)
    who = caller.get_username()
    mark = _mark("refused", who, ascii_lower(repository), ascii_lower(environment), minute)
    if not cache.add(mark, 1, REFUSED_SAMPLE_SECONDS * 2):
        return False
    try:
        audit.log_event(
            action="grant.check_refused",
            actor=caller,
            target_type="target",
            target_id=f"{repository}:{environment}"[:255],
            target_repr=f"{repository}:{environment}",
            reason=reason,
            detail={
                "allowed": False,
                "sampled_per_seconds": REFUSED_SAMPLE_SECONDS,
                **_caller_detail(caller),
            },
        )
    except Exception:
        cache.delete(mark)
        raise
    return True
