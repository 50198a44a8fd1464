#!/usr/bin/env python3
"""The Airlock Action's one step: runs the mode the `mode` input names (check, request or
release; inputs and outputs: docs/api.md)."""

from __future__ import annotations

import sys

import check
import release
import request
from runner import bad_input, run_step, text_input

MODES = {"check": check.main, "request": request.main, "release": release.main}


def main() -> int:
    mode = text_input("mode", "check").lower()
    if mode not in MODES:

        def unknown() -> int:
            raise bad_input(
                "mode", f"must be one of {', '.join(MODES)}; got {mode!r}."
            )

        return run_step(unknown)
    return run_step(MODES[mode])


if __name__ == "__main__":
    sys.exit(main())
