"""The admin's home page: what awaits me, break-glass to review, access in force and ending
soon, failed grants, and (for those who see grants) overdue revocations; approvers see only
what is routed to them, and every section links to its full, filtered list."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from grants.models import Grant
from grants.services import grant_create_for_request
from integrations.github import GitHubClient
from requests_app.models import AccessRequest
from tests.requests_app.factories import (
    AccessPolicyFactory,
    AccessRequestFactory,
    UserFactory,
    approver_setup,
)

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status
INDEX = reverse("admin:index")


@pytest.fixture
def world():
    """Requests under alice's policy in every state the dashboard shows, and one under a
    policy she is not an approver of."""
    policy, _, users = approver_setup(approvals_required=1)
    now = timezone.now()
    dave = UserFactory(username="dave")

    def request(**fields):
        return AccessRequestFactory(requester=dave, policy=policy, **fields)

    made = {
        "pending": request(),
        "break_glass": request(
            status=Status.ACTIVE, break_glass=True, approvals_required=0,
            granted_at=now, expires_at=now + timedelta(minutes=50),
        ),
        "in_force": request(
            status=Status.ACTIVE, granted_at=now, expires_at=now + timedelta(hours=3)
        ),
        "expiring": request(
            status=Status.ACTIVE, granted_at=now - timedelta(hours=1),
            expires_at=now + timedelta(minutes=20),
        ),
        "failed": request(
            status=Status.FAILED, ended_at=now, close_comment="GitHub refused: no such user"
        ),
        "reviewed": request(
            status=Status.EXPIRED, break_glass=True, review_outcome="acknowledged"
        ),
        "elsewhere": AccessRequestFactory(
            requester=dave,
            policy=AccessPolicyFactory(name="other", environment_patterns=["staging"]),
            environment="staging",
        ),
    }
    return made, users


def section(response, key):
    return next(s for s in response.context["airlock_dashboard"] if s["key"] == key)


def test_an_approver_sees_what_is_routed_to_them_in_each_section(world, client):
    made, users = world
    client.force_login(users["alice"])

    response = client.get(INDEX)

    assert response.status_code == 200
    assert section(response, "awaiting")["rows"] == [made["pending"]]
    assert section(response, "break_glass")["rows"] == [made["break_glass"]]
    assert section(response, "in_force")["rows"] == [
        made["expiring"], made["break_glass"], made["in_force"]
    ]
    assert section(response, "expiring")["rows"] == [made["expiring"], made["break_glass"]]
    assert section(response, "failed")["rows"] == [made["failed"]]
    assert "overdue" not in [s["key"] for s in response.context["airlock_dashboard"]]
    page = response.content.decode()
    assert "Requests awaiting my decision" in page and "BREAK-GLASS" in page
    assert "left" in page  # time left on active grants
    assert made["elsewhere"] not in section(response, "awaiting")["rows"]


def test_each_section_links_to_the_same_requests_in_the_list(world, client):
    made, users = world
    client.force_login(users["alice"])
    response = client.get(INDEX)

    for key in ("awaiting", "break_glass", "in_force", "expiring", "failed"):
        listed = client.get(section(response, key)["link"])
        assert listed.status_code == 200, key
        assert set(listed.context["cl"].queryset) == set(section(response, key)["rows"]), key


def test_the_requester_does_not_find_their_own_request_awaiting_them(world, client):
    made, users = world
    own = AccessRequestFactory(requester=users["bob"], policy=made["pending"].policy)
    client.force_login(users["bob"])
    rows = section(client.get(INDEX), "awaiting")["rows"]
    assert made["pending"] in rows and own not in rows


def test_platform_admins_see_everything_and_overdue_revocations(world, client):
    made, _ = world
    past = timezone.now() - timedelta(minutes=5)
    overdue_request = AccessRequestFactory(
        requester=UserFactory(username="erin"),
        policy=made["pending"].policy,
        status=Status.APPROVED,
        decided_at=past,
    )
    grant = grant_create_for_request(access_request=overdue_request)
    Grant.objects.filter(pk=grant.pk).update(
        state=Grant.State.APPLIED,
        applied_at=past - timedelta(hours=1),
        expires_at=past,
        revocation_overdue_since=past,
        last_error="GitHub answered 502",
    )
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))

    response = client.get(INDEX)

    overdue = section(response, "overdue")
    assert [g.pk for g in overdue["rows"]] == [grant.pk]
    assert "GitHub answered 502" in response.content.decode()
    listed = client.get(overdue["link"])
    assert [g.pk for g in listed.context["cl"].queryset] == [grant.pk]
    assert section(response, "awaiting")["rows"] == []  # root approves nothing
    assert section(response, "in_force")["count"] == 3


def test_an_empty_dashboard_says_so(client):
    _, _, users = approver_setup()
    client.force_login(users["carol"])
    page = client.get(INDEX).content.decode()
    assert "Nothing waits for you." in page
    assert "No break-glass access left to review." in page


def test_access_an_extension_carries_on_is_not_expiring(world, client):
    made, users = world
    now = timezone.now()
    AccessRequestFactory(
        requester=made["expiring"].requester,
        policy=made["expiring"].policy,
        extends=made["expiring"],
        status=Status.ACTIVE,
        granted_at=now,
        expires_at=made["expiring"].expires_at + timedelta(hours=1),
    )
    client.force_login(users["alice"])
    rows = section(client.get(INDEX), "expiring")["rows"]
    assert made["expiring"] not in rows and made["break_glass"] in rows


def test_platform_admins_see_githubs_budget_and_what_waits_for_its_reset(
    gh, client, platform_admin
):
    _, _, users = approver_setup()
    assert "No answer from GitHub yet" in client.get(INDEX).content.decode()

    gh.spend_rate_limit(remaining=300)  # 6% of 5,000 left: critical
    GitHubClient().repository_id("acme/api")
    response = client.get(INDEX)

    card = section(response, "github_budget")
    assert card["style"] == "alert" and card["count"] == 1
    (row,) = card["rows"]
    assert (row["client"], row["remaining"], row["limit"], row["band"]) == (
        "engine", 299, 5000, "critical"
    )
    page = response.content.decode()
    assert "299 of 5000 left (6%)" in page
    assert "critical: only revocations run: grants, the drift check and the team sync wait" in (
        page
    )

    gh.spend_rate_limit(remaining=4000)
    GitHubClient().repository_id("acme/api")
    card = section(client.get(INDEX), "github_budget")
    assert card["style"] == "" and card["rows"][0]["band"] == "normal"

    # Approvers do not see it: it is about the engine, not their requests.
    client.force_login(users["alice"])
    keys = [s["key"] for s in client.get(INDEX).context["airlock_dashboard"]]
    assert "github_budget" not in keys
