"""Reads about requests and approvers: who may decide what, and what awaits whom."""

from django.db.models import Q, QuerySet

from requests_app.models import AccessRequest, ApproverGroup, ApproverGroupMember


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


def requests_routed_to(*, user) -> QuerySet[AccessRequest]:
    """Requests whose policy names an approver group the user belongs to."""
    return AccessRequest.objects.filter(
        policy__approver_groups__members__login__iexact=user.username
    ).distinct()


def requests_visible_to(*, user) -> QuerySet[AccessRequest]:
    """Own requests, and those routed to the user as an approver; every request to
    platform admins."""
    if user_sees_all_requests(user=user):
        return AccessRequest.objects.all()
    routed = AccessRequest.objects.filter(
        policy__approver_groups__members__login__iexact=user.username
    )
    return AccessRequest.objects.filter(Q(requester=user) | Q(pk__in=routed.values("pk")))


def requests_awaiting_decision_by(*, user) -> QuerySet[AccessRequest]:
    """Pending requests routed to the user that they may still approve."""
    return (
        requests_routed_to(user=user)
        .filter(status=AccessRequest.Status.PENDING)
        .exclude(requester=user)
        .exclude(requester__username__iexact=user.username)
        .exclude(approvals__approver=user)
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
    if access_request.requester_id == user.pk or (
        access_request.requester.username.lower() == user.username.lower()
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
    """Who may still approve: group members who are not the requester and have not yet."""
    done = {a.approver.username.lower() for a in access_request.approvals.all()}
    requester = access_request.requester.username.lower()
    return sorted(
        login
        for login in request_approver_logins(access_request=access_request)
        if login not in done and login != requester
    )


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
    until = None
    current = access_request
    for _ in range(100):  # a chain is short; the bound only guards against a cycle
        following = (
            AccessRequest.objects.filter(
                extends_id=current.pk,
                status__in=[AccessRequest.Status.APPROVED, AccessRequest.Status.ACTIVE],
            )
            .order_by("-pk")
            .first()
        )
        if following is None:
            break
        if following.expires_at is not None:
            until = following.expires_at
        current = following
    return until


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
            repository__iexact=repository,
            environment__iexact=environment,
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
    return AccessRequest.objects.filter(pk__in=requests_routed_to(user=user).values("pk"))


def admin_dashboard_requests(*, user, now, expiring_within, failed_since) -> dict:
    """The request sections of the admin's home page, each a queryset (the page counts it
    and shows the first rows): what awaits the user, break-glass to review, access in force
    (soonest end first), access ending soon, and grants GitHub refused lately."""
    visible = requests_for_admin(user=user).select_related("requester", "secret", "policy")
    Status = AccessRequest.Status
    in_force = visible.filter(status=Status.ACTIVE, expires_at__gt=now).order_by("expires_at")
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
