"""Who may sign in, and how a GitHub account becomes a portal user (its username is the
GitHub login; the numeric id, which survives a rename, is the SocialAccount's uid)."""

import logging

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.shortcuts import render

from integrations.github import TransientGitHubError, org_membership
from portal.ratelimit import client_address, sign_in_refusal
from requests_app.selectors import GITHUB, username_is_taken

logger = logging.getLogger(__name__)


def org_membership_refusal(*, token: str, org: str) -> str | None:
    """Why the owner of this OAuth token may not sign in as a member of `org`, or None when
    they are an active member. Asked with the user's own token: GitHub answers this
    endpoint only for the token's owner, and private memberships show only to them."""
    try:
        membership = org_membership(token=token, org=org)
    except TransientGitHubError as error:
        logger.warning("Could not check membership of %s: %s", org, error.message)
        return f"GitHub could not be asked whether you belong to {org}; try again shortly."
    if membership.status == 200:
        state = membership.state
        if state == "active":
            return None
        if state == "pending":
            return (
                f"Your invitation to the {org} organization is still pending. Accept it on "
                f"GitHub, then sign in again."
            )
        return f"Your membership of the {org} organization is not active ({state})."
    if membership.status == 404:
        return f"Your GitHub account is not a member of the {org} organization."
    if membership.status in (401, 403):
        # 403 also comes back when the organization restricts OAuth apps.
        return (
            f"GitHub did not let Airlock see your membership of {org} "
            f"(HTTP {membership.status}). The organization may need to approve Airlock's "
            f"OAuth app."
        )
    logger.warning("Membership check for %s answered HTTP %s", org, membership.status)
    return f"GitHub could not confirm your membership of {org} (HTTP {membership.status})."


def _refuse(request, *, reason: str, org: str = ""):
    response = render(
        request,
        "account/github_refused.html",
        {"reason": reason, "org": org},
        status=403,
    )
    raise ImmediateHttpResponse(response)


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        # Local accounts are made by platform admins; everyone else signs in with GitHub.
        return False

    def pre_authenticate(self, request, **credentials) -> None:
        super().pre_authenticate(request, **credentials)
        # Before the password is tried: at the limit even the right one is refused. The
        # failures themselves are counted by portal.ratelimit, for the admin's form too.
        refusal = sign_in_refusal(request=request, username=credentials.get("username"))
        if refusal:
            raise ValidationError(refusal, code="locked_out")

    def get_client_ip(self, request) -> str:
        # allauth's own limits (sign-in attempts per minute, ...) count by the address the
        # portal's limits use, which follows AIRLOCK_BEHIND_PROXY.
        return client_address(request)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request, sociallogin) -> bool:
        return True

    def pre_social_login(self, request, sociallogin) -> None:
        if sociallogin.account.provider != GITHUB:
            return
        login = sociallogin.account.extra_data.get("login", "")
        org = settings.AIRLOCK_GITHUB_ORG
        if org:
            # Checked at every sign-in, not only the first: people leave organizations.
            refusal = org_membership_refusal(token=sociallogin.token.token, org=org)
            if refusal:
                logger.info("Refused GitHub sign-in of %s: %s", login, refusal)
                _refuse(request, reason=refusal, org=org)
        if sociallogin.is_existing:
            self._follow_rename(sociallogin.user, login)
            return
        if self._login_is_taken(login):
            _refuse(
                request,
                reason=(
                    f"A portal account named {login} already exists and is not linked to "
                    f"this GitHub account. Ask a platform admin to sort it out."
                ),
            )
        # With a conflicting email allauth would show its signup form, where the person
        # could pick another username; the username is the identity approver groups match
        # on, so drop the address instead (it is only used for notifications).
        User = get_user_model()
        for address in list(sociallogin.email_addresses):
            if User.objects.filter(email__iexact=address.email).exists():
                sociallogin.email_addresses.remove(address)
                if sociallogin.user.email.lower() == address.email.lower():
                    sociallogin.user.email = ""

    def is_auto_signup_allowed(self, request, sociallogin) -> bool:
        # Never the signup form: there is nothing to choose, the username is the login.
        return True

    def save_user(self, request, sociallogin, form=None):
        login = sociallogin.account.extra_data.get("login")
        user = sociallogin.user
        if login and user.username != login:
            # allauth blanks a username it finds taken; never sign anyone in under a
            # name other than their GitHub login.
            _refuse(request, reason=f"The portal username {login} is not available.")
        return super().save_user(request, sociallogin, form)

    @staticmethod
    def _login_is_taken(login: str) -> bool:
        return username_is_taken(username=login)

    @staticmethod
    def _follow_rename(user, login: str) -> None:
        """A GitHub user who renamed their account keeps their portal user (matched by
        the numeric id); the username follows the new login unless someone holds it."""
        if not login or user.username == login:
            return
        if username_is_taken(username=login, other_than=user):
            logger.warning(
                "GitHub user %s renamed to %s, but that username is taken; keeping %s",
                user.username,
                login,
                user.username,
            )
            return
        logger.info("GitHub user %s renamed to %s", user.username, login)
        user.username = login
        user.save(update_fields=["username"])
