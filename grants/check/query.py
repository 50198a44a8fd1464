"""The check's one query: a person's requests in force on a target, with grant, secret and
approvals, written as SQL from the models' documented metadata."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache as memoize

from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from core.statement import aware_datetime, fetch_all
from grants.check.scope import CheckScope
from grants.models import Grant
from requests_app.models import AccessRequest, Approval, SecretDefinition
from requests_app.selectors import GITHUB

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
    # The run the grant is bound to (a workflow filed the request), or None.
    run_id: int | None = None
    approvers: tuple[tuple[str, datetime], ...] = ()
    # The holder signed in with GitHub, and the asking token's GitHub id is not theirs.
    other_github_account: bool = False

    def as_json(self) -> dict:
        # The current time zone looked up once (a thread-local read), not once per time.
        tz = timezone.get_current_timezone()
        return {
            "id": self.grant,
            "request": self.request,
            "user": self.user,
            "repository": self.repository,
            "environment": self.environment,
            "access": self.access,
            "secret": self.secret,
            "break_glass": self.break_glass,
            "granted_at": _iso(self.granted_at, tz),
            "expires_at": _iso(self.expires_at, tz),
            "approvers": [
                {"login": login, "approved_at": _iso(approved_at, tz)}
                for login, approved_at in self.approvers
            ],
            "workflow_ref_pattern": self.workflow_ref_pattern,
            "ref_pattern": self.ref_pattern,
            "run_id": self.run_id,
        }


def _iso(value: datetime | None, tz) -> str | None:
    # As DRF writes a DateTimeField (in the current time zone, UTC here).
    if value is None:
        return None
    value = timezone.localtime(value, tz).isoformat()
    return value.removesuffix("+00:00") + "Z" if value.endswith("+00:00") else value


_aware = aware_datetime


def _column(model, field: str) -> str:
    """A field's quoted column, as the model's metadata names it (Field.column)."""
    return connection.ops.quote_name(model._meta.get_field(field).column)


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _owned_account(sa: str, u: str, user_id: str) -> str:
    """The GitHub accounts the portal user u signed in with (allauth's SocialAccount)."""
    return (
        f"SELECT 1 FROM {_table(SocialAccount)} {sa} "
        f"WHERE {sa}.{_column(SocialAccount, 'user')} = {u}.{user_id} "
        f"AND {sa}.{_column(SocialAccount, 'provider')} = '{GITHUB}'"
    )


@memoize
def _in_force_sql(vendor: str, by_access: bool, by_secret: bool, by_github_id: bool) -> str:
    """The check's one query: the person's requests in force on the target (at most
    MAX_CANDIDATES, longest-lasting first), each with its grant, secret and approvals, and
    with by_github_id whether the holder's GitHub account, if the portal knows one, is
    another than the given id's.

    Written by hand because the check is the hot path: the ORM took ten times longer to
    build this query than the database took to run it. It relies only on documented API:
    tables from Model._meta.db_table, columns from Field.column, quoting by
    connection.ops.quote_name (the tests run it on SQLite and PostgreSQL). The target is
    matched by plain equality of canonical names (core.names), which the partial index
    request_in_force_target serves; the holder by login, case-insensitively, or with
    by_github_id by the GitHub account the portal knows under that id (a renamed login).
    """
    del vendor  # part of the cache key: quoting differs between backends
    q = connection.ops.quote_name
    User = get_user_model()
    req, user, secret, grant = AccessRequest, User, SecretDefinition, Grant
    r, u, s, g, a, au, c, sa = (q(x) for x in ("r", "u", "s", "g", "a", "au", "c", "sa"))

    def rc(field):
        return f"{r}.{_column(req, field)}"

    user_id, username = _column(User, User._meta.pk.name), _column(User, "username")
    # EXISTS, not a join: a user may have linked more than one GitHub account.
    other_account = "0"
    if by_github_id:
        owned = _owned_account(sa, u, user_id)
        other_account = (
            f"(EXISTS ({owned}) AND NOT EXISTS ({owned} "
            f"AND {sa}.{_column(SocialAccount, 'uid')} = %s))"
        )
    extra = ""
    # The login, or the GitHub account the portal knows by its id: a renamed GitHub login
    # still holds the grants its account filed (requests_app.selectors.user_for_github_actor
    # files them so) until its next sign-in renames the portal user too. With
    # other_github_account this is requests_app.selectors.requests_serving_github_person,
    # the rule the deployment gates use, in SQL (a test holds the two to one answer).
    holder = f"UPPER({u}.{username}) = UPPER(%s)"
    if by_github_id:
        holder = (
            f"({holder} OR EXISTS ({_owned_account(sa, u, user_id)} "
            f"AND {sa}.{_column(SocialAccount, 'uid')} = %s))"
        )
    if by_access:
        extra += f" AND {rc('access')} = %s"
    if by_secret:
        extra += f" AND UPPER({s}.{_column(secret, 'name')}) = UPPER(%s)"
    # The in-force rule, the same as requests_app.models.in_force_at (status ACTIVE and
    # expires_at after now), stated on the same fields with the same constant. The status
    # is written into the query, not bound: PostgreSQL uses a partial index (WHERE status =
    # 'active') only for a query whose plan can prove that condition, and a prepared
    # statement's generic plan cannot prove it of a parameter.
    in_force = f"{rc('status')} = '{ACTIVE}' AND {rc('expires_at')} > %s"
    return (
        f"SELECT {c}.*, {au}.{username}, {a}.{_column(Approval, 'created_at')} FROM ("
        f"SELECT {rc('id')} AS request_id, {g}.{_column(grant, 'id')} AS grant_id, "
        f"{u}.{username} AS login, {rc('repository')}, {rc('environment')}, "
        f"{rc('access')}, {s}.{_column(secret, 'name')} AS secret_name, {rc('break_glass')}, "
        f"{rc('granted_at')}, {rc('expires_at')}, {rc('workflow_ref_pattern')}, "
        f"{rc('ref_pattern')}, {other_account} AS other_github_account, {rc('run_id')} "
        f"FROM {_table(req)} {r} "
        f"INNER JOIN {_table(user)} {u} ON {u}.{user_id} = {rc('requester')} "
        f"LEFT JOIN {_table(secret)} {s} ON {s}.{_column(secret, 'id')} = {rc('secret')} "
        f"LEFT JOIN {_table(grant)} {g} ON {g}.{_column(grant, 'access_request')} = {rc('id')} "
        f"WHERE {in_force} "
        f"AND {rc('repository')} = %s "
        f"AND {rc('environment')} = %s "
        f"AND {holder}{extra} "
        f"ORDER BY {rc('expires_at')} DESC, {rc('id')} DESC LIMIT {MAX_CANDIDATES}"
        f") {c} "
        f"LEFT JOIN {_table(Approval)} {a} ON {a}.{_column(Approval, 'request')} = {c}.request_id "
        f"LEFT JOIN {_table(user)} {au} ON {au}.{user_id} = {a}.{_column(Approval, 'approver')} "
        f"ORDER BY {c}.{_column(req, 'expires_at')} DESC, {c}.request_id DESC, "
        f"{a}.{_column(Approval, 'created_at')}, {a}.{_column(Approval, 'id')}"
    )


def in_force_grants(*, scope: CheckScope, now: datetime) -> list[CheckedGrant]:
    """The scope's requests in force at now, longest-lasting first, in one query."""
    params = [] if scope.github_id is None else [scope.github_id]  # in the select list
    params += [
        AccessRequest._meta.get_field("expires_at").get_db_prep_value(now, connection),
        scope.repository,
        scope.environment,
        scope.login,
    ]
    if scope.github_id is not None:
        params.append(scope.github_id)
    if scope.access:
        params.append(scope.access)
    if scope.secret:
        params.append(scope.secret)
    sql = _in_force_sql(
        connection.vendor, bool(scope.access), bool(scope.secret), scope.github_id is not None
    )
    rows = fetch_all(sql, params)
    # One row per approval (or one without): a request's first row holds its values.
    firsts: dict[int, tuple] = {}
    approvers: dict[int, list] = {}
    for row in rows:
        request_id = row[0]
        if request_id not in firsts:
            firsts[request_id] = row
            approvers[request_id] = []
        if row[14] is not None:
            approvers[request_id].append((row[14], _aware(row[15])))
    return [
        CheckedGrant(
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
            run_id=row[13],
            approvers=tuple(approvers[request_id]),
        )
        for request_id, row in firsts.items()
    ]
