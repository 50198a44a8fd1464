"""The syslog sink (integrations/siem/syslog.py) against the local syslog receiver
(tests/siem_fake): what it sends is read back with a third-party RFC 5424 parser
(syslog-rfc5424-parser), over TCP and verified TLS, and every receiver fault ends in
SinkError, after which sending the batch again delivers all of it, in order."""

import json
import re
import socket
import ssl

import pytest
from syslog_rfc5424_parser import SyslogMessage
from syslog_rfc5424_parser.constants import SyslogFacility, SyslogSeverity

from audit.export import event_record
from audit.keys import audit_keyring
from audit.models import AuditEvent, chain_hash
from integrations.siem import SinkError
from integrations.siem.syslog import SD_ID, SyslogSink, structured_data
from tests.audit.factories import AuditEventFactory
from tests.siem_fake.certs import TestCA
from tests.siem_fake.syslog_fixtures import server_context
from tests.siem_fake.syslog_receiver import SyslogReceiver

BOM = "\ufeff"
HOSTNAME = "airlock-1.example.org"


def record(seq: int, **fields) -> dict:
    """An event record shaped as audit.export.event_record makes it."""
    return {
        "id": 100 + seq,
        "seq": seq,
        "created_at": f"2026-12-01T19:{seq % 60:02d}:07.{seq:06d}+00:00",
        "actor_id": 7,
        "actor_label": "alice",
        "action": "request.approved",
        "target_type": "requests_app.accessrequest",
        "target_id": str(seq),
        "target_repr": f"request #{seq}",
        "reason": "ship the hotfix",
        "detail": {"environment": "production"},
        "prev_hash": f"{seq - 1:064x}",
        "key_id": "k1",
        "hash": f"{seq:064x}",
        **fields,
    }


def sd_unescape(value: str) -> str:
    # The parser hands PARAM-VALUEs back as written; RFC 5424 section 6.3.3's escapes
    # are undone here.
    return re.sub(r'\\([\\"\]])', r"\1", value)


def parsed(frame: bytes) -> SyslogMessage:
    return SyslogMessage.parse(frame.decode("utf-8"))


def received_records(receiver: SyslogReceiver) -> list[dict]:
    assert not receiver.errors
    return receiver.records()  # each MSG must be the BOM and then JSON


def sink_for(receiver: SyslogReceiver, timeout: float = 5, **kwargs) -> SyslogSink:
    return SyslogSink(receiver.url(), timeout=timeout, hostname=HOSTNAME, **kwargs)


# --- the messages -------------------------------------------------------------------------


def test_each_event_arrives_as_one_rfc5424_message_carrying_every_field(syslog_receiver):
    batch = [record(1), record(2, action="grant.revoked"), record(3)]

    sink_for(syslog_receiver).send(batch)

    assert len(syslog_receiver.frames) == 3
    for sent, frame in zip(batch, syslog_receiver.frames, strict=True):
        message = parsed(frame)
        assert message.facility == SyslogFacility.authpriv
        assert message.severity == SyslogSeverity.notice
        assert message.version == 1
        seconds, micros = sent["created_at"][:19], sent["created_at"][20:26]
        assert message.timestamp == f"{seconds}.{micros}Z"
        assert message.hostname == HOSTNAME
        assert message.appname == "airlock"
        assert message.procid is None
        assert message.msgid == sent["action"]
        assert message.sd == {
            SD_ID: {
                "seq": str(sent["seq"]),
                "hash": sent["hash"],
                "prev_hash": sent["prev_hash"],
            }
        }
        assert message.msg.startswith(BOM)
        assert json.loads(message.msg[len(BOM) :]) == sent
    assert syslog_receiver.connections == 1  # the batch went over one connection


def test_the_frame_length_counts_octets_of_utf8_text(syslog_receiver):
    sink_for(syslog_receiver).send([record(1, reason="größer → 日本語")])

    (frame,) = syslog_receiver.frames
    assert json.loads(frame.decode("utf-8").split(BOM, 1)[1])["reason"] == "größer → 日本語"


@pytest.mark.django_db
def test_real_audit_events_arrive_with_their_chain_verifiable_from_what_was_received(
    syslog_receiver,
):
    for number in range(4):
        AuditEventFactory(action="request.created", reason=f"reason {number}")
    events = list(AuditEvent.objects.order_by("seq"))

    sink_for(syslog_receiver).send([event_record(event) for event in events])

    received = received_records(syslog_receiver)
    assert received == [event_record(event) for event in events]
    keyring = audit_keyring()
    for earlier, later in zip(received, received[1:], strict=False):
        assert later["prev_hash"] == earlier["hash"]
    for rec in received:
        fields = {k: v for k, v in rec.items() if k not in ("id", "key_id", "hash")}
        key = keyring.get(rec["key_id"]) if rec["key_id"] else None
        assert chain_hash(fields, key) == rec["hash"]


def test_hostname_defaults_to_this_machines_fqdn(syslog_receiver):
    SyslogSink(syslog_receiver.url(), timeout=5).send([record(1)])

    assert parsed(syslog_receiver.frames[0]).hostname == socket.getfqdn()


@pytest.mark.parametrize("hostname", ["", "host name", "hôte", "h" * 256])
def test_a_hostname_that_is_not_printable_ascii_up_to_255_is_sent_as_nil(
    syslog_receiver, hostname
):
    SyslogSink(syslog_receiver.url(), timeout=5, hostname=hostname).send([record(1)])

    assert parsed(syslog_receiver.frames[0]).hostname == "-"


@pytest.mark.parametrize("action", ["x" * 33, "request approved", "demande.approuvée", ""])
def test_an_action_unfit_for_msgid_is_sent_as_nil_and_kept_in_msg(syslog_receiver, action):
    sink_for(syslog_receiver).send([record(1, action=action)])

    (received,) = received_records(syslog_receiver)
    assert parsed(syslog_receiver.frames[0]).msgid is None
    assert received["action"] == action


def test_an_unreadable_created_at_is_sent_as_nil_timestamp(syslog_receiver):
    sink_for(syslog_receiver).send([record(1, created_at="yesterday")])

    assert parsed(syslog_receiver.frames[0]).timestamp == "-"
    assert received_records(syslog_receiver)[0]["created_at"] == "yesterday"


HOSTILE = [
    "line one\nline two\r\n<85>1 2026-01-01T00:00:00Z evil airlock - forged - {}",
    'close ] bracket " quote \\ backslash',
    '12 <85>1 - - - - - - 99 [x@1 a="b"]',
    "nul \x00 bell \x07 and a BOM \ufeff inside",
    "ünïcødé 🚀 مرحبا",
    "lone surrogate \udc80 from a bad client",
    "long " + "reason " * 20000,  # ~140 kB, far past any receiver's default maximum
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_in_an_event_breaks_neither_framing_nor_header(syslog_receiver, text):
    batch = [
        record(1),
        record(2, reason=text, actor_label=text, target_repr=text, detail={text: [text]}),
        record(3),
    ]

    sink_for(syslog_receiver).send(batch)

    assert received_records(syslog_receiver) == batch
    messages = [parsed(frame) for frame in syslog_receiver.frames]
    assert [m.sd[SD_ID]["seq"] for m in messages] == ["1", "2", "3"]
    assert all(m.hostname == HOSTNAME and m.msgid == "request.approved" for m in messages)


def test_quotes_backslashes_and_brackets_in_structured_data_are_escaped(syslog_receiver):
    # seq, hash and prev_hash are digits and hex in real events; this proves the escaping
    # holds should one ever carry anything else.
    hostile = 'ab\\c"] [evil@1 forged="yes'
    sink_for(syslog_receiver).send([record(1, hash=hostile, prev_hash="]")])

    message = parsed(syslog_receiver.frames[0])
    assert set(message.sd) == {SD_ID}
    assert sd_unescape(message.sd[SD_ID]["hash"]) == hostile
    assert sd_unescape(message.sd[SD_ID]["prev_hash"]) == "]"


def test_a_backslash_ending_a_param_value_is_escaped_before_the_closing_quote():
    # Checked on the bytes: syslog-rfc5424-parser 0.3.2 (its lark grammar) misreads an
    # escaped backslash just before the closing quote, a bug of the reader, not the format.
    assert structured_data({"seq": 1, "hash": "yes\\", "prev_hash": None}) == (
        f'[{SD_ID} seq="1" hash="yes\\\\"]'
    )


def test_an_empty_batch_opens_no_connection(syslog_receiver):
    sink_for(syslog_receiver).send([])

    assert syslog_receiver.connections == 0


# --- TLS ----------------------------------------------------------------------------------


def test_tls_delivers_to_a_receiver_whose_certificate_and_name_check_out(
    tls_syslog_receiver, settings
):
    sink = SyslogSink(
        settings.AIRLOCK_AUDIT_SYSLOG_URL,
        ca_file=settings.AIRLOCK_AUDIT_SYSLOG_CA_FILE,
        timeout=5,
        hostname=HOSTNAME,
    )
    batch = [record(seq) for seq in range(1, 6)]

    sink.send(batch)

    assert received_records(tls_syslog_receiver) == batch
    assert sink.target == settings.AIRLOCK_AUDIT_SYSLOG_URL


def test_tls_accepts_a_receiver_that_closes_without_answering_close_notify(
    tls_syslog_receiver, syslog_ca
):
    tls_syslog_receiver.answers_close_notify = False

    SyslogSink(
        tls_syslog_receiver.url("localhost"), ca_file=str(syslog_ca.cert_file), timeout=5
    ).send([record(1), record(2)])

    assert [r["seq"] for r in received_records(tls_syslog_receiver)] == [1, 2]


def test_tls_refuses_a_certificate_the_system_cas_do_not_trust(tls_syslog_receiver):
    sink = SyslogSink(tls_syslog_receiver.url("localhost"), timeout=5)

    with pytest.raises(SinkError, match="TLS certificate refused") as refused:
        sink.send([record(1)])

    assert f"localhost:{tls_syslog_receiver.port}" in str(refused.value)
    assert tls_syslog_receiver.frames == []


def test_tls_refuses_a_certificate_from_another_ca(tls_syslog_receiver, tmp_path):
    other = TestCA(tmp_path, name="Other CA")
    sink = SyslogSink(
        tls_syslog_receiver.url("localhost"), ca_file=str(other.cert_file), timeout=5
    )

    with pytest.raises(SinkError, match="TLS certificate refused"):
        sink.send([record(1)])
    assert tls_syslog_receiver.frames == []


def test_tls_refuses_a_certificate_for_another_name(syslog_ca):
    receiver = SyslogReceiver(
        tls_context=server_context(syslog_ca.issue(dns_names=("siem.example.org",), ips=()))
    ).start()
    try:
        sink = SyslogSink(receiver.url("localhost"), ca_file=str(syslog_ca.cert_file), timeout=5)
        with pytest.raises(SinkError, match="TLS certificate refused.*[Hh]ostname mismatch"):
            sink.send([record(1)])
        assert receiver.frames == []
    finally:
        receiver.stop()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_refuses_a_receiver_that_offers_only_tls_1_1(syslog_ca):
    context = server_context(syslog_ca.issue())
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # the receiver is willing: only we refuse
    receiver = SyslogReceiver(tls_context=context).start()
    try:
        sink = SyslogSink(receiver.url("localhost"), ca_file=str(syslog_ca.cert_file), timeout=5)
        with pytest.raises(SinkError, match="TLS failed"):
            sink.send([record(1)])
        assert receiver.frames == []
    finally:
        receiver.stop()


# --- faults: each is a SinkError, and sending again delivers everything ------------------


def stop_listening(receiver):
    receiver.stop()


def restart(receiver):
    receiver.start()


FAULTS = {
    "refused": (stop_listening, "connection refused"),
    "dropped mid-batch": (lambda r: r.drop_after(2), "connection reset"),
    "reset on accept": (lambda r: r.reset(), "connection reset"),
    "stalled, reading nothing": (lambda r: r.stall(), "timed out after 1s"),
    "read all, never closed": (lambda r: r.stall(reading=True), "timed out after 1s"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_receiver_fault_is_a_sink_error_and_a_resend_delivers_everything_in_order(
    fault, transport, syslog_ca
):
    context = server_context(syslog_ca.issue()) if transport == "tls" else None
    receiver = SyslogReceiver(tls_context=context).start()
    try:
        sink = SyslogSink(
            receiver.url("localhost" if context else None),
            ca_file=str(syslog_ca.cert_file),
            timeout=1,
            hostname=HOSTNAME,
        )
        batch = [record(seq, reason=f"event {seq}") for seq in range(1, 9)]
        inject, says = FAULTS[fault]
        inject(receiver)

        with pytest.raises(SinkError, match=says) as failed:
            sink.send(batch)
        assert f":{receiver.port}" in str(failed.value)

        receiver.recover()
        if fault == "refused":
            restart(receiver)
        sink.send(batch)

        received = received_records(receiver)
        # At least once: what the faulty connection read may arrive twice; dropping
        # duplicates by seq, as a receiver does, leaves the batch exactly, in order.
        assert received[-len(batch) :] == batch
        assert receiver.unique_records() == batch
    finally:
        receiver.stop()


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["udp://127.0.0.1:514", "tcp://127.0.0.1", "tls://:6514", "tcp://host:99999"]
)
def test_a_url_that_is_not_tcp_or_tls_host_port_is_refused_naming_the_setting(url):
    with pytest.raises(ValueError, match="AIRLOCK_AUDIT_SYSLOG_URL"):
        SyslogSink(url)


def test_the_target_shows_scheme_host_and_port_only():
    assert SyslogSink("tcp://ops@siem.example.org:514").target == "tcp://siem.example.org:514"
    assert SyslogSink("tcp://[::1]:514").target == "tcp://[::1]:514"
    assert SyslogSink("tcp://siem.example.org:514").name == "syslog"


def test_a_ca_file_that_is_not_a_ca_bundle_is_refused_naming_the_setting(tmp_path):
    not_a_bundle = tmp_path / "ca.pem"
    not_a_bundle.write_text("not a certificate")

    with pytest.raises(ValueError, match="AIRLOCK_AUDIT_SYSLOG_CA_FILE"):
        SyslogSink("tls://siem.example.org:6514", ca_file=str(not_a_bundle))
