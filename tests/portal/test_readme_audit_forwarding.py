"""The README's "Audit forwarding": its settings table is what portal/settings.py reads for
forwarding, its Splunk lines configure a sink that speaks to HEC as Splunk documents, its
commands do what it says against a real local collector, and its rsyslog example asks for
octet-counted framing and a message size that does not truncate."""

import io
import json
import re
import shlex
import subprocess
import sys

import pytest
from django.core.management import call_command

from tests.audit.factories import AuditEventFactory
from tests.newcomer import command_lines, readme_section, shell_blocks
from tests.portal.test_compose import ROOT, env_names_read_by, settings_sources

pytestmark = pytest.mark.django_db
SECTION = "## Audit forwarding"
# What a deployment runs in the web container; the test runs the same command in-process.
COMPOSE_MANAGE = "docker compose exec web python manage.py "


def section() -> str:
    return readme_section(SECTION)


def fenced(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), re.S)


def test_the_settings_table_lists_every_forwarding_setting_the_settings_read():
    read = set().union(*(env_names_read_by(path) for path in settings_sources()))
    forwarding = {
        name for name in read if re.match(r"AIRLOCK_AUDIT_(STREAM|SYSLOG|FORWARD)_", name)
    }
    rows = [line for line in section().splitlines() if line.startswith("| `")]
    listed = {re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])[0] for row in rows}

    assert "AIRLOCK_AUDIT_STREAM_AUTH_SCHEME" in forwarding  # the parse works
    assert listed == forwarding


def test_the_splunk_lines_configure_a_hec_sink_sending_the_splunk_scheme(tmp_path):
    [lines] = [block for block in fenced("ini") if "splunk-hec" in block]
    variables = dict(re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", lines, re.M))
    assert variables["AIRLOCK_AUDIT_STREAM_URL"] == (
        "https://splunk.example.com:8088/services/collector/event"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'airlock.sqlite3'}",
        **variables,
    }
    code = (
        "import json, django; django.setup(); "
        "from audit.forwarding import configured_sinks; "
        "(sink,) = configured_sinks(); "
        "print(json.dumps([sink.name, sink.target, sink.format, sink.auth_scheme, "
        "sink.body([{'created_at': '2026-01-01T00:00:00+00:00', 'seq': 1}])[1]]))"
    )

    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    name, target, body_format, scheme, content_type = json.loads(result.stdout.splitlines()[-1])
    assert (name, body_format, scheme, content_type) == (
        "http",
        "splunk-hec",
        "Splunk",
        "application/json",
    )
    assert target == variables["AIRLOCK_AUDIT_STREAM_URL"]


def test_every_command_of_the_section_is_a_forward_audit_log_run_in_the_web_container():
    commands = [
        line.split("#")[0].strip()
        for block in shell_blocks(section())
        for line in command_lines(block)
    ]
    assert commands
    assert all(c.startswith(COMPOSE_MANAGE + "forward_audit_log") for c in commands), commands


def test_the_back_fill_commands_send_again_from_the_seq_given(siem_http):
    AuditEventFactory.create_batch(1210)
    call_command("forward_audit_log", stdout=io.StringIO())
    assert len(siem_http.records()) == 1210
    sent_before = len(siem_http.records())
    outputs = []

    for block in shell_blocks(section()):
        for line in command_lines(block):
            args = shlex.split(line.split("#")[0].strip().removeprefix(COMPOSE_MANAGE))
            out = io.StringIO()
            call_command(*args, stdout=out)
            outputs.append(out.getvalue())

    again = [record["seq"] for record in siem_http.records()[sent_before:]]
    # The --from-seq run delivers from 1200 at once; the plain run finds nothing left.
    assert again[0] == 1200 and again[-1] > 1210 and again == list(range(1200, again[-1] + 1))
    assert "http: delivers from seq 1200" in outputs[0]
    assert re.search(r"cursor \d+, backlog 0", outputs[-1])


def test_the_rsyslog_example_reads_octet_counted_frames_and_raises_the_message_size():
    [config] = fenced("conf")
    assert 'module(load="imptcp")' in config
    assert 'supportOctetCountedFraming="on"' in config
    # Before any input, as rsyslog requires, and well above its 8 KiB default.
    assert config.index("maxMessageSize") < config.index("input(")
    size = re.search(r'maxMessageSize="(\d+)k"', config)
    assert size and int(size.group(1)) >= 64
