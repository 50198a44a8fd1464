"""The code's shape that issue 13 set: no module past about 600 lines, and the import-linter
contracts that keep the layers in one direction hold."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from audit.actions import AuditAction

ROOT = Path(__file__).resolve().parents[2]
CODE = ["core", "integrations", "audit", "requests_app", "grants", "portal", "benchmarks",
        "action", "scripts", "deploy"]
MAX_MODULE_LINES = 600


def test_no_module_outside_migrations_and_tests_is_longer_than_600_lines():
    long_modules = {
        str(path.relative_to(ROOT)): lines
        for folder in CODE
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts
        and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long_modules == {}


def test_the_layering_contracts_hold():
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.skip("import-linter is not installed (make venv installs it)")
    result = subprocess.run(
        [lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 broken" in result.stdout


FREE_ACTION = re.compile(r"""\baction\s*(?:=|==)\s*f?["'][a-z_{}.]+["']""")


def test_audit_actions_are_named_once_in_audit_actions_not_written_as_free_strings():
    free = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ["core", "integrations", "audit", "requests_app", "grants", "portal"]
        for path in (ROOT / folder).rglob("*.py")
        if "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FREE_ACTION.search(line) and "store_true" not in line
    ]
    assert free == []
    # An Enum quietly makes a repeated value an alias of the first name.
    assert len(AuditAction.__members__) == len(AuditAction.values)
