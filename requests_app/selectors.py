"""Reads about requests and approvers: who may decide what, and what awaits whom, and who
is the same person as whom."""

from dataclasses import dataclass

from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Lower

from requests_app.models import (
    AccessPolicy,
    AccessRequest,
    Approval,
    ApproverGroup,
    ApproverGroupMember,
)

GITHUB = "github"


def github_user_id(user) -> int | None:
    """The GitHub numeric id of a user who signed in with GitHub, else None."""
    if user is None or not user.pk:
        return None
    uid = (
        SocialAccount.objects.filter(user=user, provider=GITHUB)
        .order_by("pk")
        .values_list("uid", flat=True)
        .first()
    )
    return int(uid) if uid and uid.isdigit() else None


def login_identity(login: str) -> str:
    return f"login:{login.casefold()}"


def approver_identity(user) -> str:
    """Who a person is, whatever their portal accounts: their GitHub account's numeric id
    where Airlock knows it (it survives renames and follows the GitHub account from one
    portal account to another), else their username case-folded (GitHub logins ignore
    case). Approvals count distinct identities, and nobody approves a request filed under
    their own identity; requests and approvals keep the identity they were made with.
    """
    uid = github_user_id(user)
    return f"github:{uid}" if uid is not None else login_identity(user.get_username())


def username_is_taken(*, username: str, other_than=None) -> bool:
    """Whether another user holds this username, case aside: usernames are GitHub logins,
    which ignore case, and the database refuses case variants (migration 0006)."""
    users = get_user_model().objects.filter(username__iexact=username)
    if other_than is not None:
        users = users.exclude(pk=other_than.pk)
    return users.exists()


def user_is_approver(*, user) -> bool:
    if not user.is_authenticated:
        return False
    return ApproverGroupMember.objects.filter(login__iexact=user.username).exists()


def user_sees_all_requests(*, user) -> bool:
    """Platform admins see every request: staff who may view requests (superusers may).
    The admin admits only staff, so the permission on an account that is not staff opens
    nothing, and neither does the staff flag without it. The portal, the API and the admin
    all ask this."""
    return bool(
        user.is_active
        and user.is_staff
        and user.has_perm("requests_app.view_accessrequest")
    )


def approver_groups_for_user(*, user) -> QuerySet[ApproverGroup]:
    return ApproverGroup.objects.filter(members__login__iexact=user.username).distinct()


def policies_routed_to(*, user) -> QuerySet[AccessPolicy]:
    """Policies that name an approver group the user belongs to: a request is routed to
    the user exactly when its policy is one of these."""
    return AccessPolicy.objects.filter(
        approver_groups__members__login__iexact=user.username
    ).distinct()


def requests_routed_to(*, user) -> QuerySet[AccessRequest]:
    """Requests whose policy names an approver group the user belongs to."""
    # By policy, not by joining every request to its groups' members: the subquery is a
    # handful of policy ids, and the request side is a plain indexed `policy_id IN (...)`.
    return AccessRequest.objects.filter(
        policy_id__in=policies_routed_to(user=user).values("pk")
    )


def requests_visible_to(*, user) -> QuerySet[AccessRequest]:
    """Own requests, and those routed to the user as an approver; every request to
    platform admins."""
    if user_sees_all_requests(user=user):
        return AccessRequest.objects.all()
    # The routed policies are read first (one small query) and given as constants: then
    # `requester = me OR policy_id IN (1, 2)` is two index scans PostgreSQL ORs together,
    # or a walk down the created_at index, instead of a subquery it cannot plan around.
    routed = list(policies_routed_to(user=user).values_list("pk", flat=True))
    if not routed:
        return AccessRequest.objects.filter(requester=user)
    return AccessRequest.objects.filter(Q(requester=user) | Q(policy_id__in=routed))


def requests_awaiting_decision_by(*, user) -> QuerySet[AccessRequest]:
    """Pending requests routed to the user that they may still approve."""
    identity = approver_identity(user)
    return (
        requests_routed_to(user=user)
        .filter(status=AccessRequest.Status.PENDING)
        .exclude(requester=user)
        .exclude(requester_identity=identity)
        .exclude(approvals__approver=user)
        .exclude(approvals__approver_identity=identity)
    )


def request_approver_logins(*, access_request: AccessRequest) -> set[str]:
    """Lower-cased logins of everyone in the request's approver groups."""
    logins = ApproverGroupMember.objects.filter(
        group__policies=access_request.policy_id
    ).values_list("login", flat=True)
    return {login.lower() for login in logins}


def request_refusal_for_decider(*, access_request: AccessRequest, user) -> str | None:
    """Why this user may not approve or deny this request, or None when they may.

    Nobody decides their own request, superusers included; only members of the groups the
    request is routed to decide, superusers included too.
    """
    if access_request.requester_id == user.pk or approver_identity(user) in _requester_identities(
        access_request
    ):
        return "You cannot decide on your own request."
    if user.username.lower() not in request_approver_logins(access_request=access_request):
        groups = ", ".join(g.name for g in access_request.policy.approver_groups.all())
        return (
            f"Only members of the approver groups of policy '{access_request.policy.name}' "
            f"({groups or 'none set'}) can decide on this request."
        )
    return None


def request_pending_approvers(*, access_request: AccessRequest) -> list[str]:
    """Who may still approve: group members who are not the requester (under any account)
    and whose identity has not approved yet."""
    approvals = access_request.approvals.values_list("approver_id", "approver_identity")
    done_by = {approver_id for approver_id, _ in approvals} | {access_request.requester_id}
    excluded = {identity for _, identity in approvals} | _requester_identities(access_request)
    logins = request_approver_logins(access_request=access_request)
    # A login with no portal account yet is its own identity; one with an account is the
    # account's (its GitHub id where known).
    identities = {login_identity(login): login for login in logins}
    users = get_user_model().objects.annotate(folded=Lower("username")).filter(folded__in=logins)
    for user in users:
        login = identities.pop(login_identity(user.get_username()))
        if user.pk not in done_by:
            identities[approver_identity(user)] = login
    return sorted(login for identity, login in identities.items() if identity not in excluded)


def _requester_identities(access_request: AccessRequest) -> set[str]:
    # The identity the request was filed under, and the requester's identity now (a
    # request made before identities were recorded has only the latter).
    identities = {approver_identity(access_request.requester)}
    if access_request.requester_identity:
        identities.add(access_request.requester_identity)
    return identities


def requester_history(*, access_request: AccessRequest, limit: int = 10):
    return (
        AccessRequest.objects.filter(requester_id=access_request.requester_id)
        .exclude(pk=access_request.pk)
        .select_related("policy")[:limit]
    )


# --- the life of a grant: extensions, reminders, break-glass review -------------------------


def request_extension_chain(*, access_request: AccessRequest) -> list[AccessRequest]:
    """The request, what it extends (up to the first request) and every extension after it,
    oldest first: one stretch of access that people see, and give back, as a whole."""
    root = access_request
    seen = {root.pk}
    while root.extends_id is not None and root.extends_id not in seen:
        root = AccessRequest.objects.get(pk=root.extends_id)
        seen.add(root.pk)
    chain, frontier = [root], [root.pk]
    while frontier:
        following = list(AccessRequest.objects.filter(extends_id__in=frontier).order_by("pk"))
        following = [r for r in following if r.pk not in {c.pk for c in chain}]
        chain.extend(following)
        frontier = [r.pk for r in following]
    return chain


def request_open_extension(*, access_request: AccessRequest) -> AccessRequest | None:
    """The extension of this request that is still pending, approved or active, if any
    (there is at most one: a second is refused while one is open)."""
    return (
        AccessRequest.objects.filter(
            extends_id=access_request.pk, status__in=AccessRequest.OPEN_STATUSES
        )
        .order_by("-pk")
        .first()
    )


def request_extended_until(*, access_request: AccessRequest):
    """When access to the request's target ends once its approved or active extensions have
    run (following extensions of extensions); None when none continues it."""
    return requests_extended_until(access_requests=[access_request])[access_request.pk]


def requests_extended_until(*, access_requests) -> dict:
    """request_extended_until for many requests at once, {pk: datetime or None}: one query
    per link of the longest chain among them (a chain is short), whatever their number."""
    until = {r.pk: None for r in access_requests}
    # The chain's current end → the requests (of those asked about) it continues.
    ends = {}
    for r in access_requests:
        ends.setdefault(r.pk, []).append(r.pk)
    for _ in range(100):  # a chain is short; the bound only guards against a cycle
        if not ends:
            break
        following = {}
        # The latest approved or active extension of each end continues it.
        for pk, extends_id, expires_at in (
            AccessRequest.objects.filter(
                extends_id__in=list(ends),
                status__in=[AccessRequest.Status.APPROVED, AccessRequest.Status.ACTIVE],
            )
            .order_by("pk")
            .values_list("pk", "extends_id", "expires_at")
        ):
            following[extends_id] = (pk, expires_at)
        next_ends = {}
        for extends_id, (pk, expires_at) in following.items():
            for origin in ends[extends_id]:
                if expires_at is not None:
                    until[origin] = expires_at
                next_ends.setdefault(pk, []).append(origin)
        ends = next_ends
    return until


def request_approval_counts(*, access_requests) -> dict:
    """How many approvals each request has, {pk: count}, in one query."""
    counts = dict.fromkeys((r.pk for r in access_requests), 0)
    rows = (
        Approval.objects.filter(request_id__in=list(counts))
        .order_by()
        .values("request_id")
        .annotate(count=Count("pk"))
        .values_list("request_id", "count")
    )
    counts.update(rows)
    return counts


def break_glass_awaiting_review() -> QuerySet[AccessRequest]:
    """Break-glass access nobody has reviewed yet, oldest first."""
    return AccessRequest.objects.filter(break_glass=True, review_outcome="").order_by(
        "created_at", "pk"
    )


def break_glass_outstanding(*, requester, repository: str, environment: str):
    """The requester's latest break-glass request on this target that is still open, or
    closed but not yet reviewed; None when there is none (break-glass is then open to them
    on this target)."""
    return (
        AccessRequest.objects.filter(
            requester=requester,
            repository=repository,  # canonical (core.names), as stored
            environment=environment,
            break_glass=True,
        )
        .filter(Q(status__in=AccessRequest.OPEN_STATUSES) | Q(review_outcome=""))
        .order_by("-pk")
        .first()
    )


def request_refusal_for_reviewer(*, access_request: AccessRequest, user) -> str | None:
    """Why this user may not record the review of this break-glass access, or None. The same
    people who decide a request review it: its approvers, never the requester."""
    if not access_request.break_glass:
        return f"Request #{access_request.pk} is not break-glass access; nothing to review."
    return request_refusal_for_decider(access_request=access_request, user=user)


def requests_for_admin(*, user) -> QuerySet[AccessRequest]:
    """What the admin shows this user: every request to platform admins who may view them,
    the requests routed to them to approvers."""
    if user_sees_all_requests(user=user):
        return AccessRequest.objects.all()
    # Constants, as in requests_visible_to: an indexed `policy_id IN (...)`.
    routed = list(policies_routed_to(user=user).values_list("pk", flat=True))
    return AccessRequest.objects.filter(policy_id__in=routed)


# A search term naming more requesters than this is matched through a subquery instead of
# their ids: such a term is common, so the rows it matches are dense and the list's LIMIT
# stops early anyway, and the statement stays short.
SEARCH_REQUESTER_IDS = 1_000


def requests_matching_search(queryset, *, terms: list[str]) -> QuerySet[AccessRequest]:
    """The requests of `queryset` matching every term, each somewhere in: the request's
    number (exactly), its repository, its environment, its reason, or its requester's
    username (case-insensitive substrings): the admin list's search.

    Each term is an OR over the request's own columns only, which PostgreSQL serves with a
    BitmapOr of index scans: the trigram indexes of requests_app 0020 on exactly the
    `UPPER(col::text) LIKE` expressions that icontains emits, the primary key for the
    number, and the requester index for the requesters whose username matches, read first
    in a query of their own. A join to the users table in the OR would defeat every index
    (an OR across two tables is filtered row by row), and so would Django's own `=id`
    search, `UPPER(id::text) = ...`. One query per term, whatever the history's size."""
    users = get_user_model()._default_manager
    for term in terms:
        matches = (
            Q(repository__icontains=term)
            | Q(environment__icontains=term)
            | Q(reason__icontains=term)
        )
        # What `id::text = term` matched: the number as written, without leading zeros,
        # and short enough for a bigint.
        if term.isascii() and term.isdigit() and len(term) <= 18 and str(int(term)) == term:
            matches |= Q(pk=int(term))
        named = users.filter(username__icontains=term).values_list("pk", flat=True)
        requester_ids = list(named[: SEARCH_REQUESTER_IDS + 1])
        if len(requester_ids) > SEARCH_REQUESTER_IDS:
            matches |= Q(requester_id__in=named)
        elif requester_ids:
            matches |= Q(requester_id__in=requester_ids)
        queryset = queryset.filter(matches)
    return queryset


def admin_dashboard_requests(*, user, now, expiring_within, failed_since) -> dict:
    """The request sections of the admin's home page, each a queryset (the page counts it
    and shows the first rows): what awaits the user, break-glass to review, access in force
    (soonest end first), access ending soon, and grants GitHub refused lately."""
    visible = requests_for_admin(user=user).select_related("requester", "secret", "policy")
    Status = AccessRequest.Status
    in_force = visible.in_force(now).order_by("expires_at")
    return {
        "awaiting": requests_awaiting_decision_by(user=user)
        .select_related("requester", "secret", "policy")
        .order_by("pending_until", "pk"),
        "break_glass": visible.filter(break_glass=True, review_outcome="").order_by(
            "created_at", "pk"
        ),
        "in_force": in_force,
        # Access an approved or active extension carries on is not ending.
        "expiring": in_force.filter(expires_at__lte=now + expiring_within).exclude(
            extensions__status__in=[Status.APPROVED, Status.ACTIVE]
        ),
        "failed": visible.filter(status=Status.FAILED, ended_at__gte=failed_since).order_by(
            "-ended_at"
        ),
    }


@dataclass(frozen=True)
class ActorMatch:
    """The portal user a workflow's actor claims name, or None and why not."""

    user: object | None
    why_not: str = ""
    # No portal account at all: the person gets one by signing in (a refusal for any
    # other reason is an admin's to look into).
    no_account: bool = False


def user_for_github_actor(*, login: str, github_id: str) -> ActorMatch:
    """The portal user a workflow's actor claims name.

    The GitHub numeric id decides where the portal knows it (it survives a rename); else
    the login, unless that portal account signed in with another GitHub account (a
    renamed or re-registered login does not take over someone's account), and never when
    the id belongs to a deactivated account."""
    if github_id:
        account = (
            SocialAccount.objects.filter(provider=GITHUB, uid=github_id)
            .select_related("user")
            .order_by("pk")
            .first()
        )
        if account is not None:
            if account.user.is_active:
                return ActorMatch(account.user)
            # The id is known, and it is someone's: never fall back to a login that may
            # be another person's account.
            return ActorMatch(
                None,
                f"The Airlock account {account.user.get_username()} that GitHub id "
                f"{github_id} signed in with is deactivated",
            )
    user = get_user_model().objects.filter(username__iexact=login).first()
    if user is None:
        return ActorMatch(None, f"{login} has no Airlock account", no_account=True)
    if not user.is_active:
        # Signing in does not reactivate it: an admin's to look into.
        return ActorMatch(None, f"The Airlock account {user.get_username()} is deactivated")
    if github_id:
        accounts = SocialAccount.objects.filter(user=user, provider=GITHUB)
        if accounts.exists() and not accounts.filter(uid=github_id).exists():
            return ActorMatch(
                None,
                f"The Airlock account {user.get_username()} signed in with another GitHub "
                f"account than the GitHub id {github_id} that started this run",
            )
    return ActorMatch(user)


def run_requests_open(*, repository: str, run_id: int) -> QuerySet[AccessRequest]:
    """The open requests bound to one workflow run, oldest first."""
    return AccessRequest.objects.filter(
        repository=repository, run_id=run_id, status__in=AccessRequest.OPEN_STATUSES
    ).order_by("pk")


# --- whose requests may serve a GitHub person -----------------------------------------------
# One rule for the check (grants/check/query.py states it in its SQL, for speed) and the
# deployment gates, as filing picks the requester (user_for_github_actor, which also
# refuses a deactivated account): the portal user who signed in with
# the person's GitHub account (by its numeric id: it survives a rename), or the portal user
# of their login who never signed in with GitHub (an account an admin made). A login whose
# portal user signed in with another GitHub account is someone else's: a renamed or
# re-registered login does not take over that person's grants. Without a GitHub id (a
# person's own check, a gate opened before ids were kept) the login alone decides.


def requests_serving_github_person(*, login: str, github_id) -> Q:
    """A filter on AccessRequest: the requests whose requester may be this GitHub person
    (the login, and their numeric GitHub id where known)."""
    by_login = Q(requester__username__iexact=login)
    if github_id is None or github_id == "":
        return by_login
    signed_in = SocialAccount.objects.filter(provider=GITHUB)
    return Q(requester__in=signed_in.filter(uid=str(github_id)).values("user")) | (
        by_login & ~Q(requester__in=signed_in.values("user"))
    )


def github_people_served_by(*, user) -> tuple[str, frozenset[str]]:
    """The other direction of the same rule: the login this user's requests serve, and the
    GitHub ids they serve (those the user signed in with; none: the login serves any id, as
    the account never said which is theirs)."""
    uids = SocialAccount.objects.filter(user=user, provider=GITHUB).values_list("uid", flat=True)
    return user.get_username(), frozenset(uids)
