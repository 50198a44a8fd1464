"""The code's shape that issue 13 set: no module past about 600 lines, and the import-linter
contracts that keep the layers in one direction hold."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
