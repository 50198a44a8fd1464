"""The admin's change lists, given a date hierarchy off the calendar: bad lookup
parameters, like any other (the list says so), never a 500."""

import pytest
from django.contrib import admin
from django.urls import reverse

pytestmark = pytest.mark.django_db

DATED_FIELDS = {
    f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist": (
        model_admin.date_hierarchy
    )
    for model, model_admin in admin.site._registry.items()
    if model_admin.date_hierarchy
}
DATED = sorted(DATED_FIELDS)


def test_the_lists_with_a_date_hierarchy_are_these():
    assert DATED == [
        "admin:audit_auditevent_changelist",
        "admin:django_celery_beat_periodictask_changelist",
        "admin:grants_deploymentgate_changelist",
        "admin:grants_grant_changelist",
        "admin:grants_mintedtoken_changelist",
        "admin:requests_app_accessrequest_changelist",
    ]


@pytest.mark.parametrize("changelist", DATED)
@pytest.mark.parametrize(
    "query",
    [
        "{field}__year=99999999999999999999999",  # OverflowError
        "{field}__year=9999",  # the year after it does not exist: ValueError
        "{field}__year=9999&{field}__month=12&{field}__day=31",  # OverflowError
    ],
)
def test_a_date_off_the_calendar_is_a_bad_lookup_not_a_crash(root_client, changelist, query):
    query = query.format(field=DATED_FIELDS[changelist])
    response = root_client.get(f"{reverse(changelist)}?{query}")
    assert response.status_code == 302
    assert response.url.endswith("?e=1")


def test_the_audit_export_refuses_it_too(root_client):
    response = root_client.get(
        reverse("admin:audit_auditevent_export") + "?created_at__year=99999999999999999999999"
    )
    assert response.status_code == 400
