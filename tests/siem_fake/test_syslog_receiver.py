"""The local syslog receiver itself, driven with raw sockets (not the sink under test): it
splits octet-counted frames exactly, confirms by closing after the sender does, and its
faults look on the wire as a real receiver's do."""

import errno
import socket
import ssl

import pytest

from tests.siem_fake.syslog_fixtures import server_context
from tests.siem_fake.syslog_receiver import SyslogReceiver, parse_octet_counted


def connect(receiver: SyslogReceiver) -> socket.socket:
    sock = socket.create_connection((receiver.host, receiver.port), timeout=5)
    return sock


def send_and_half_close(receiver: SyslogReceiver, payload: bytes) -> bytes:
    """Send, close our side, and return what came back before the receiver closed."""
    with connect(receiver) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def test_frames_are_split_by_their_octet_count_and_the_receiver_closes_after_the_sender(
    syslog_receiver,
):
    # The second message holds a space, a digit run and a newline: only the count says
    # where it ends.
    payload = b"5 hello11 two 3 four\n8 \xc3\xa9t\xc3\xa9 ok"

    answer = send_and_half_close(syslog_receiver, payload)

    assert answer == b""  # a syslog receiver never writes; its close is the only signal
    assert syslog_receiver.frames == [b"hello", b"two 3 four\n", "été ok".encode()]
    assert syslog_receiver.errors == []


@pytest.mark.parametrize("payload", [b"abc def", b"05 hello", b" 5 hello", b"5 hel"])
def test_a_stream_that_is_not_octet_counted_is_a_framing_error(syslog_receiver, payload):
    with connect(syslog_receiver) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(4096):
                pass
        except OSError:
            pass  # it resets a connection it cannot read, maybe before we finish

    assert syslog_receiver.frames == []
    assert len(syslog_receiver.errors) == 1


def test_drop_after_keeps_k_frames_and_resets_the_rest_of_the_batch(syslog_receiver):
    syslog_receiver.drop_after(2)

    # The reset reaches us while we read (ECONNRESET), or already when we half-close
    # (ENOTCONN: the receiver read the batch and reset before our shutdown), as CI saw.
    with pytest.raises(OSError) as reset:
        send_and_half_close(syslog_receiver, b"1 a1 b1 c1 d")
    assert reset.value.errno in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE), reset.value

    assert syslog_receiver.frames == [b"a", b"b"]
    # Faults are used up: the next connection is served normally.
    send_and_half_close(syslog_receiver, b"1 e")
    assert syslog_receiver.frames[-1] == b"e"


def test_reset_resets_the_connection_before_reading_anything(syslog_receiver):
    syslog_receiver.reset()

    with pytest.raises((ConnectionResetError, BrokenPipeError, OSError)):
        with connect(syslog_receiver) as sock:
            sock.settimeout(5)
            assert sock.recv(1) == b"never"  # the reset ends this read

    assert syslog_receiver.frames == []


def test_a_stalled_receiver_holds_the_connection_open_until_it_recovers(syslog_receiver):
    syslog_receiver.stall(reading=True)
    with connect(syslog_receiver) as sock:
        sock.sendall(b"1 a")
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # no close comes while it stalls
        syslog_receiver.recover()
        sock.settimeout(5)
        try:
            sock.recv(1)
        except ConnectionResetError:
            pass  # released stalls are dropped, not confirmed

    assert syslog_receiver.frames == [b"a"]


def test_a_stopped_receiver_refuses_and_starts_again_on_the_same_port(syslog_receiver):
    port = syslog_receiver.port
    syslog_receiver.stop()

    with pytest.raises(ConnectionRefusedError):
        connect(syslog_receiver)

    syslog_receiver.start()
    assert syslog_receiver.port == port
    send_and_half_close(syslog_receiver, b"2 ok")
    assert syslog_receiver.frames == [b"ok"]


def test_the_tls_receiver_reads_frames_and_answers_close_notify(syslog_ca):
    receiver = SyslogReceiver(tls_context=server_context(syslog_ca.issue())).start()
    try:
        context = ssl.create_default_context(cafile=str(syslog_ca.cert_file))
        with context.wrap_socket(connect(receiver), server_hostname="localhost") as tls:
            tls.sendall(b"3 one3 two")
            plain = tls.unwrap()  # returns once the receiver's close_notify came back
            plain.close()
        assert receiver.frames == [b"one", b"two"]
    finally:
        receiver.stop()


def test_parse_octet_counted_splits_a_recorded_stream():
    assert parse_octet_counted(b"3 abc1  2 \n\n") == [b"abc", b" ", b"\n\n"]
