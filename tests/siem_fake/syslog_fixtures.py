"""Pytest fixtures for the local syslog receiver (tests/siem_fake/syslog_receiver.py),
registered for the whole suite in tests/conftest.py."""

import ssl

import pytest

from tests.siem_fake.certs import TestCA
from tests.siem_fake.syslog_receiver import SyslogReceiver


@pytest.fixture
def syslog_receiver(settings):
    """A plain-TCP receiver on a free loopback port, with AIRLOCK_AUDIT_SYSLOG_URL pointed at
    it. Read receiver.frames (each SYSLOG-MSG as bytes); inject receiver.stop()/start(),
    drop_after(k), reset(), stall(reading=...); receiver.recover() clears faults."""
    receiver = SyslogReceiver().start()
    settings.AIRLOCK_AUDIT_SYSLOG_URL = receiver.url()
    settings.AIRLOCK_AUDIT_SYSLOG_CA_FILE = ""
    yield receiver
    receiver.stop()


@pytest.fixture
def syslog_ca(tmp_path):
    """A private CA made for this test; syslog_ca.cert_file is what a client trusts."""
    return TestCA(tmp_path)


@pytest.fixture
def tls_syslog_receiver(settings, syslog_ca):
    """A TLS receiver presenting a certificate for localhost and 127.0.0.1 issued by
    syslog_ca, with AIRLOCK_AUDIT_SYSLOG_URL (tls://localhost:port) and
    AIRLOCK_AUDIT_SYSLOG_CA_FILE set to reach and trust it."""
    receiver = SyslogReceiver(tls_context=server_context(syslog_ca.issue())).start()
    settings.AIRLOCK_AUDIT_SYSLOG_URL = receiver.url("localhost")
    settings.AIRLOCK_AUDIT_SYSLOG_CA_FILE = str(syslog_ca.cert_file)
    yield receiver
    receiver.stop()


def server_context(issued) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(issued.cert_file, issued.key_file)
    return context
