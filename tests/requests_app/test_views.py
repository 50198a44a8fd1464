"""The requester's pages, through Django's test client: filing, following, cancelling."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse

from requests_app.models import AccessRequest
from requests_app.services import access_request_approve, access_request_create
from tests.requests_app.factories import (
    AccessPolicyFactory,
    AccessRequestFactory,
    ApproverGroupFactory,
    SecretDefinitionFactory,
    UserFactory,
    approver_setup,
)

pytestmark = pytest.mark.django_db

NEW = reverse("requests_app:new")
MINE = reverse("requests_app:my-requests")


@pytest.fixture
def policy():
    group = ApproverGroupFactory(name="prod-approvers", members=["alice", "bob"])
    return AccessPolicyFactory(
        name="production",
        approver_groups=[group],
        max_duration=timedelta(hours=4),
        default_duration=timedelta(minutes=90),
        approvals_required=2,
        reason_min_length=20,
        secrets=[SecretDefinitionFactory(name="DEPLOY_TOKEN")],
    )


def form_data(**overrides):
    data = {
        "repository": "acme/api",
        "environment": "production",
        "access": "reviewer",
        "secret": "",
        "reason": "Deploying the hotfix for INC-1234 to production",
        "duration_minutes": "60",
        "starts_at": "",
    }
    data.update(overrides)
    return data


def test_pages_need_a_signed_in_user(client):
    for url in (MINE, NEW, reverse("requests_app:detail", args=[1])):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("account_login"))


def test_check_policy_shows_the_matching_policys_limits(client, dev, policy):
    response = client.get(
        NEW,
        {"repository": "acme/api", "environment": "production", "access": "reviewer"},
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "Policy <strong>production</strong> covers" in page
    assert "4 hours (240 minutes)" in page
    assert "90 minutes" in page
    assert "2, from distinct approvers" in page
    assert "<strong>prod-approvers</strong>: alice, bob" in page
    assert "at least 20 characters" in page
    assert "DEPLOY_TOKEN" in page
    # The form is filled in with the target and the policy's default duration.
    assert 'value="acme/api"' in page
    assert 'name="duration_minutes" value="90"' in page
    assert AccessRequest.objects.count() == 0


def test_check_policy_button_re_renders_the_form_without_filing(client, dev, policy):
    response = client.post(NEW, form_data(reason="short", preview="1"))

    assert response.status_code == 200
    assert "Policy <strong>production</strong> covers" in response.content.decode()
    # Not bound: checking a policy flags no field as wrong yet.
    assert 'aria-invalid="true"' not in response.content.decode()
    assert 'value="short"' not in response.content.decode()  # textarea, not an input
    assert "short</textarea>" in response.content.decode()
    assert AccessRequest.objects.count() == 0


def test_check_policy_says_when_no_policy_covers_the_target(client, dev, policy):
    response = client.get(
        NEW, {"repository": "other/repo", "environment": "staging", "access": "reviewer"}
    )

    assert "No access policy covers reviewer access to <code>other/repo</code>" in (
        response.content.decode()
    )


def test_posting_the_form_files_the_request_and_shows_it(client, dev, policy):
    response = client.post(NEW, form_data(), follow=True)

    access_request = AccessRequest.objects.get()
    assert access_request.requester == dev
    assert access_request.duration_minutes == 60
    assert access_request.status == AccessRequest.Status.PENDING
    assert response.redirect_chain[-1][0] == reverse(
        "requests_app:detail", args=[access_request.pk]
    )
    page = response.content.decode()
    assert f"Request #{access_request.pk} is filed. It needs 2 approvals" in page
    assert "May still approve: alice, bob" in page


def test_an_empty_duration_takes_the_policys_default(client, dev, policy):
    client.post(NEW, form_data(duration_minutes=""))

    assert AccessRequest.objects.get().duration_minutes == 90


def test_secret_access_names_its_secret(client, dev, policy):
    client.post(NEW, form_data(access="secret", secret="DEPLOY_TOKEN"))

    assert AccessRequest.objects.get().secret.name == "DEPLOY_TOKEN"


def test_duration_above_the_maximum_is_shown_beside_the_field_and_input_is_kept(
    client, dev, policy
):
    response = client.post(NEW, form_data(duration_minutes="600"))

    assert response.status_code == 200
    assert AccessRequest.objects.count() == 0
    page = response.content.decode()
    assert (
        '<ul class="errorlist" id="id_duration_minutes_error"><li>At most 240 minutes under '
        "policy &#x27;production&#x27;.</li></ul>"
    ) in page
    assert 'aria-describedby="id_duration_minutes_helptext id_duration_minutes_error"' in page
    assert 'aria-invalid="true"' in page
    assert 'value="600"' in page
    assert "Deploying the hotfix for INC-1234 to production</textarea>" in page


def test_a_duration_no_policy_could_allow_is_a_form_error_not_a_crash(client, dev, policy):
    # Once an OverflowError in the service's date arithmetic (a 500).
    response = client.post(NEW, form_data(duration_minutes="99999999999999999999999"))

    assert response.status_code == 200
    assert AccessRequest.objects.count() == 0
    assert (
        '<ul class="errorlist" id="id_duration_minutes_error"><li>Ensure this value is less '
        "than or equal to 527040.</li></ul>"
    ) in response.content.decode()


def test_too_short_reason_is_shown_beside_the_reason_field(client, dev, policy):
    response = client.post(NEW, form_data(reason="hotfix"))

    page = response.content.decode()
    assert '<ul class="errorlist" id="id_reason_error"><li>Give a reason of at least 20' in page
    assert "\nhotfix</textarea>" in page
    assert AccessRequest.objects.count() == 0


def test_a_target_without_policy_gets_an_error_on_top_naming_the_target(client, dev, policy):
    response = client.post(NEW, form_data(repository="other/repo", environment="staging"))

    page = response.content.decode()
    assert 'class="error-summary" role="alert"' in page
    assert "No access policy covers reviewer access to other/repo environment" in page
    assert "&#x27;staging&#x27;" in page
    assert 'value="other/repo"' in page


def test_missing_fields_are_flagged_beside_them(client, dev, policy):
    response = client.post(NEW, form_data(repository="", reason=""))

    page = response.content.decode()
    assert 'id="id_repository_error"' in page
    assert 'id="id_reason_error"' in page


def test_every_field_has_a_label(client, dev, policy):
    page = client.get(NEW).content.decode()

    for name in ("repository", "environment", "access", "secret", "reason"):
        assert f'<label for="id_{name}">' in page
    for name in ("duration_minutes", "starts_at", "break_glass"):
        assert f'<label for="id_{name}">' in page


def test_my_requests_lists_only_my_own(client, dev, policy):
    mine = AccessRequestFactory(requester=dev, policy=policy, repository="acme/mine")
    theirs = AccessRequestFactory(policy=policy, repository="acme/theirs")

    page = client.get(MINE).content.decode()

    assert f"#{mine.pk}" in page
    assert "acme/mine" in page
    assert "acme/theirs" not in page
    assert f'action="{reverse("requests_app:cancel", args=[theirs.pk])}"' not in page


def test_my_requests_shows_status_approvals_so_far_and_a_cancel_button(client, dev):
    policy, _group, users = approver_setup(approvals_required=2)
    access_request = access_request_create(
        requester=dev,
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix for INC-1234",
    )
    access_request_approve(access_request=access_request, approver=users["alice"])

    page = client.get(MINE).content.decode()

    assert '<span class="badge badge-pending">Pending</span>' in page
    assert "1 of 2" in page
    assert f'action="{reverse("requests_app:cancel", args=[access_request.pk])}"' in page


def test_cancelling_works_once_and_a_second_cancel_says_already_decided(client, dev, policy):
    access_request = AccessRequestFactory(requester=dev, policy=policy)
    cancel = reverse("requests_app:cancel", args=[access_request.pk])

    response = client.post(cancel, {"comment": "not needed after all"}, follow=True)

    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.CANCELLED
    assert access_request.close_comment == "not needed after all"
    assert f"Request #{access_request.pk} is cancelled." in response.content.decode()

    response = client.post(cancel, follow=True)

    assert f"Request #{access_request.pk} is already decided (Cancelled)" in (
        response.content.decode()
    )


def test_cancel_from_the_list_returns_to_the_list(client, dev, policy):
    access_request = AccessRequestFactory(requester=dev, policy=policy)

    response = client.post(reverse("requests_app:cancel", args=[access_request.pk]), {"next": MINE})

    assert response.url == MINE


def test_cancel_ignores_a_next_url_on_another_site(client, dev, policy):
    access_request = AccessRequestFactory(requester=dev, policy=policy)

    response = client.post(
        reverse("requests_app:cancel", args=[access_request.pk]),
        {"next": "https://evil.example/"},
    )

    assert response.url == reverse("requests_app:detail", args=[access_request.pk])


def test_cancel_needs_a_post(client, dev, policy):
    access_request = AccessRequestFactory(requester=dev, policy=policy)

    response = client.get(reverse("requests_app:cancel", args=[access_request.pk]))

    assert response.status_code == 405


def test_an_approver_who_sees_the_request_cannot_cancel_it(client, policy):
    access_request = AccessRequestFactory(policy=policy)
    client.force_login(UserFactory(username="alice"))

    response = client.post(reverse("requests_app:cancel", args=[access_request.pk]))

    assert response.status_code == 403
    assert "Only the requester can cancel a request." in response.content.decode()
    access_request.refresh_from_db()
    assert access_request.status == AccessRequest.Status.PENDING


def test_request_page_is_404_for_strangers(client, policy):
    access_request = AccessRequestFactory(policy=policy)
    client.force_login(UserFactory(username="stranger"))

    assert client.get(reverse("requests_app:detail", args=[access_request.pk])).status_code == 404
    assert client.post(reverse("requests_app:cancel", args=[access_request.pk])).status_code == 404


def test_request_page_is_visible_to_its_approvers_and_to_platform_admins(client, policy):
    access_request = AccessRequestFactory(policy=policy)
    url = reverse("requests_app:detail", args=[access_request.pk])

    client.force_login(UserFactory(username="bob"))
    assert client.get(url).status_code == 200
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    assert client.get(url).status_code == 200
    client.force_login(UserFactory(username="staff-only", is_staff=True))
    assert client.get(url).status_code == 404


def test_request_page_shows_approvals_and_the_timeline(client, dev):
    policy, _group, users = approver_setup(approvals_required=2)
    access_request = access_request_create(
        requester=dev,
        repository="acme/api",
        environment="production",
        access="reviewer",
        reason="Deploying the hotfix for INC-1234",
    )
    access_request_approve(
        access_request=access_request, approver=users["bob"], comment="looks right"
    )

    page = client.get(reverse("requests_app:detail", args=[access_request.pk])).content.decode()

    assert "<strong>bob</strong> approved" in page
    assert "“looks right”" in page
    assert "May still approve: alice, carol" in page
    assert "request.created" in page
    assert "request.approval_added" in page
    assert "Cancel request" in page


def test_dry_run_banner_is_on_every_page(client, dev, policy):
    access_request = AccessRequestFactory(requester=dev, policy=policy)
    urls = [MINE, NEW, reverse("requests_app:detail", args=[access_request.pk])]

    with override_settings(AIRLOCK_DRY_RUN=True):
        for url in urls:
            assert "<strong>Dry-run mode:</strong> no GitHub credentials are configured" in (
                client.get(url).content.decode()
            ), url
        client.logout()
        assert "Dry-run mode:" in client.get(reverse("account_login")).content.decode()

    with override_settings(AIRLOCK_DRY_RUN=False):
        client.force_login(dev)
        assert "Dry-run mode:" not in client.get(MINE).content.decode()


def test_every_page_shows_who_is_signed_in_and_a_sign_out_button(client, dev):
    page = client.get(MINE).content.decode()

    assert "Signed in as <strong>dev</strong>" in page
    assert f'<form method="post" action="{reverse("account_logout")}">' in page
    assert "Sign out</button>" in page


def test_admin_link_is_shown_to_approvers_only(client, dev, policy):
    assert 'href="/admin/"' not in client.get(MINE).content.decode()

    client.force_login(UserFactory(username="alice"))
    assert 'href="/admin/"' in client.get(MINE).content.decode()
