"""The admin's change lists, given a date hierarchy off the calendar: bad lookup
parameters, like any other (the list says so), never a 500. The lists that traded their
hierarchy for a date filter (it costs a DISTINCT over every row) refuse it the same way."""

import pytest
from django.contrib import admin
from django.urls import reverse

pytestmark = pytest.mark.django_db

HIERARCHY_FIELDS = {
    f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist": (
        model_admin.date_hierarchy
    )
    for model, model_admin in admin.site._registry.items()
    if model_admin.date_hierarchy
}
DATE_FILTERED = {
    "admin:audit_auditevent_changelist": "created_at",
    "admin:requests_app_accessrequest_changelist": "created_at",
}
DATED_FIELDS = {**HIERARCHY_FIELDS, **DATE_FILTERED}
DATED = sorted(DATED_FIELDS)


def test_the_lists_with_a_date_hierarchy_are_these():
    assert sorted(HIERARCHY_FIELDS) == [
        "admin:django_celery_beat_periodictask_changelist",
        "admin:grants_deploymentgate_changelist",
        "admin:grants_grant_changelist",
        "admin:grants_mintedtoken_changelist",
    ]


@pytest.mark.parametrize("changelist", DATED)
@pytest.mark.parametrize(
    "query",
    [
        "{field}__year=99999999999999999999999",  # OverflowError
        "{field}__year=0",  # no year 0
        "{field}__year=twenty",
    ],
)
def test_a_date_off_the_calendar_is_a_bad_lookup_not_a_crash(root_client, changelist, query):
    query = query.format(field=DATED_FIELDS[changelist])
    response = root_client.get(f"{reverse(changelist)}?{query}")
    assert response.status_code == 302
    assert response.url.endswith("?e=1")


@pytest.mark.parametrize("changelist", sorted(HIERARCHY_FIELDS))
@pytest.mark.parametrize(
    "query",
    [
        "{field}__year=9999",  # the year after it does not exist: ValueError
        "{field}__year=9999&{field}__month=12&{field}__day=31",  # OverflowError
    ],
)
def test_the_last_days_of_the_calendar_are_refused_by_a_hierarchy(
    root_client, changelist, query
):
    query = query.format(field=DATED_FIELDS[changelist])
    response = root_client.get(f"{reverse(changelist)}?{query}")
    assert response.status_code == 302
    assert response.url.endswith("?e=1")


@pytest.mark.parametrize("changelist", sorted(DATE_FILTERED))
def test_a_date_filtered_list_still_filters_by_year_from_an_old_link(root_client, changelist):
    field = DATED_FIELDS[changelist]
    response = root_client.get(f"{reverse(changelist)}?{field}__year=9999")
    assert response.status_code == 200
    assert response.context["cl"].result_count == 0


def test_the_audit_export_refuses_it_too(root_client):
    response = root_client.get(
        reverse("admin:audit_auditevent_export") + "?created_at__year=99999999999999999999999"
    )
    assert response.status_code == 400
