"""Logs: one JSON object per line with the request and task ids, and never a secret."""

import json
import logging

import pytest

from portal.logging import redact_text, redact_tokens, request_id_var

GITHUB_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
FINE_GRAINED_TOKEN = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789AB"
INSTALLATION_TOKEN = "ghs_" + "16C7e42F292c6912E7710c838347Ae178B4a"
# GitHub's stateless installation token, minted since April 2026: ghs_<APPID>_<JWT>, about
# 520 characters (docs.github.com, "Generating an installation access token for a GitHub
# App"). The shape `gh[pousr]_[A-Za-z0-9]{20,}` stopped at its second `_`, and a JWT after
# `_` is at no word boundary: it was logged as is.
STATELESS_INSTALLATION_TOKEN = (
    "ghs_4242_"
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJpbnN0YWxsYXRpb25faWQiOjQyLCJhcHBfaWQiOjQyNDIsImV4cCI6MTc5MDAwMDAwMH0"
    ".c2lnbmF0dXJlLWJ5dGVzLWhlcmUtc2lnbmF0dXJlLWJ5dGVz"
)
JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ"
    ".eyJpc3MiOiJodHRwczovL3Rva2VuLmFjdGlvbnMiLCJyZXBvc2l0b3J5IjoiYWNtZS9hcGkifQ"
    ".c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0\n-----END RSA PRIVATE KEY-----"
)
SECRET_VALUES = [
    GITHUB_TOKEN, FINE_GRAINED_TOKEN, INSTALLATION_TOKEN, JWT, STATELESS_INSTALLATION_TOKEN,
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo",  # the private key's body
    "hunter2-correct-horse", "s3cr3t-client-value", "opaque-api-token-value",
]


def assert_no_secret(text: str):
    for secret in SECRET_VALUES:
        assert secret not in text, f"{secret[:12]}... was logged"


def test_a_log_line_is_one_json_object_with_time_level_logger_and_message(capture_logs):
    logs = capture_logs()
    logging.getLogger("grants.reconciler").info("applied %d grant(s)", 2)
    [entry] = logs.lines()
    assert entry["level"] == "INFO"
    assert entry["logger"] == "grants.reconciler"
    assert entry["message"] == "applied 2 grant(s)"
    assert entry["timestamp"].endswith("Z") and "T" in entry["timestamp"]
    assert entry["request_id"] is None


def test_extra_fields_appear_as_json_fields(capture_logs):
    logs = capture_logs()
    logging.getLogger("grants").warning(
        "GitHub refused",
        extra={"grant_id": 7, "access_request_id": 3, "github_status": 422,
               "github_outcome": "refused"},
    )
    [entry] = logs.lines()
    assert entry["grant_id"] == 7
    assert entry["access_request_id"] == 3
    assert entry["github_status"] == 422
    assert entry["github_outcome"] == "refused"


def test_tokens_in_the_message_and_its_arguments_are_masked(capture_logs):
    logs = capture_logs()
    log = logging.getLogger("integrations.github.client")
    log.info("calling GitHub with %s", GITHUB_TOKEN)
    log.info(f"fine-grained {FINE_GRAINED_TOKEN} and app {INSTALLATION_TOKEN}")
    log.info("OIDC token %s did not verify", JWT)
    log.info("App key: %s", PRIVATE_KEY)
    output = logs.text
    assert_no_secret(output)
    assert output.count("[REDACTED]") >= 5
    assert all(entry["message"] for entry in logs.lines())


def test_a_stateless_installation_token_is_masked_in_text():
    masked = redact_text(f"revoking {STATELESS_INSTALLATION_TOKEN} failed")

    assert "eyJpbnN0YWxsYXRpb25faWQi" not in masked, masked
    assert masked == "revoking [REDACTED] failed"


def test_a_stateless_installation_token_is_masked_in_a_log_line(capture_logs):
    logs = capture_logs()

    logging.getLogger("integrations.github.client").info(
        "GitHub answered %s", {"token": "x", "value": STATELESS_INSTALLATION_TOKEN}
    )

    assert "eyJpbnN0YWxsYXRpb25faWQi" not in logs.text, logs.text
    assert_no_secret(logs.text)


# Every GitHub token family, in its old shape and in a stateless one (base64url with dots
# and dashes after the prefix).
GITHUB_TOKEN_SHAPES = [
    f"{prefix}_{body}"
    for prefix in ("ghp", "gho", "ghu", "ghs", "ghr")
    for body in (
        "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
        "4242_eyJhbGciOiJSUzI1NiJ9.eyJpZCI6NDJ9.c2ln-bmF0_dXJl",
    )
] + [FINE_GRAINED_TOKEN, STATELESS_INSTALLATION_TOKEN]


@pytest.mark.parametrize("token", GITHUB_TOKEN_SHAPES, ids=lambda token: token[:8])
def test_every_github_token_shape_is_masked_whole_even_in_json_text(token):
    assert redact_text(f"got {token}, retrying") == "got [REDACTED], retrying"
    # The last pass runs on JSON text: the token goes, the quotes and escapes stay.
    line = json.dumps({"message": f"a\n{token}", "detail": [token]})
    masked = redact_tokens(line)
    assert json.loads(masked) == {"message": "a\n[REDACTED]", "detail": ["[REDACTED]"]}


def test_an_airlock_api_token_is_masked_wherever_it_appears(capture_logs):
    airlock_token = "alk_" + "Zx9_Yw8-Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa98765"
    logs = capture_logs()
    logging.getLogger("requests_app").warning("pasted into a reason: %s", airlock_token)
    assert airlock_token not in logs.text
    assert "[REDACTED]" in logs.text


def test_an_authorization_header_is_masked_whatever_its_scheme(capture_logs):
    logs = capture_logs()
    log = logging.getLogger("requests_app.api")
    log.info("headers: %s", {"Authorization": "Bearer opaque-api-token-value"})
    log.info("Authorization: token opaque-api-token-value")
    log.info("sent Bearer opaque-api-token-value")
    log.info("headers=%r", [("authorization", "Basic aHVudGVyMi1jb3JyZWN0LWhvcnNl")])
    output = logs.text
    assert_no_secret(output)
    assert "aHVudGVyMi1jb3JyZWN0LWhvcnNl" not in output


def test_values_of_sensitive_keys_are_masked_in_extra_and_in_nested_data(capture_logs):
    logs = capture_logs()
    logging.getLogger("requests_app").info(
        "secret definition saved",
        extra={
            "token": "opaque-api-token-value",
            "client_secret": "s3cr3t-client-value",
            "payload": {"password": "hunter2-correct-horse", "encrypted_value": "gAAAAB-ciphertext",
                        "items": [{"private_key": PRIVATE_KEY}]},
            "secret_name": "DEPLOY_TOKEN",
        },
    )
    [entry] = logs.lines()
    assert entry["token"] == "[REDACTED]"
    assert entry["client_secret"] == "[REDACTED]"
    assert entry["payload"]["password"] == "[REDACTED]"
    assert entry["payload"]["encrypted_value"] == "[REDACTED]"
    assert entry["payload"]["items"][0]["private_key"] == "[REDACTED]"
    # A key that names a secret is not the secret: logs keep it.
    assert entry["secret_name"] == "DEPLOY_TOKEN"
    assert_no_secret(logs.text)
    assert "gAAAAB-ciphertext" not in logs.text


def test_key_value_pairs_in_text_are_masked(capture_logs):
    logs = capture_logs()
    logging.getLogger("portal").info(
        "token=opaque-api-token-value password: hunter2-correct-horse "
        "{'client_secret': 's3cr3t-client-value'} grant_id=5"
    )
    logging.getLogger("portal").info('login with password="correct horse battery" failed')
    first, second = logs.lines()
    assert_no_secret(first["message"])
    assert "grant_id=5" in first["message"]
    assert second["message"] == 'login with password="[REDACTED]" failed'


def test_secrets_in_an_exception_and_its_traceback_are_masked(capture_logs):
    logs = capture_logs()
    try:
        raise RuntimeError(f"GitHub said 401 for {GITHUB_TOKEN} (password=hunter2-correct-horse)")
    except RuntimeError:
        logging.getLogger("grants").exception("reconcile failed")
    [entry] = logs.lines()
    assert "RuntimeError" in entry["exception"]
    assert_no_secret(logs.text)


def test_a_secret_in_an_object_only_turned_into_text_by_the_formatter_is_masked(capture_logs):
    class Credentials:
        def __str__(self):
            return f"Credentials({GITHUB_TOKEN})"

    logs = capture_logs()
    logging.getLogger("grants").info("connected", extra={"credentials_used": Credentials()})
    assert_no_secret(logs.text)


def test_a_password_in_a_url_is_masked():
    masked = redact_text("broker redis://:hunter2-correct-horse@redis:6379/0 is down")
    assert "hunter2-correct-horse" not in masked
    assert "redis://:[REDACTED]@redis:6379/0" in masked


def test_ordinary_words_are_left_alone():
    text = "Bearer token missing; the token expired; secret DEPLOY_TOKEN granted to bob"
    assert redact_text(text) == text


def test_the_text_format_is_masked_too(capture_logs):
    logs = capture_logs(log_format="text")
    logging.getLogger("grants").info(
        "token %s", GITHUB_TOKEN, extra={"authorization": "Bearer opaque-api-token-value"}
    )
    output = logs.text
    assert "grants: token [REDACTED]" in output
    assert_no_secret(output)


def test_a_logger_named_like_a_key_keeps_its_message_whole_in_the_text_format(capture_logs):
    # The text line is "time LEVEL logger: message": masking it whole read a logger whose
    # name ends in a sensitive word as a key and the message's first word as its value.
    logs = capture_logs(log_format="text")
    logging.getLogger("grants.reconciler.tokens").warning("Revoked %d minted tokens", 3)
    logging.getLogger("integrations.github.installation_tokens").info(
        "token=%s sent", "opaque-api-token-value"
    )
    output = logs.text
    assert "grants.reconciler.tokens: Revoked 3 minted tokens" in output
    assert "integrations.github.installation_tokens: token=[REDACTED] sent" in output
    assert_no_secret(output)


def test_a_token_in_a_logger_name_is_masked_in_the_text_format(capture_logs):
    logs = capture_logs(log_format="text")
    logging.getLogger(f"webhooks.{GITHUB_TOKEN}").info("received")
    assert "webhooks.[REDACTED]: received" in logs.text
    assert_no_secret(logs.text)


def test_the_current_request_id_is_on_every_line_logged_during_the_request(capture_logs):
    logs = capture_logs()
    token = request_id_var.set("req-1234")
    try:
        logging.getLogger("requests_app").info("inside")
    finally:
        request_id_var.reset(token)
    logging.getLogger("requests_app").info("outside")
    inside, outside = logs.lines()
    assert inside["request_id"] == "req-1234"
    assert outside["request_id"] is None


def test_a_celery_task_logs_its_task_id(capture_logs):
    from celery import shared_task

    @shared_task(name="tests.portal.log_something")
    def log_something():
        logging.getLogger("grants.tasks").info("sweeping")

    logs = capture_logs()
    log_something.apply(task_id="task-42")
    entries = [e for e in logs.lines() if e["message"] == "sweeping"]
    assert entries[0]["task_id"] == "task-42"
    assert entries[0]["task_name"] == "tests.portal.log_something"


def test_sql_is_not_logged_even_at_debug_level(capture_logs):
    logs = capture_logs(level="DEBUG")
    logging.getLogger("django.db.backends").debug(
        "(0.001) INSERT INTO secret (encrypted_value) VALUES ('x')"
    )
    assert logs.text == ""


def test_an_unusual_extra_value_never_breaks_the_code_that_logs(capture_logs):
    from collections import namedtuple

    Outcome = namedtuple("Outcome", "status token")
    logs = capture_logs()
    logging.getLogger("grants").info(
        "done", extra={"outcome": Outcome(201, GITHUB_TOKEN), "weird": object()}
    )
    [entry] = logs.lines()
    assert entry["outcome"] == [201, "[REDACTED]"]
    assert_no_secret(logs.text)


def test_pygithub_logs_only_through_our_masked_handler_and_never_its_debug_bodies():
    # PyGithub adds a raw stderr handler to "github" on import and logs answer bodies (a
    # minted token's among them) at DEBUG.
    import github  # noqa: F401

    pygithub = logging.getLogger("github")
    assert [h for h in pygithub.handlers if not isinstance(h, logging.NullHandler)] == []
    assert pygithub.propagate is True
    assert not pygithub.isEnabledFor(logging.DEBUG)
