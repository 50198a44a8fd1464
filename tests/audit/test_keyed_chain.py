"""The chain is keyed (AIRLOCK_AUDIT_KEYS): write access to the database is not enough to
write a log that verifies. Keys rotate, and events from before the key still verify."""

import json

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from audit.export import event_record
from audit.keys import audit_keyring
from audit.models import GENESIS_HASH, AuditChainHead, AuditEvent
from audit.verification import verify_chain
from tests.audit.conftest import AUDIT_KEY, OLDER_AUDIT_KEY
from tests.audit.factories import AuditEventFactory, sha256_link, unkeyed_events

pytestmark = pytest.mark.django_db


def rewrite_from_scratch(tamper, *, keep_key_ids: bool) -> None:
    """What someone with write access to the database but without the key can do: empty
    the table, then write the log they would rather have, each link a plain sha256, and
    the chain head to match. keep_key_ids copies the key id each event had; otherwise
    the events are written as unkeyed ones from before the chain had a key."""
    events = list(AuditEvent.objects.all())
    tamper("DELETE FROM {table}")
    prev_hash = GENESIS_HASH
    for event in events:
        if event.action == "request.approved":
            event.reason = "approved by the change board"
        if not keep_key_ids:
            event.key_id = ""
        event.prev_hash = prev_hash
        event.hash = sha256_link(event.chained_fields())
        event._state.adding = True
        event.save(force_insert=True)
        prev_hash = event.hash
    AuditChainHead.objects.update(seq=events[-1].seq, hash=prev_hash)


@pytest.mark.parametrize("keep_key_ids", [True, False], ids=["key-ids-kept", "unkeyed"])
def test_a_log_rewritten_from_scratch_without_the_key_fails_verification(tamper, keep_key_ids):
    AuditEventFactory(action="request.created")
    AuditEventFactory(action="request.approved", reason="approved my own request at 3am")
    AuditEventFactory(action="grant.applied")

    rewrite_from_scratch(tamper, keep_key_ids=keep_key_ids)

    assert AuditEvent.objects.get(action="request.approved").reason == (
        "approved by the change board"
    )
    result = verify_chain()
    assert not result.ok
    if keep_key_ids:
        assert result.first_broken.seq == 1
        assert result.checked == 0
        assert "row edited" in result.problem
    else:
        assert result.first_broken is None
        assert result.problem == (
            "no keyed event follows the unkeyed seq 1 to 3 to vouch for it: "
            "written without the key"
        )


def test_new_events_are_chained_under_the_newest_key_and_its_id_not_the_key(settings):
    settings.AIRLOCK_AUDIT_KEYS = [AUDIT_KEY, OLDER_AUDIT_KEY]

    event = AuditEventFactory()

    assert event.key_id == audit_keyring().signing.id
    assert 0 < len(event.key_id) <= 16
    stored = json.dumps(event_record(AuditEvent.objects.get()))
    assert AUDIT_KEY not in stored and AUDIT_KEY[:16] not in stored
    assert verify_chain().ok


def test_after_a_key_rotation_events_under_the_older_key_still_verify(settings):
    settings.AIRLOCK_AUDIT_KEYS = [OLDER_AUDIT_KEY]
    before = AuditEventFactory.create_batch(2)
    settings.AIRLOCK_AUDIT_KEYS = [AUDIT_KEY, OLDER_AUDIT_KEY]
    after = AuditEventFactory.create_batch(2)

    assert before[0].key_id == before[1].key_id
    assert after[0].key_id == after[1].key_id != before[0].key_id
    result = verify_chain()
    assert result.ok, result.problem
    assert result.checked == 4


def test_without_the_key_verification_names_the_first_event_it_cannot_verify(settings):
    # The first event is chained under the key derived from SECRET_KEY (no
    # AIRLOCK_AUDIT_KEYS yet), which keeps verifying once keys are set.
    AuditEventFactory()
    settings.AIRLOCK_AUDIT_KEYS = [OLDER_AUDIT_KEY]
    second = AuditEventFactory()
    AuditEventFactory()
    settings.AIRLOCK_AUDIT_KEYS = [AUDIT_KEY]

    result = verify_chain()

    assert not result.ok
    assert result.first_broken.pk == second.pk
    assert result.checked == 1
    assert result.problem == (
        f"chained under audit key {second.key_id}, which AIRLOCK_AUDIT_KEYS does not hold "
        "(wrong or missing key)"
    )


def test_unkeyed_events_from_before_the_key_verify_once_a_keyed_event_follows():
    unkeyed_events(3)
    AuditEventFactory.create_batch(2)

    result = verify_chain()

    assert result.ok, result.problem
    assert result.checked == 5
    assert result.unkeyed == 3


def test_an_unkeyed_event_after_a_keyed_one_breaks_the_chain():
    AuditEventFactory()
    slipped_in = unkeyed_events(1)[0]
    AuditEventFactory()

    result = verify_chain()

    assert not result.ok
    assert result.first_broken.pk == slipped_in.pk
    assert result.problem == "unkeyed hash after keyed events (written without the key)"


def test_migrate_seals_a_log_of_unkeyed_events_with_a_keyed_one():
    unkeyed_events(3)
    assert "no keyed event follows" in verify_chain().problem

    call_command("migrate", verbosity=0)
    call_command("migrate", verbosity=0)  # a second migrate has nothing more to seal

    seal = AuditEvent.objects.get(seq=4)
    assert AuditEvent.objects.count() == 4
    assert (seal.action, seal.key_id, seal.detail) == (
        "audit.unkeyed_sealed",
        audit_keyring().signing.id,
        {"unkeyed_events": 3},
    )
    result = verify_chain()
    assert result.ok, result.problem
    assert result.unkeyed == 3


def test_an_audit_key_too_short_to_be_secret_is_refused_naming_the_variable(settings):
    settings.AIRLOCK_AUDIT_KEYS = ["hunter2"]

    with pytest.raises(ImproperlyConfigured, match="AIRLOCK_AUDIT_KEYS"):
        AuditEventFactory()
    assert not AuditEvent.objects.exists()


def warning_ids(**options) -> set[str]:
    return {message.id for message in run_checks(**options)}


def test_deploy_check_warns_while_no_audit_key_is_set(settings):
    settings.AIRLOCK_AUDIT_KEYS = []

    assert "audit.W001" in warning_ids(include_deployment_checks=True)
    assert "audit.W001" not in warning_ids()  # only `check --deploy` asks

    settings.AIRLOCK_AUDIT_KEYS = [AUDIT_KEY]
    assert "audit.W001" not in warning_ids(include_deployment_checks=True)
