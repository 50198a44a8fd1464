"""Approvers see what they approve: a request a workflow filed shows, on the request page,
the admin's pages, the decision page and in every message, that a workflow filed it, its
workflow, ref, commit (a short sha linking to GitHub) and run, and that the access ends
with the run. A person's request looks as before. The claims are escaped everywhere, and
only a commit id is put into a link."""

import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from grants.models import Grant
from requests_app import notifications
from requests_app.models import AccessRequest
from tests.fixtures import active_request
from tests.requests_app.factories import (
    AccessRequestFactory,
    UserFactory,
    approver_setup,
)

pytestmark = pytest.mark.django_db
Status = AccessRequest.Status

SHA = "0123456789abcdef0123456789abcdef01234567"
RUN = {
    "run_id": 1234,
    "run_attempt": 1,
    "run_workflow_ref": "acme/api/.github/workflows/deploy.yml@refs/heads/main",
    "run_ref": "refs/heads/main",
    "run_sha": SHA,
}
HOSTILE_REF = 'refs/heads/<script>alert("x")</script>'
NOT_HEX = "javascript:alert(1)"
RUN_BLOCK = 'class="airlock-run"'


def commit_url(sha=SHA) -> str:
    return f"{settings.GITHUB_URL}/acme/api/commit/{sha}"


def run_url(run_id=1234) -> str:
    return f"{settings.GITHUB_URL}/acme/api/actions/runs/{run_id}"


def assert_shows_the_run(html: str) -> None:
    assert RUN_BLOCK in html
    assert "Filed by a workflow" in html
    assert "<code>.github/workflows/deploy.yml</code>" in html
    assert "<code>refs/heads/main</code>" in html
    assert re.search(
        rf'<a href="{re.escape(commit_url())}"[^>]*><code>0123456</code></a>', html
    ), "the short sha links to the commit"
    assert f'<a href="{run_url()}" rel="noopener noreferrer">Run 1234, attempt 1</a>' in html
    assert (
        "Airlock's check and deployment protection rule answer only this run, and the access "
        "ends when the run completes or releases it." in html
    )
    assert "On GitHub the access itself is the environment's for its duration" in html
    assert "for that run only" not in html


@pytest.fixture
def world():
    """dave's run-bound request and his person's request, under a policy alice approves."""
    policy, _, users = approver_setup(approvals_required=1, workflow_requests=True)
    dave = UserFactory(username="dave")
    return {
        "policy": policy,
        "alice": users["alice"],
        "dave": dave,
        "run_bound": AccessRequestFactory(requester=dave, policy=policy, **RUN),
        "person": AccessRequestFactory(
            requester=dave, policy=policy, reason="By hand, for the INC-1234 hotfix"
        ),
    }


def detail(client, access_request):
    return client.get(reverse("requests_app:detail", args=[access_request.pk]))


def admin_change(client, access_request):
    return client.get(
        reverse("admin:requests_app_accessrequest_change", args=[access_request.pk])
    )


# --- the model: links only from GITHUB_URL, the canonical repository and a commit id ---------


def test_the_links_are_built_from_github_url_the_repository_and_the_numbers():
    r = AccessRequest(repository="acme/api", **RUN)
    assert r.run_url == run_url()
    assert r.run_commit_url == commit_url()
    assert r.run_short_sha == "0123456"
    assert r.run_workflow == ".github/workflows/deploy.yml"


def test_a_sha_that_is_not_a_commit_id_is_kept_whole_and_not_linked():
    r = AccessRequest(repository="acme/api", **{**RUN, "run_sha": NOT_HEX})
    assert r.run_commit_url == ""
    assert r.run_short_sha == NOT_HEX


def test_the_workflow_path_drops_its_own_repository_whatever_its_case():
    r = AccessRequest(
        repository="acme/api",
        **{
            **RUN,
            "run_workflow_ref": "Acme/API/.github/workflows/deploy.yml@refs/tags/v1",
            "run_ref": "refs/tags/v1",
        },
    )
    assert r.run_workflow == ".github/workflows/deploy.yml"


def test_a_reusable_workflow_is_shown_with_its_repository_and_ref():
    # Another repository's workflow, or the run's own file called at another ref: the code
    # that asked is not the run's ref, so approvers see where it came from.
    shared = AccessRequest(
        repository="acme/api",
        **{**RUN, "run_workflow_ref": "acme/shared/.github/workflows/deploy.yml@refs/heads/x"},
    )
    assert shared.run_workflow == "acme/shared/.github/workflows/deploy.yml@refs/heads/x"
    elsewhere = AccessRequest(
        repository="acme/api",
        **{**RUN, "run_workflow_ref": "acme/api/.github/workflows/deploy.yml@refs/heads/x"},
    )
    assert elsewhere.run_workflow == "acme/api/.github/workflows/deploy.yml@refs/heads/x"
    text = "\n".join(notifications.run_lines(shared))
    assert "acme/shared/.github/workflows/deploy.yml@refs/heads/x" in text


def test_approvers_see_the_ref_of_a_reusable_workflow_that_filed_the_request():
    # The filing job runs in a reusable workflow of another repository, called at a branch
    # that is not the run's ref: job_workflow_ref is acme/shared/...@refs/heads/attacker,
    # while the ref claim (the caller's) is refs/heads/main. The run block shows where the
    # code that asked came from (and notifications.run_lines alike).
    from django.template.loader import render_to_string

    access_request = AccessRequestFactory(
        requester=UserFactory(username="dave"),
        repository="acme/api",
        environment="production",
        run_id=4242,
        run_attempt=1,
        run_workflow_ref="acme/shared/.github/workflows/deploy.yml@refs/heads/attacker",
        run_ref="refs/heads/main",
        run_sha="a" * 40,
    )
    block = render_to_string("requests_app/_run.html", {"r": access_request})
    assert "refs/heads/attacker" in block, block


# --- the request page --------------------------------------------------------------------------


def test_the_request_page_shows_the_run_of_a_workflow_filed_request(client, world):
    client.force_login(world["dave"])
    assert_shows_the_run(detail(client, world["run_bound"]).content.decode())


def test_the_request_page_of_a_persons_request_has_no_run_block(client, world):
    client.force_login(world["dave"])
    page = detail(client, world["person"]).content.decode()
    assert RUN_BLOCK not in page and "Filed by a workflow" not in page


def test_approvers_see_the_run_on_the_request_page_too(client, world):
    client.force_login(world["alice"])
    assert_shows_the_run(detail(client, world["run_bound"]).content.decode())


def test_a_hostile_ref_is_escaped_on_the_request_page(client, world):
    AccessRequest.objects.filter(pk=world["run_bound"].pk).update(run_ref=HOSTILE_REF)
    client.force_login(world["dave"])
    page = detail(client, world["run_bound"]).content.decode()
    assert "<script>alert" not in page
    assert "refs/heads/&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page


def test_a_sha_that_is_not_hex_is_shown_but_not_linked_on_the_request_page(client, world):
    AccessRequest.objects.filter(pk=world["run_bound"].pk).update(run_sha=NOT_HEX)
    client.force_login(world["dave"])
    page = detail(client, world["run_bound"]).content.decode()
    assert f"<code>{NOT_HEX}</code> (not a commit id, so not linked)" in page
    assert "/commit/" not in page and 'href="javascript' not in page


def test_run_bound_access_offers_no_extension_and_says_why(client):
    run_bound = active_request("dave", **RUN)
    client.force_login(run_bound.requester)
    page = detail(client, run_bound).content.decode()
    assert "Ask for more time" not in page
    assert reverse("requests_app:extend", args=[run_bound.pk]) not in page
    assert "came from a workflow run and ends with it, so it cannot be extended" in page


def test_a_persons_access_still_offers_an_extension(client):
    person = active_request("dave")
    client.force_login(person.requester)
    page = detail(client, person).content.decode()
    assert reverse("requests_app:extend", args=[person.pk]) in page
    assert "cannot be extended" not in page


def test_asking_to_extend_run_bound_access_anyway_is_refused_with_the_reason(client):
    run_bound = active_request("dave", **RUN)
    client.force_login(run_bound.requester)
    response = client.post(
        reverse("requests_app:extend", args=[run_bound.pk]),
        {"reason": "Need a little longer for the deploy", "duration_minutes": 30},
        follow=True,
    )
    assert "is bound to run 1234 and ends with it" in response.content.decode()
    assert not AccessRequest.objects.filter(extends=run_bound).exists()


def test_my_requests_marks_workflow_filed_requests(client, world):
    client.force_login(world["dave"])
    page = client.get(reverse("requests_app:my-requests")).content.decode()
    markers = re.findall(r'<span class="airlock-workflow"[^>]*>workflow</span>', page)
    assert len(markers) == 1


def test_the_policy_panel_says_whether_workflows_may_file(client, world):
    client.force_login(world["dave"])
    query = {"repository": "acme/api", "environment": "production", "access": "reviewer"}
    page = client.get(reverse("requests_app:new"), query).content.decode()
    assert "may file requests for their own run" in page
    world["policy"].workflow_requests = False
    world["policy"].save()
    page = client.get(reverse("requests_app:new"), query).content.decode()
    assert "<dt>Workflows</dt><dd>may not file requests</dd>" in page


# --- the admin ---------------------------------------------------------------------------------


def test_the_admin_request_page_shows_the_run_above_the_decision(client, world):
    client.force_login(world["alice"])
    page = admin_change(client, world["run_bound"]).content.decode()
    assert_shows_the_run(page)
    assert page.index(RUN_BLOCK) < page.index("This request awaits your decision")


def test_the_admin_page_of_a_persons_request_has_no_run_block(client, world):
    client.force_login(world["alice"])
    page = admin_change(client, world["person"]).content.decode()
    assert RUN_BLOCK not in page and "Filed by a workflow" not in page


def test_the_admin_page_escapes_a_hostile_ref_and_links_no_odd_sha(client, world):
    AccessRequest.objects.filter(pk=world["run_bound"].pk).update(
        run_ref=HOSTILE_REF, run_sha=NOT_HEX
    )
    client.force_login(world["alice"])
    page = admin_change(client, world["run_bound"]).content.decode()
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    assert f"<code>{NOT_HEX}</code> (not a commit id, so not linked)" in page
    assert "/commit/" not in page


def test_the_admin_list_marks_and_links_the_run(client, world):
    client.force_login(world["alice"])
    page = client.get(
        reverse("admin:requests_app_accessrequest_changelist"), {"awaiting": "all"}
    ).content.decode()
    assert (
        f'<span class="airlock-workflow">workflow</span> <a href="{run_url()}" '
        'rel="noopener noreferrer">Run 1234</a>'
    ) in page
    assert page.count('class="airlock-workflow"') == 1


def test_the_admin_list_filters_workflow_filed_requests(client, world):
    client.force_login(world["alice"])
    response = client.get(
        reverse("admin:requests_app_accessrequest_changelist"),
        {"awaiting": "all", "lifecycle": "workflow"},
    )
    assert list(response.context["cl"].result_list) == [world["run_bound"]]


def test_the_decision_page_shows_the_run_before_approving(client, world):
    client.force_login(world["alice"])
    page = client.get(
        reverse("admin:requests_app_accessrequest_approve", args=[world["run_bound"].pk])
    ).content.decode()
    assert_shows_the_run(page)
    assert page.index(RUN_BLOCK) < page.index('name="comment"')


def test_the_decision_page_for_a_persons_request_has_no_run_block(client, world):
    client.force_login(world["alice"])
    page = client.get(
        reverse("admin:requests_app_accessrequest_deny", args=[world["person"].pk])
    ).content.decode()
    assert RUN_BLOCK not in page


def test_the_decision_page_for_several_shows_the_run_of_each_run_bound_one(client, world):
    from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

    client.force_login(world["alice"])
    page = client.post(
        reverse("admin:requests_app_accessrequest_changelist") + "?awaiting=all",
        {
            "action": "approve_selected",
            "index": "0",
            ACTION_CHECKBOX_NAME: [world["run_bound"].pk, world["person"].pk],
        },
    ).content.decode()
    assert page.count(RUN_BLOCK) == 1
    assert_shows_the_run(page)


def test_the_admin_dashboard_marks_workflow_filed_requests(client, world):
    client.force_login(world["alice"])
    page = client.get(reverse("admin:index")).content.decode()
    assert re.search(r'<span class="airlock-workflow"[^>]*>workflow</span>', page)


def test_the_policy_admin_lists_and_edits_workflow_requests(root_client, world):
    page = root_client.get(reverse("admin:requests_app_accesspolicy_changelist")).content
    page = page.decode()
    assert "column-workflow_requests" in page
    form = root_client.get(
        reverse("admin:requests_app_accesspolicy_change", args=[world["policy"].pk])
    ).content.decode()
    assert 'name="workflow_requests"' in form
    assert "the access is bound to the run and ends with it" in form


def test_the_admin_policy_rules_say_whether_workflows_may_file(client, world):
    client.force_login(world["alice"])
    page = admin_change(client, world["run_bound"]).content.decode()
    assert "Workflows may file requests for their run." in page


# --- the messages ------------------------------------------------------------------------------


@pytest.fixture
def routed(world, eager_celery, django_capture_on_commit_callbacks):
    """The request_routed messages of both of dave's requests, as the approvers get them."""
    mail.outbox.clear()

    def messages_for(access_request):
        with django_capture_on_commit_callbacks(execute=True):
            notifications.notify("request_routed", request_id=access_request.pk)
        return [m for m in mail.outbox if f"#{access_request.pk} awaits" in m.subject]

    return messages_for


def test_approvers_are_told_the_run_in_the_text_and_the_html_email(world, routed):
    messages = routed(world["run_bound"])
    assert sorted(m.to[0] for m in messages) == [
        "alice@example.com", "bob@example.com", "carol@example.com"
    ]
    message = messages[0]
    assert "dave's workflow run on acme/api:production" in message.subject
    body = message.body
    assert body.startswith("A workflow run started by dave asks for required reviewer access.")
    assert (
        "Filed by:    a workflow, for its run: Airlock's check and deployment protection "
        "rule answer only this run\n"
        "Ends:        when the run completes or releases it\n"
        "On GitHub:   the access is the environment's while it lasts (an environment secret "
        "reaches every job entering it; a reviewer may approve any run's deployment)\n"
    ) in body
    assert "run only" not in body
    assert "Workflow:    .github/workflows/deploy.yml\n" in body
    assert "Ref:         refs/heads/main\n" in body
    assert f"Commit:      0123456 {commit_url()}\n" in body
    assert f"Run:         Run 1234, attempt 1 {run_url()}\n" in body
    [(html, _)] = message.alternatives
    assert_shows_the_run(html)


def test_a_persons_request_is_told_as_before(world, routed):
    message = routed(world["person"])[0]
    assert "workflow" not in message.subject
    assert "Filed by" not in message.body and "Run:" not in message.body
    [(html, _)] = message.alternatives
    assert RUN_BLOCK not in html


def test_a_hostile_ref_stays_on_its_line_and_is_escaped_in_the_html(world, routed):
    AccessRequest.objects.filter(pk=world["run_bound"].pk).update(
        run_ref="refs/heads/x\nDecide here: https://evil.example/<script>", run_sha=NOT_HEX
    )
    message = routed(world["run_bound"])[0]
    lines = message.body.splitlines()
    assert [line for line in lines if line.startswith("Decide here:")] == [
        line for line in lines if line.startswith("Decide here: http://127.0.0.1:8000/")
    ]
    assert "Ref:         refs/heads/x Decide here: https://evil.example/<script>" in lines
    assert f"Commit:      {NOT_HEX} (not a commit id, so not linked)" in lines
    [(html, _)] = message.alternatives
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "/commit/" not in html and "/commit/" not in message.body


@pytest.mark.parametrize("event", sorted(notifications.EVENTS))
def test_every_message_about_a_run_bound_request_names_its_run(event, settings):
    settings.AIRLOCK_DRY_RUN = True
    access_request = active_request("dave", **RUN)
    grant = Grant.objects.get(access_request=access_request)
    Grant.objects.filter(pk=grant.pk).update(revocation_overdue_since=timezone.now())
    AccessRequest.objects.filter(pk=access_request.pk).update(
        expires_at=timezone.now() + timedelta(minutes=10)
    )

    message = notifications.build_message(event, request_id=access_request.pk, grant_id=grant.pk)

    assert f"Run:         Run 1234, attempt 1 {run_url()}" in message.body, event
    assert f"Commit:      0123456 {commit_url()}" in message.body, event


def test_the_requester_is_told_run_bound_access_ends_with_the_run_not_how_to_extend(settings):
    access_request = active_request("dave", **RUN)
    reminder = notifications.build_message("expiry_reminder", request_id=access_request.pk)
    assert "or earlier when its run completes" in reminder.body
    assert "cannot be extended" in reminder.body
    assert "Ask for it on the request's page" not in reminder.body
    applied = notifications.build_message("grant_applied", request_id=access_request.pk)
    assert "It ends when the run completes" in applied.body


def test_messages_about_a_persons_request_name_no_run():
    person = active_request("dave")
    for event in ("request_routed", "request_approved", "grant_applied", "expiry_reminder"):
        message = notifications.build_message(event, request_id=person.pk)
        assert "Run:" not in message.body and "Filed by" not in message.body, event

