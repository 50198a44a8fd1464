"""Approver groups synced from a GitHub team, against the local GitHub: members replaced by
the team's, changes audited, someone who left the team cannot approve from the sync on, and
errors keep the members as they were."""

import time

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from audit.models import AuditEvent
from core.errors import NotAllowed
from grants.schedule import beat_schedule
from integrations.github import GitHubClient
from requests_app import tasks
from requests_app.models import ApproverGroup
from requests_app.services import (
    access_request_approve,
    approver_group_sync,
    approver_groups_sync_all,
)
from tests.github_fake import cut_openapi
from tests.requests_app.factories import ApproverGroupFactory, UserFactory
from tests.requests_app.lifecycle import file_request

pytestmark = pytest.mark.django_db


@pytest.fixture
def group(gh):
    gh.add_team("acme", "sre", members=["alice", "bob"])
    return ApproverGroupFactory(name="prod-approvers", members=["alice", "carol"])


def set_team(group, team="acme/sre"):
    ApproverGroup.objects.filter(pk=group.pk).update(github_team=team)
    group.refresh_from_db()
    return group


def test_the_team_members_endpoint_is_in_githubs_openapi_subset():
    assert ("get", "/orgs/{org}/teams/{team_slug}/members") in cut_openapi.OPERATIONS
    assert ("get", "/orgs/{org}/teams/{team_slug}") in cut_openapi.OPERATIONS


def test_a_group_takes_its_members_from_the_team_and_the_change_is_audited(gh, group):
    report = approver_group_sync(group=set_team(group))

    assert report.synced and report.added == ["bob"] and report.removed == ["carol"]
    group.refresh_from_db()
    assert group.member_logins() == ["alice", "bob"]
    assert group.synced_at is not None and group.sync_error == ""
    event = AuditEvent.objects.get(action="approver_group.synced")
    assert (event.detail["added"], event.detail["removed"]) == (["bob"], ["carol"])
    # One read: the team's members (PyGithub is lazy about the team itself).
    paths = [r.path for r in gh.requests if r.method == "GET"]
    assert paths == ["/orgs/acme/teams/sre/members"]

    again = approver_group_sync(group=group)
    assert again.synced and again.added == again.removed == []
    assert AuditEvent.objects.filter(action="approver_group.synced").count() == 1


def test_a_team_larger_than_one_page_is_read_whole(gh, group):
    logins = [f"dev{n:02}" for n in range(45)]
    gh.add_team("acme", "big", members=logins)

    approver_group_sync(group=set_team(group, "acme/big"))

    assert group.member_logins() == sorted(logins)


def test_syncing_an_unchanged_team_again_costs_no_rate_limited_call(gh, group):
    approver_group_sync(group=set_team(group))
    used, seen = gh.rate_limited_calls, len(gh.requests)

    again = approver_group_sync(group=group)

    assert again.synced and again.added == again.removed == []
    assert gh.rate_limited_calls == used  # a 304: GitHub does not count it
    [asked] = gh.requests[seen:]
    assert (asked.path, asked.status) == ("/orgs/acme/teams/sre/members", 304)
    assert asked.headers["if-none-match"]


def test_a_change_to_the_team_between_two_syncs_is_seen(gh, group):
    approver_group_sync(group=set_team(group))
    gh.set_team_members("acme", "sre", ["bob", "dave"])
    used = gh.rate_limited_calls

    report = approver_group_sync(group=group)

    assert gh.rate_limited_calls == used + 1
    assert (report.added, report.removed) == (["dave"], ["alice"])
    assert group.member_logins() == ["bob", "dave"]


def test_a_team_of_several_pages_is_read_conditionally_page_by_page(gh, group):
    logins = [f"dev{n:03}" for n in range(150)]
    gh.add_team("acme", "big", members=logins)
    approver_group_sync(group=set_team(group, "acme/big"))
    assert gh.rate_limited_calls == 2  # 100 a page
    gh.set_team_members("acme", "big", logins[:120])

    approver_group_sync(group=group)

    # The first page is as it was (304, free); the second changed.
    assert [r.status for r in gh.requests[-2:]] == [304, 200]
    assert gh.rate_limited_calls == 3
    assert group.member_logins() == logins[:120]


def test_someone_who_left_the_team_cannot_approve_from_the_sync_on(gh, group, client):
    set_team(group)
    approver_group_sync(group=group)
    policy = group.policies.create(
        name="production",
        repository_patterns=["acme/*"],
        environment_patterns=["production"],
        access_kinds=["reviewer"],
        approvals_required=1,
    )
    policy.approver_groups.add(group)
    access_request = file_request("dave")
    bob = UserFactory(username="bob")
    client.force_login(bob)
    assert client.get(reverse("admin:index")).status_code == 200

    gh.set_team_members("acme", "sre", ["alice"])  # bob leaves the team on GitHub
    approver_group_sync(group=group)

    with pytest.raises(NotAllowed):
        access_request_approve(access_request=access_request, approver=bob)
    assert client.get(reverse("admin:index")).status_code == 302  # no more admin either
    event = AuditEvent.objects.filter(action="approver_group.synced").last()
    assert event.detail["removed"] == ["bob"]


def test_a_missing_team_keeps_the_members_and_records_the_error(gh, group):
    report = approver_group_sync(group=set_team(group, "acme/no-such-team"))

    assert not report.synced
    group.refresh_from_db()
    assert group.member_logins() == ["alice", "carol"]
    assert "GitHub has no team acme/no-such-team" in group.sync_error
    event = AuditEvent.objects.get(action="approver_group.sync_failed")
    assert event.detail["members_kept"] == ["alice", "carol"]


def test_github_being_down_keeps_the_members(gh, group):
    gh.faults.add("GET", "/orgs/acme/teams/**", status=502, times=None)

    report = approver_group_sync(group=set_team(group))

    assert not report.synced and "GitHub error" in report.message
    group.refresh_from_db()
    assert group.member_logins() == ["alice", "carol"]
    assert group.sync_error
    gh.faults.clear()


def test_in_dry_run_nothing_is_synced_and_the_group_says_why(gh, group, settings):
    settings.AIRLOCK_DRY_RUN = True

    report = approver_group_sync(group=set_team(group))

    assert not report.synced and "dry-run" in str(report)
    group.refresh_from_db()
    assert group.member_logins() == ["alice", "carol"]
    assert "dry-run" in group.sync_error
    assert not [r for r in gh.requests if "/teams/" in r.path]


def test_a_malformed_team_is_refused_without_asking_github(gh, group):
    report = approver_group_sync(group=set_team(group, "not a team"))
    assert not report.synced and "is not org/team-slug" in report.message
    assert not [r for r in gh.requests if "/teams/" in r.path]


def test_platform_admins_sync_a_group_now_from_the_admin(gh, group, client):
    set_team(group)
    admin_user = UserFactory(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin_user)

    response = client.post(
        reverse("admin:requests_app_approvergroup_changelist"),
        {"action": "sync_from_github_team", ACTION_CHECKBOX_NAME: [str(group.pk)]},
        follow=True,
    )

    assert "added bob; removed carol (from acme/sre)" in response.content.decode()
    assert group.member_logins() == ["alice", "bob"]
    event = AuditEvent.objects.get(action="approver_group.synced")
    assert event.actor_label == "root"


def test_the_beat_task_syncs_every_group_that_names_a_team(gh, group):
    set_team(group)
    other = ApproverGroupFactory(name="staging-approvers", members=["erin"])
    assert any(
        spec["task"] == "requests_app.tasks.sync_approver_groups"
        for spec in beat_schedule().values()
    )

    tasks.sync_approver_groups.apply()

    assert group.member_logins() == ["alice", "bob"]
    assert other.member_logins() == ["erin"]


def test_while_githubs_budget_is_low_the_team_sync_waits_for_the_reset(gh, group):
    set_team(group)
    approver_group_sync(group=group)  # alice and bob, read in full
    gh.set_team_members("acme", "sre", ["bob", "dave"])
    # GitHub says a fifth of the hour's 5,000 is left (under 25%: low), resetting in 8 s;
    # Airlock learns it from its next answer, whichever call that is.
    gh.spend_rate_limit(remaining=1000, reset_in=8)
    GitHubClient().repository_id("acme/api")
    seen = len(gh.requests)

    (report,) = approver_groups_sync_all()

    assert not report.synced and "deferred: GitHub's budget is low" in report.message
    assert len(gh.requests) == seen  # nothing read: what is left goes to grants
    group.refresh_from_db()
    assert group.member_logins() == ["alice", "bob"] and group.sync_error == ""
    assert not AuditEvent.objects.filter(action="approver_group.sync_failed").exists()

    time.sleep(max(0.0, gh.state.rate_limit_reset - time.time()) + 0.05)
    (report,) = approver_groups_sync_all()

    assert report.synced and group.member_logins() == ["bob", "dave"]
