"""Review of issue 15 (failing test): the logs' redaction by shape misses GitHub's current
installation token format.

Since April 2026 GitHub mints installation tokens as `ghs_<APPID>_<JWT>` (about 520
characters, two dots; docs.github.com "Generating an installation access token for a
GitHub App", and the changelog of 2026-05-15 on X-GitHub-Stateless-S2S-Token). The shape
`gh[pousr]_[A-Za-z0-9]{20,}` needs 20 letters or digits after the prefix, and the JWT
shape needs a word boundary before `eyJ`, which `_` is not: such a token is logged as is.
A minted token is the credential the logs' masking is the backstop for."""

import logging

from portal.logging import redact_text

STATELESS_INSTALLATION_TOKEN = (
    "ghs_4242_"
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJpbnN0YWxsYXRpb25faWQiOjQyLCJhcHBfaWQiOjQyNDIsImV4cCI6MTc5MDAwMDAwMH0"
    ".c2lnbmF0dXJlLWJ5dGVzLWhlcmUtc2lnbmF0dXJlLWJ5dGVz"
)


def test_a_stateless_installation_token_is_masked_in_text():
    masked = redact_text(f"revoking {STATELESS_INSTALLATION_TOKEN} failed")

    assert "eyJpbnN0YWxsYXRpb25faWQi" not in masked, masked


def test_a_stateless_installation_token_is_masked_in_a_log_line(capture_logs):
    logs = capture_logs()

    logging.getLogger("integrations.github.client").info(
        "GitHub answered %s", {"token": "x", "value": STATELESS_INSTALLATION_TOKEN}
    )

    assert "eyJpbnN0YWxsYXRpb25faWQi" not in logs.text, logs.text
