"""portal.lookups: an `__in` lookup on an integer column, given integers no column holds."""

import pytest
from django.urls import reverse

from requests_app.models import AccessRequest
from tests.requests_app.factories import AccessRequestFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:requests_app_accessrequest_changelist")


def test_an_integer_no_column_can_hold_matches_nothing_in_an_in_lookup():
    # Django leaves such integers out of exact, gt and lt lookups (ticket #27397), not out
    # of __in: on SQLite it was an OverflowError.
    request = AccessRequestFactory()
    assert list(AccessRequest.objects.filter(pk__in=[10**30, request.pk])) == [request]
    assert not AccessRequest.objects.filter(pk__in=[10**30, -(10**30)]).exists()


def test_an_admin_choice_of_ids_no_column_can_hold_is_a_form_error(admin_client):
    # ModelMultipleChoiceField looks the chosen ids up with __in.
    response = admin_client.post(
        reverse("admin:requests_app_accesspolicy_add"),
        {"name": "p", "secrets": "99999999999999999999999"},
    )
    assert response.status_code == 200
    assert 'id="id_secrets_error"' in response.content.decode()


def test_an_admin_action_on_ids_no_row_can_have_changes_nothing(admin_client):
    pending = AccessRequest.objects.get()
    response = admin_client.post(
        CHANGELIST,
        {"action": "approve_selected", "index": "0", "_selected_action": ["9" * 30]},
    )
    assert response.status_code == 200
    pending.refresh_from_db()
    assert pending.status == "pending"
