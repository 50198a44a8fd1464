"""Reads about requests and approvers: who may decide what, and what awaits whom."""

from django.db.models import Q, QuerySet

from requests_app.models import AccessRequest, ApproverGroup, ApproverGroupMember


def user_is_approver(*, user) -> bool:
    if not user.is_authenticated:
        return False
    return ApproverGroupMember.objects.filter(login__iexact=user.username).exists()


def approver_groups_for_user(*, user) -> QuerySet[ApproverGroup]:
    return ApproverGroup.objects.filter(members__login__iexact=user.username).distinct()


def requests_routed_to(*, user) -> QuerySet[AccessRequest]:
    """Requests whose policy names an approver group the user belongs to."""
    return AccessRequest.objects.filter(
        policy__approver_groups__members__login__iexact=user.username
    ).distinct()


def requests_visible_to(*, user) -> QuerySet[AccessRequest]:
    """Own requests, and those routed to the user as an approver."""
    if user.is_staff:
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
