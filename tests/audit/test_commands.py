import hashlib
import hmac
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.export import event_record
from audit.models import AuditEvent
from tests.audit.conftest import AUDIT_KEY, OLDER_AUDIT_KEY
from tests.audit.factories import AuditEventFactory, unkeyed_events

pytestmark = pytest.mark.django_db


def run(command, *args):
    stdout = StringIO()
    call_command(command, *args, stdout=stdout)
    return stdout.getvalue()


def test_verify_audit_log_reports_an_intact_chain():
    events = AuditEventFactory.create_batch(3)

    output = run("verify_audit_log")

    assert output == f"Audit log OK: 3 events, chain intact (head {events[-1].hash[:12]})\n"


def test_verify_audit_log_on_an_empty_log_is_ok():
    assert run("verify_audit_log") == "Audit log OK: 0 events, chain intact (head empty)\n"


def test_verify_audit_log_names_the_first_broken_link_and_exits_1(tamper):
    events = AuditEventFactory.create_batch(4, action="request.approved")
    tamper("UPDATE {table} SET reason = %s WHERE seq IN (2, 3)", ["edited"])

    with pytest.raises(CommandError) as failure:
        run("verify_audit_log")

    assert failure.value.returncode == 1
    assert str(failure.value) == (
        f"Audit log BROKEN at seq 2 (id {events[1].pk}, request.approved): "
        "stored hash does not match its contents (row edited). 1 event before it is intact."
    )


def test_verify_audit_log_names_the_first_event_it_has_no_key_for(settings):
    settings.AIRLOCK_AUDIT_KEYS = [OLDER_AUDIT_KEY]
    event = AuditEventFactory(action="request.approved")
    settings.AIRLOCK_AUDIT_KEYS = [AUDIT_KEY]

    with pytest.raises(CommandError) as failure:
        run("verify_audit_log")

    assert failure.value.returncode == 1
    assert str(failure.value) == (
        f"Audit log BROKEN at seq 1 (id {event.pk}, request.approved): chained under audit "
        f"key {event.key_id}, which AIRLOCK_AUDIT_KEYS does not hold (wrong or missing key). "
        "0 events before it are intact."
    )


def test_verify_audit_log_says_how_many_events_are_from_before_the_key():
    unkeyed_events(2)
    newest = AuditEventFactory()

    assert run("verify_audit_log") == (
        f"Audit log OK: 3 events, chain intact (head {newest.hash[:12]}); "
        "unkeyed, from before the chain had a key: seq 1 to 2\n"
    )


def test_verify_audit_log_reports_deleted_newest_events(tamper):
    AuditEventFactory.create_batch(4)
    tamper("DELETE FROM {table} WHERE seq = 4")

    with pytest.raises(CommandError, match="BROKEN at the end of the log: the log ends at seq 3"):
        run("verify_audit_log")


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def test_export_writes_one_json_line_per_event_oldest_first():
    events = AuditEventFactory.create_batch(3, detail={"before": {"reviewers": []}})

    exported = lines(run("export_audit_log"))

    assert [line["seq"] for line in exported] == [1, 2, 3]
    assert exported[0] == {
        "id": events[0].pk,
        "seq": 1,
        "created_at": events[0].created_at.isoformat(timespec="microseconds"),
        "actor_id": None,
        "actor_label": "system",
        "action": "request.created",
        "target_type": "requests_app.accessrequest",
        "target_id": events[0].target_id,
        "target_repr": events[0].target_repr,
        "reason": "ship the hotfix",
        "detail": {"before": {"reviewers": []}},
        "prev_hash": "",
        "key_id": events[0].key_id,
        "hash": events[0].hash,
    }
    assert exported[1]["prev_hash"] == exported[0]["hash"]


def test_each_exported_line_can_be_checked_on_its_own_with_the_key(settings):
    settings.AIRLOCK_AUDIT_KEYS = [AUDIT_KEY]
    AuditEventFactory(detail={"note": "Zoë 🚀", "count": 3})
    AuditEventFactory()

    for line in lines(run("export_audit_log")):
        claimed = line.pop("hash")
        line.pop("id")
        assert line.pop("key_id")
        canonical = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        mac = hmac.new(AUDIT_KEY.encode(), canonical.encode(), hashlib.sha256)
        assert mac.hexdigest() == claimed


def test_an_exported_unkeyed_line_is_checked_with_plain_sha256():
    unkeyed_events(1)

    (line,) = lines(run("export_audit_log"))

    claimed = line.pop("hash")
    line.pop("id")
    assert line.pop("key_id") == ""
    canonical = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    assert hashlib.sha256(canonical.encode()).hexdigest() == claimed


def test_export_filters_by_action_and_by_action_family():
    AuditEventFactory(action="request.created")
    AuditEventFactory(action="request.approved")
    AuditEventFactory(action="grant.applied")

    exact = lines(run("export_audit_log", "--action", "request.approved"))
    family = lines(run("export_audit_log", "--action", "request.*"))

    assert [line["action"] for line in exact] == ["request.approved"]
    assert [line["action"] for line in family] == ["request.created", "request.approved"]


def test_export_since_keeps_events_at_or_after_that_time():
    AuditEventFactory(action="request.created")
    later = AuditEventFactory(action="request.approved")

    exported = lines(run("export_audit_log", "--since", later.created_at.isoformat()))
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()

    assert [line["action"] for line in exported] == ["request.approved"]
    assert run("export_audit_log", "--since", tomorrow) == ""


def test_export_refuses_a_since_that_is_not_a_time():
    with pytest.raises(CommandError, match="--since must be an ISO 8601"):
        run("export_audit_log", "--since", "last tuesday")
    with pytest.raises(CommandError, match="--since must be an ISO 8601"):
        run("export_audit_log", "--since", "2025-13-45")


def test_export_to_a_file(tmp_path):
    AuditEventFactory.create_batch(2)
    target = tmp_path / "audit.jsonl"

    output = run("export_audit_log", "--output", str(target))

    assert output == f"Wrote 2 audit events to {target}\n"
    exported = lines(target.read_text(encoding="utf-8"))
    assert exported == [event_record(event) for event in AuditEvent.objects.all()]
