"""What Airlock installs: every package its code imports is declared in pyproject.toml, and
the lock files pin each declared package, and everything it pulls in, with hashes, so that
`make` and the image install the same code a month apart."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OUR_PACKAGES = {
    "core", "integrations", "portal", "requests_app", "grants", "audit",
    "tests", "benchmarks", "action",
}
# What the portal runs (and the image ships), and what only the tests and benchmarks use.
APP_CODE = [
    "core", "integrations", "portal", "requests_app", "grants", "audit", "deploy", "scripts",
    "manage.py",
]
TEST_CODE = ["tests", "benchmarks"]


def declared(requirements: list[str]) -> dict[str, Requirement]:
    parsed = (Requirement(line) for line in requirements)
    return {canonicalize_name(req.name): req for req in parsed}


RUNTIME = declared(PYPROJECT["dependencies"])
TEST_EXTRA = declared(PYPROJECT["optional-dependencies"]["test"])


def imported_distributions(*places: str) -> dict[str, set[str]]:
    """Distribution name -> the files that import one of its modules at the top level
    (absolute imports of modules that are neither ours nor the standard library's)."""
    provided_by = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for place in places:
        path = ROOT / place
        for source in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text(), str(source))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in OUR_PACKAGES:
                        continue
                    for dist in provided_by.get(top, [f"<no installed package has {top}>"]):
                        found.setdefault(canonicalize_name(dist), set()).add(
                            str(source.relative_to(ROOT))
                        )
    return found


def test_every_package_the_portal_imports_is_declared_as_a_dependency():
    imported = imported_distributions(*APP_CODE)
    assert "django" in imported  # the scan works
    undeclared = {dist: sorted(files) for dist, files in imported.items() if dist not in RUNTIME}
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"


def test_every_package_the_tests_import_is_declared_for_them():
    imported = imported_distributions(*TEST_CODE)
    assert "pytest" in imported
    undeclared = {
        dist: sorted(files)
        for dist, files in imported.items()
        if dist not in RUNTIME and dist not in TEST_EXTRA
    }
    assert not undeclared, f"imported by tests but not declared: {undeclared}"


def read_lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """A pip-compile --generate-hashes file: name -> (pinned version, hashes)."""
    text = (ROOT / name).read_text()
    pins: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=\S)", text):
        line = block.split("\n", 1)[0]
        if not line.strip() or line.startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s*\\?$", line)
        assert match, f"{name}: not an exact pin: {line!r}"
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
        pins[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return pins


@pytest.mark.parametrize(
    ("lock", "wanted"),
    [("requirements.lock", RUNTIME), ("requirements-test.lock", {**RUNTIME, **TEST_EXTRA})],
)
def test_the_lock_pins_every_declared_package_within_its_range_with_hashes(lock, wanted):
    pins = read_lock(lock)
    for name, (version, hashes) in pins.items():
        assert hashes, f"{lock}: {name}=={version} has no hash"
    for name, requirement in wanted.items():
        assert name in pins, f"{lock} does not pin {name} (pyproject.toml: {requirement})"
        version = pins[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, outside pyproject.toml's {requirement}: "
            f"run `make lock`"
        )


def test_the_tests_run_the_versions_the_image_installs():
    runtime, test = read_lock("requirements.lock"), read_lock("requirements-test.lock")
    differ = {
        name: (pin[0], test.get(name, ("missing",))[0])
        for name, pin in runtime.items()
        if test.get(name, ("missing",))[0] != pin[0]
    }
    assert not differ, f"requirements.lock and requirements-test.lock disagree: {differ}"


def test_make_and_the_image_install_the_locks_with_hashes_required():
    makefile = (ROOT / "Makefile").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"pip install .*--require-hashes -r requirements-test\.lock", makefile)
    assert re.search(r"^RUN pip install .*--require-hashes -r requirements\.lock$", dockerfile,
                     re.MULTILINE)
    # The lock is what decides, so a changed lock reinstalls the development venv.
    assert re.search(r"^\$\(STAMP\): .*requirements-test\.lock", makefile, re.MULTILINE)
