"""Keys of the check's entries in Django's cache (who started a run attempt, what was audited)."""

import hashlib


def check_mark(*parts) -> str:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return f"airlock:grant-check:{digest}"
