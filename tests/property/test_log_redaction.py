"""The log redaction's shortcut (portal/logging.py): text in which a search finds no hint
of a secret is given back untouched, without the substitutions. Drawn by Hypothesis from
pieces of real secrets and their near misses (case variants, `-` for `_`, the letters a
case-insensitive match takes for ASCII ones: long s, dotless i, the Kelvin sign), the
output must be what the substitutions alone give, for every text."""

from hypothesis import given, settings
from hypothesis import strategies as st

from portal.logging import (
    _KEY_VALUE,
    SENSITIVE_KEY_PARTS,
    _mask_key_value,
    _mask_tokens,
    redact_text,
    redact_tokens,
)

PIECES = [
    *SENSITIVE_KEY_PARTS,
    *(part.upper() for part in SENSITIVE_KEY_PARTS),
    *(part.replace("_", "-") for part in SENSITIVE_KEY_PARTS),
    "ghp_", "GHS_", "gho_", "github_pat_", "alk_", "ALK_", "eyJ", "EYJ", "eyj", ".",
    "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "\\n",
    "Bearer ", "bearer", "BEARER", "Basic ", "token ", "://", "https://", "user:pw@",
    "=", ": ", '"', "'", ", ", " ", "&", ";", "_", "-", "x", "A1", "0123456789abcdefghij",
    "abcdefghijklmnopqrstuvwxyz0123456789ABCD", "\u017f", "\u0131", "\u212a", "\u0130",
    "_id", "_name", "secret_name", "token_id",
    # Whole secrets, which the shapes need to match at all.
    "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "ghp_" + "a1" * 18,
    "alk_" + "Zz9" * 15, "github_pat_" + "B2" * 15, "ghs_12345_eyJhbGci.eyJzdWIi.c2ln",
]
texts = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=12).map("".join),
    st.text(max_size=80),
)


def redacted_the_long_way(text: str) -> str:
    return _KEY_VALUE.sub(_mask_key_value, _mask_tokens(text))


@settings(max_examples=3000, deadline=None)
@given(texts)
def test_the_shortcut_never_changes_what_is_masked(text):
    assert redact_text(text) == redacted_the_long_way(text)
    assert redact_tokens(text) == _mask_tokens(text)


def test_a_token_the_shortcut_would_let_through_is_masked_still():
    # The hint search runs on lower-cased text; the secrets keep their case.
    assert redact_text("Authorization=Bearer abcdefgh12345") == "Authorization=Bearer [REDACTED]"
    assert redact_text("\u017fecret-api-key=hunter2") == "\u017fecret-api-key=[REDACTED]"
    assert "ghp_" not in redact_tokens("x ghp_" + "a" * 36)
