"""A newcomer's machine, for tests that follow the README: a fresh copy of the project, a
shell environment with nothing Airlock reads in it, `make run` in one terminal and the
README's commands, exactly as written, in another.

The copy holds what a fresh clone has (git's tracked files and the new ones it does not
ignore, as they are in the work tree), and its `.venv` is this test run's virtual
environment, so `make run` is run with its install step taken as done (`make -o`): the
install is what `make test` itself has just done, and it must not touch a shared venv.

Used by tests/portal/test_readme.py and tests/browser/test_readme_local_github.py.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.live_processes import ROOT, free_port, wait_until

STAMP = ".venv/.installed"  # the Makefile's install target


def readme_section(heading: str) -> str:
    """The README's text under `heading` (e.g. "## Quick start"), up to the next heading."""
    text = (ROOT / "README.md").read_text()
    assert f"\n{heading}\n" in text, f"README.md has no {heading!r}"
    body = text.split(f"\n{heading}\n", 1)[1]
    return re.split(r"\n#{1,6} ", body, maxsplit=1)[0]


def shell_blocks(section: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", section, re.DOTALL)


def command_lines(block: str) -> list[str]:
    """The commands of a shell block: one per line, comment-only and blank lines dropped;
    a line ending in a backslash continues on the next."""
    joined = re.sub(r"\\\n", " ", block)
    return [line.strip() for line in joined.splitlines() if line.split("#")[0].strip()]


def fresh_clone(folder: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # not deleted in the work tree
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)
    (folder / ".venv").symlink_to(Path(sys.prefix).resolve())
    return folder


def newcomer_env(home: Path, **values: str) -> dict:
    """A newcomer's shell: a PATH (python3.11 and make on it), a home and a locale. No DEBUG,
    no SECRET_KEY, nothing of this test run's own settings."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "LANG": "C.UTF-8", **values}


class Terminal:
    """A long-running make target in a terminal of its own (its own process group), its
    output in `<log_dir>/<name>.log`."""

    def __init__(self, clone: Path, env: dict, log_dir: Path, *make_args: str, name: str):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            ["make", "-o", STAMP, *make_args], cwd=clone, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.name} (last lines) ---\n" + "\n".join(text)

    def wait_until_answering(self, url: str, *, timeout: float = 180) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.process.returncode}):\n{self.tail(200)}")
            try:
                with urllib.request.urlopen(url, timeout=5):
                    return True
            except urllib.error.HTTPError:
                return True  # it answers, if not with 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until(f"{self.name} answering {url}", answers, timeout=timeout, interval=0.5,
                   details=lambda: self.tail(200))

    def stop(self) -> None:
        """Ctrl-C, as a person stops it: SIGINT to the terminal's whole process group; what
        is still there after 40 s is killed."""
        group = self.process.pid
        try:
            os.killpg(group, signal.SIGINT)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                self.process.poll()
                os.killpg(group, 0)  # raises once every process of the group is gone
                time.sleep(0.2)
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self._log.close()


def make_run(clone: Path, env: dict, log_dir: Path) -> tuple[Terminal, str]:
    """`make run` as the README says, on a free port (AIRLOCK_RUN_ADDRESS, make run's own
    knob: this machine may have something on 8000 already). Returns it once the portal
    answers, with the portal's URL."""
    address = f"127.0.0.1:{free_port()}"
    terminal = Terminal(clone, {**env, "AIRLOCK_RUN_ADDRESS": address}, log_dir, "run",
                        name="make-run")
    url = f"http://{address}"
    try:
        terminal.wait_until_answering(f"{url}/healthz")
    except BaseException:
        terminal.stop()
        raise
    return terminal, url


def second_terminal(clone: Path, env: dict, line: str) -> subprocess.CompletedProcess:
    """One README command line, exactly as written, in a shell of the newcomer's."""
    return subprocess.run(
        ["sh", "-c", line], cwd=clone, env=env, capture_output=True, text=True, timeout=180
    )
