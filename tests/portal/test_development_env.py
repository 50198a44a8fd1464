"""`make run`'s .env: written once with development settings, read by commands run beside
it, and never by a process whose environment says DEBUG, nor ever over a variable that is
set (core/env.py). The README's commands themselves are run in tests/portal/test_readme.py.
"""

import importlib.util
import os
import stat
import subprocess
from unittest import mock

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import load_development_env_file
from tests.live_processes import ROOT
from tests.newcomer import fresh_clone, newcomer_env

DEVELOPMENT_FILE = "DEBUG=true\nSECRET_KEY=from-the-file\nAIRLOCK_DATA_DIR='/tmp/dev data'\n"


@pytest.fixture
def environ():
    """os.environ as this test leaves it is undone afterwards; DEBUG and the names the files
    here set start unset."""
    with mock.patch.dict(os.environ):
        for name in ("DEBUG", "SECRET_KEY", "AIRLOCK_DATA_DIR"):
            os.environ.pop(name, None)
        yield os.environ


def test_without_debug_in_the_environment_the_development_file_fills_it_in(environ, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"# make run's\n\n{DEVELOPMENT_FILE}")

    load_development_env_file(dotenv)

    assert environ["DEBUG"] == "true"
    assert environ["SECRET_KEY"] == "from-the-file"
    assert environ["AIRLOCK_DATA_DIR"] == "/tmp/dev data"


@pytest.mark.parametrize("debug", ["false", "true", ""])
def test_a_process_whose_environment_says_debug_reads_no_file(environ, tmp_path, debug):
    dotenv = tmp_path / ".env"
    dotenv.write_text(DEVELOPMENT_FILE)
    environ["DEBUG"] = debug

    load_development_env_file(dotenv)

    assert "SECRET_KEY" not in environ
    assert environ["DEBUG"] == debug


def test_a_file_that_does_not_say_debug_true_is_not_read(environ, tmp_path):
    # compose's .env (from .env.example) lives at the same place on a host that runs it.
    dotenv = tmp_path / ".env"
    dotenv.write_text((ROOT / ".env.example").read_text())

    load_development_env_file(dotenv)

    assert "DEBUG" not in environ
    assert "SECRET_KEY" not in environ


def test_a_variable_set_in_the_environment_is_never_overridden(environ, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(DEVELOPMENT_FILE)
    environ["SECRET_KEY"] = "from-the-environment"

    load_development_env_file(dotenv)

    assert environ["SECRET_KEY"] == "from-the-environment"
    assert environ["DEBUG"] == "true"


def test_no_file_changes_nothing(environ, tmp_path):
    before = dict(environ)

    load_development_env_file(tmp_path / ".env")

    assert dict(environ) == before


def test_a_line_that_is_not_name_equals_value_is_refused_naming_file_and_line(
    environ, tmp_path
):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DEBUG=true\nexport SECRET_KEY = x\n")

    with pytest.raises(ImproperlyConfigured, match=r"\.env, line 2: expected NAME=value"):
        load_development_env_file(dotenv)
    assert "DEBUG" not in environ


def run_dev():
    spec = importlib.util.spec_from_file_location("run_dev", ROOT / "scripts" / "run_dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_run_writes_the_file_once_owner_only_and_never_overwrites_it(environ, tmp_path):
    dotenv = tmp_path / ".env"

    assert run_dev().write_development_env(dotenv) is True
    written = dotenv.read_text()
    assert stat.S_IMODE(dotenv.stat().st_mode) == 0o600
    load_development_env_file(dotenv)
    assert environ["DEBUG"] == "true"
    assert len(environ["SECRET_KEY"]) >= 50
    assert environ["AIRLOCK_SECRET_DEPLOY_TOKEN"]

    assert run_dev().write_development_env(dotenv) is False
    assert dotenv.read_text() == written


def test_each_checkout_gets_its_own_secret_key(tmp_path):
    first, second = tmp_path / "first.env", tmp_path / "second.env"
    run_dev().write_development_env(first)
    run_dev().write_development_env(second)
    assert first.read_text() != second.read_text()


def test_a_deployed_process_never_reads_a_development_file_left_in_the_checkout(tmp_path):
    clone = fresh_clone(tmp_path / "clone")
    (clone / ".env").write_text(DEVELOPMENT_FILE)
    # An operator's environment that forgot DEBUG and SECRET_KEY: deploy/start says
    # DEBUG=false itself, so the file's DEBUG=true and key must not be taken.
    env = newcomer_env(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")

    done = subprocess.run(
        ["sh", "deploy/start", "migrate"], cwd=clone, env=env, capture_output=True, text=True,
        timeout=120,
    )

    assert done.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in done.stderr


def test_the_venv_setup_gives_a_checkout_its_development_settings(tmp_path):
    # `.venv/bin/python manage.py ...` needs the .venv that `make` sets up, so setting it up
    # writes the development file too: a command typed before ever running `make run` works
    # as written (make run keeps the same file).
    clone = fresh_clone(tmp_path / "clone")
    env = newcomer_env(tmp_path, AIRLOCK_DATA_DIR=str(tmp_path / "data"))
    recipe = subprocess.run(
        ["make", "-n", "-B", "venv"], cwd=clone, env=env, capture_output=True, text=True,
        check=True,
    ).stdout
    assert ".venv/bin/python scripts/run_dev.py --env-only" in recipe.splitlines()

    subprocess.run(
        [".venv/bin/python", "scripts/run_dev.py", "--env-only"], cwd=clone, env=env,
        check=True, capture_output=True,
    )
    done = subprocess.run(
        [".venv/bin/python", "manage.py", "check"], cwd=clone, env=env, capture_output=True,
        text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "no issues" in done.stdout
