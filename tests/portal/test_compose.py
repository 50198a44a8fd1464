"""docker-compose.yml, the Dockerfile and .env.example, checked without a Docker engine:
the compose file against the Compose Specification's schema, and every process started
through deploy/start, every setting documented."""

import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft7Validator

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"  # provenance: data/README.md
APP_ROLES = ("web", "worker", "beat")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def env_example_names() -> set[str]:
    """Variables .env.example documents, set or commented out with their default."""
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


ENV_READERS = {"env_str", "env_bool", "env_int", "env_list", "env_url", "getenv", "get"}


def env_names_read_by(path: Path) -> set[str]:
    """Names passed as a literal first argument to core.env's helpers, os.getenv or
    os.environ.get in a Python file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name == "get" and not (
            isinstance(func, ast.Attribute) and ast.unparse(func.value) == "os.environ"
        ):
            continue
        first = node.args[0]
        if name in ENV_READERS and isinstance(first, ast.Constant) and isinstance(
            first.value, str
        ):
            names.add(first.value)
    return names


def settings_sources() -> list[Path]:
    # Everything that configures the running portal; test settings are not a deployment's.
    portal = [p for p in (ROOT / "portal").glob("*.py") if p.name != "test_settings.py"]
    return portal + [ROOT / "deploy" / "gunicorn.conf.py"]


def test_compose_file_is_valid_against_the_compose_specification_schema(compose):
    validator = Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_schema_refuses_a_misspelt_key_so_the_validation_means_something(compose):
    validator = Draft7Validator(json.loads(SCHEMA.read_text()))
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["helthcheck"] = broken["services"]["web"].pop("healthcheck")
    assert not validator.is_valid(broken)


def test_each_app_service_runs_deploy_start_with_its_role(compose):
    for role in APP_ROLES:
        assert compose["services"][role]["command"] == ["deploy/start", role]


def test_the_image_defaults_to_the_web_role_through_deploy_start():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["deploy/start", "web"]' in dockerfile


def test_app_services_share_one_image_and_take_every_setting_from_dot_env(compose):
    images = {compose["services"][role]["image"] for role in APP_ROLES}
    assert len(images) == 1
    for role in APP_ROLES:
        service = compose["services"][role]
        assert service["env_file"] == ".env"
        assert "environment" not in service, "settings belong in .env, not the compose file"
        assert service["restart"] == "unless-stopped"


def test_every_service_has_a_health_check_and_app_ones_use_deploy_start(compose):
    for name, service in compose["services"].items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for role in APP_ROLES:
        test = compose["services"][role]["healthcheck"]["test"]
        assert test == ["CMD", "deploy/start", "healthcheck", role]


def test_app_services_wait_for_healthy_database_and_broker_and_for_migrations(compose):
    for role in APP_ROLES:
        depends_on = compose["services"][role]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["redis"]["condition"] == "service_healthy"
    # web migrates on start, so worker and beat wait for it to be healthy.
    for role in ("worker", "beat"):
        assert compose["services"][role]["depends_on"]["web"]["condition"] == "service_healthy"


def test_compose_runs_exactly_one_beat(compose):
    assert compose["services"]["beat"]["deploy"]["replicas"] == 1


def test_postgres_16_keeps_its_data_in_a_named_volume_and_redis_is_7(compose):
    postgres = compose["services"]["postgres"]
    assert postgres["image"] == "postgres:16"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    assert compose["services"]["redis"]["image"] == "redis:7"


def test_dockerfile_builds_a_non_root_python_311_image_with_static_files():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert "collectstatic --no-input" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".env", ".venv", ".git", "data/*"):
        assert entry in ignored


def test_every_variable_the_settings_read_is_in_env_example():
    read = set().union(*(env_names_read_by(path) for path in settings_sources()))
    assert {"SECRET_KEY", "DATABASE_URL", "LOG_FORMAT", "AIRLOCK_BIND"} <= read  # the parse works
    missing = read - env_example_names()
    assert not missing, f".env.example does not document: {sorted(missing)}"


def test_every_variable_compose_and_deploy_start_substitute_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text() + (ROOT / "deploy" / "start").read_text()
    substituted = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text)) - {"PYTHON"}
    assert {"POSTGRES_PASSWORD", "AIRLOCK_PUBLISH", "LOG_LEVEL"} <= substituted
    missing = substituted - env_example_names() - {"DJANGO_SETTINGS_MODULE"}
    assert not missing, f".env.example does not document: {sorted(missing)}"


def test_every_variable_in_the_readme_configuration_table_is_in_env_example():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {
        name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    }
    assert "DATABASE_URL" in documented
    missing = documented - env_example_names()
    assert not missing, f".env.example does not document: {sorted(missing)}"


def test_env_example_database_url_matches_the_postgres_service_credentials():
    values = dict(
        re.findall(r"^([A-Z][A-Z0-9_]*)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    )
    expected = (
        f"postgres://{values['POSTGRES_USER']}:{values['POSTGRES_PASSWORD']}"
        f"@postgres:5432/{values['POSTGRES_DB']}"
    )
    assert values["DATABASE_URL"] == expected
    assert values["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
    # Web processes count brute-force failures and API rates together, on the same Redis.
    assert values["CACHE_URL"].startswith("redis://redis:6379/")
    assert values["CACHE_URL"] != values["CELERY_BROKER_URL"]


def test_deploy_start_is_a_valid_posix_shell_script_and_refuses_unknown_roles():
    script = ROOT / "deploy" / "start"
    assert script.stat().st_mode & 0o111, "deploy/start must be executable"
    subprocess.run(["sh", "-n", str(script)], check=True)
    refused = subprocess.run(
        ["sh", str(script), "webb"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 64
    assert "usage: deploy/start" in refused.stderr
