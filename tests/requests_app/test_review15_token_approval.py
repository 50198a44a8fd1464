"""Review of issue 15 (failing test): what an approver is shown for a token request.

A token request keeps the permissions its policy offered when it was filed
(AccessRequest.token_permissions), and its grant's tokens carry exactly those. The admin's
request page, where approvers decide, shows the policy's *current* token_permissions
instead ("Token permissions: ..." in the policy panel): once the policy is edited after
the filing, the approver approves permissions other than those shown."""

import pytest
from django.urls import reverse

from requests_app.models import AccessPolicy
from requests_app.services import access_request_create
from tests.requests_app.factories import AccessPolicyFactory, ApproverGroupFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_the_approver_sees_the_permissions_the_request_will_grant(client, platform_admin):
    policy = AccessPolicyFactory(
        name="publish",
        repository_patterns=["acme/*"],
        environment_patterns=["production"],
        access_kinds=["token"],
        token_permissions={"contents": "write", "secrets": "write"},
        approver_groups=[ApproverGroupFactory(name="release", members=["root"])],
        approvals_required=1,
    )
    access_request = access_request_create(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        access="token",
        reason="Publishing the 2.4 release by hand",
    )
    assert access_request.token_permissions == {"contents": "write", "secrets": "write"}
    # The policy is narrowed while the request waits for its approver.
    AccessPolicy.objects.filter(pk=policy.pk).update(token_permissions={"contents": "read"})

    change = reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
    page = client.get(change).content.decode()

    # Approving grants contents: write and secrets: write; the page must say so.
    assert "secrets: write" in page, "the approver is shown only the policy's contents: read"
