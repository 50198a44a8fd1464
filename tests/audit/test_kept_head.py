"""A head kept outside the database (export_audit_log --head) catches a log that verifies
on its own but was rewound or rewritten since the head was kept."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditChainHead
from audit.verification import verify_chain
from tests.audit.factories import AuditEventFactory

pytestmark = pytest.mark.django_db


def run(command, *args):
    stdout = StringIO()
    call_command(command, *args, stdout=stdout)
    return stdout.getvalue()


@pytest.fixture
def kept_head(tmp_path):
    """Export the log as the hourly job would, keeping its head in a file elsewhere."""

    def keep():
        head_file = tmp_path / "audit-head"
        run("export_audit_log", "--output", str(tmp_path / "audit.jsonl"), "--head", str(head_file))
        return head_file

    return keep


def test_export_writes_the_head_of_the_log_to_keep(tmp_path):
    events = AuditEventFactory.create_batch(3)
    head_file = tmp_path / "audit-head"

    output = run(
        "export_audit_log", "--output", str(tmp_path / "a.jsonl"), "--head", str(head_file)
    )

    assert head_file.read_text() == f"3:{events[2].hash}\n"
    assert output.splitlines()[-1] == f"Wrote the log head 3:{events[2].hash} to {head_file}"


def test_a_filtered_export_still_keeps_the_head_of_the_whole_log(tmp_path):
    AuditEventFactory(action="request.created")
    newest = AuditEventFactory(action="request.approved")
    head_file = tmp_path / "audit-head"

    exported = run("export_audit_log", "--action", "request.created", "--head", str(head_file))

    assert len(exported.splitlines()) == 1  # standard output holds only the events
    assert head_file.read_text() == f"2:{newest.hash}\n"


def test_exporting_the_head_of_an_empty_log_is_refused(tmp_path):
    with pytest.raises(CommandError, match="the audit log is empty: it has no head to keep"):
        run("export_audit_log", "--head", str(tmp_path / "audit-head"))


def test_a_log_that_only_grew_holds_the_kept_head(kept_head):
    AuditEventFactory.create_batch(3)
    head_file = kept_head()
    kept = head_file.read_text().strip()
    newest = AuditEventFactory.create_batch(2)[-1]

    from_file = run("verify_audit_log", "--head", str(head_file))
    given = run("verify_audit_log", "--head", kept)

    assert from_file == given == (
        f"Audit log OK: 5 events, chain intact (head {newest.hash[:12]}), "
        "kept head at seq 3 present\n"
    )


def empty_both_tables(tamper):
    """TRUNCATE the log and its head as a table owner could (the triggers switched off);
    Airlock then carries on appending from seq 1, with its key, as for a new log."""
    tamper("DELETE FROM {table}")
    AuditChainHead.objects.all().delete()


def test_a_log_truncated_then_regrown_is_caught_as_rewritten(tamper, kept_head):
    kept = AuditEventFactory.create_batch(3)[2]
    head_file = kept_head()
    empty_both_tables(tamper)
    regrown = AuditEventFactory.create_batch(4)
    assert verify_chain().ok  # on its own the new log is a sound chain

    with pytest.raises(CommandError) as failure:
        run("verify_audit_log", "--head", str(head_file))

    assert failure.value.returncode == 1
    assert str(failure.value) == (
        f"Audit log REWRITTEN: seq 3 has hash {regrown[2].hash[:12]}, not the kept head's "
        f"{kept.hash[:12]}: the log was rewritten after that head was kept."
    )


def test_a_log_truncated_and_regrown_less_far_is_caught_as_rewound(tamper, kept_head):
    AuditEventFactory.create_batch(3)
    head_file = kept_head()
    empty_both_tables(tamper)
    AuditEventFactory()

    with pytest.raises(CommandError) as failure:
        run("verify_audit_log", "--head", str(head_file))

    assert failure.value.returncode == 1
    assert str(failure.value) == (
        "Audit log REWOUND: it ends at seq 1, before the kept head at seq 3: "
        "events were removed after that head was kept."
    )


def test_a_broken_link_is_reported_before_the_kept_head(tamper, kept_head):
    AuditEventFactory.create_batch(3)
    head_file = kept_head()
    tamper("UPDATE {table} SET reason = %s WHERE seq = 2", ["edited"])

    with pytest.raises(CommandError, match=r"BROKEN at seq 2 .*\(row edited\)"):
        run("verify_audit_log", "--head", str(head_file))


@pytest.mark.parametrize("given", ["3", "three:abc", "3:" + "z" * 64, "/no/such/head-file"])
def test_a_head_that_is_neither_seq_hash_nor_a_file_holding_it_is_refused(given):
    AuditEventFactory()

    with pytest.raises(CommandError, match="--head must be SEQ:HASH"):
        run("verify_audit_log", "--head", given)
