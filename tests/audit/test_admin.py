import json

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import RequestFactory
from django.urls import reverse

from audit.models import AuditEvent
from tests.audit.factories import AuditEventFactory, UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:audit_auditevent_changelist")
EXPORT = reverse("admin:audit_auditevent_export")


def exported(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


def test_nobody_may_add_change_or_delete_events_not_even_a_superuser(admin_user):
    event = AuditEventFactory()
    request = RequestFactory().get("/")
    request.user = admin_user
    model_admin = admin.site._registry[AuditEvent]

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    assert model_admin.has_view_permission(request, event)
    assert "delete_selected" not in model_admin.get_actions(request)


def test_add_change_and_delete_pages_are_refused_to_a_superuser(admin_client):
    event = AuditEventFactory(reason="original")
    change = reverse("admin:audit_auditevent_change", args=[event.pk])

    assert admin_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert admin_client.post(change, {"reason": "rewritten"}).status_code == 403
    delete = reverse("admin:audit_auditevent_delete", args=[event.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.get().reason == "original"


def test_event_page_is_read_only_with_detail_pretty_printed(admin_client):
    event = AuditEventFactory(detail={"after": {"reviewers": ["alice"]}, "before": {}})

    response = admin_client.get(reverse("admin:audit_auditevent_change", args=[event.pk]))

    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="_save"' not in content
    assert "<pre" in content
    assert "&quot;after&quot;: {\n    &quot;reviewers&quot;: [\n      &quot;alice&quot;" in content
    assert event.hash in content


def test_changelist_loads_and_filters_by_action_and_search(admin_client):
    AuditEventFactory(action="request.created", reason="needs prod")
    AuditEventFactory(action="request.approved", reason="approved for the fix")
    AuditEventFactory(action="grant.applied", reason="applied")

    everything = admin_client.get(CHANGELIST)
    approved = admin_client.get(CHANGELIST, {"action": "request.approved"})
    searched = admin_client.get(CHANGELIST, {"q": "needs prod"})

    assert everything.status_code == 200
    assert [e.seq for e in everything.context["cl"].result_list] == [3, 2, 1]
    assert [e.action for e in approved.context["cl"].result_list] == ["request.approved"]
    assert [e.action for e in searched.context["cl"].result_list] == ["request.created"]


def test_viewing_the_log_needs_the_view_permission(client):
    AuditEventFactory()
    staff = UserFactory(username="platform-admin", is_staff=True)
    client.force_login(staff)

    assert client.get(CHANGELIST).status_code == 403
    assert client.get(EXPORT).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    assert client.get(CHANGELIST).status_code == 200


def test_changelist_button_exports_the_filtered_events_as_json_lines(admin_client):
    AuditEventFactory(action="request.created")
    approved = AuditEventFactory(action="request.approved")
    AuditEventFactory(action="request.approved")

    changelist = admin_client.get(CHANGELIST, {"action": "request.approved"})
    assert f'href="{EXPORT}?action=request.approved"' in changelist.content.decode()

    response = admin_client.get(EXPORT, {"action": "request.approved"})

    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-log-')
    lines = exported(response)
    assert [line["seq"] for line in lines] == [2, 3]
    assert lines[0]["hash"] == approved.hash
    assert lines[0]["prev_hash"] == AuditEvent.objects.get(seq=1).hash


def test_export_is_not_limited_to_the_page_on_screen(admin_client, monkeypatch):
    monkeypatch.setattr(admin.site._registry[AuditEvent], "list_per_page", 2)
    AuditEventFactory.create_batch(5)

    response = admin_client.get(EXPORT, {"p": "2"})

    assert [line["seq"] for line in exported(response)] == [1, 2, 3, 4, 5]


def test_exporting_from_the_admin_is_itself_audited(admin_client, admin_user):
    AuditEventFactory()

    exported(admin_client.get(EXPORT, {"q": "hotfix"}))

    record = AuditEvent.objects.get(action="audit.exported")
    assert record.actor_id == admin_user.pk
    assert record.detail == {"filters": {"q": ["hotfix"]}}


def test_export_action_exports_the_selected_events(admin_client):
    events = AuditEventFactory.create_batch(4)

    response = admin_client.post(
        CHANGELIST,
        {"action": "export_selected", "_selected_action": [events[3].pk, events[1].pk]},
    )

    assert response["Content-Type"] == "application/x-ndjson"
    assert [line["seq"] for line in exported(response)] == [2, 4]


def test_changelist_shows_the_head_of_the_log_to_keep_outside_the_database(admin_client):
    newest = AuditEventFactory.create_batch(2)[-1]

    content = admin_client.get(CHANGELIST).content.decode()

    assert f"<code>2:{newest.hash}</code>" in content
    assert "verify_audit_log --head" in content


def test_an_export_names_the_head_of_the_log_it_was_taken_from(admin_client):
    AuditEventFactory.create_batch(2)

    response = admin_client.get(EXPORT)

    record = AuditEvent.objects.get(action="audit.exported")
    assert response["X-Audit-Head"] == f"{record.seq}:{record.hash}"


def test_export_with_an_unknown_filter_is_a_bad_request(admin_client):
    assert admin_client.get(EXPORT, {"no_such_field": "1"}).status_code == 400
