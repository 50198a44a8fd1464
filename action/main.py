#!/usr/bin/env python3
"""The Airlock Action's one step: runs the mode the `mode` input names (check, request,
release or token; inputs and outputs: docs/api.md)."""

from __future__ import annotations

import sys

import check
import release
import request
import token_mode
from runner import bad_input, run_step, text_input

MODES = {
    "check": check.main,
    "request": request.main,
    "release": release.main,
    "token": token_mode.main,
}


def refuse_mode(mode: str) -> int:
    raise bad_input("mode", f"must be one of {', '.join(MODES)}; got {mode!r}.")


def main() -> int:
    mode = text_input("mode", "check").lower()
    step = MODES.get(mode)
    return run_step(step if step is not None else lambda: refuse_mode(mode))


if __name__ == "__main__":
    sys.exit(main())
