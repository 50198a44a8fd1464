"""The runner's side of the Action: its inputs (INPUT_* variables, which action.yml maps so
that no input is ever pasted into a shell line), its outputs, the job summary, the log and
annotations, and the failure that ends the step."""

from __future__ import annotations

import os
import uuid


class ActionFailed(Exception):
    """Stop with this message; the job fails."""

    def __init__(self, message: str, title: str = "Airlock"):
        super().__init__(message)
        self.title = title


def log(line: str = "") -> None:
    """Print a line the Action wrote itself (a workflow command, too: add-mask). A line
    with text from the server goes through log_text."""
    print(line, flush=True)


def log_text(line: str) -> None:
    """Print a line carrying text the Action did not write (the portal's answers, GitHub's
    errors through it): the runner reads a workflow command from any log line, so the text
    stays on this one line (a line break in it would start a line of its own, like
    "::add-mask::" or "::warning::") and opens no command ("::" at its start, the older
    "##[" anywhere)."""
    one_line = " ".join(str(line).splitlines())
    one_line = one_line.replace("##[", "# #[")
    if one_line.lstrip().startswith("::"):
        one_line = "> " + one_line
    log(one_line)


def annotate(kind: str, title: str, message: str) -> None:
    # Workflow commands: a one-line annotation on the run's summary page.
    escaped = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    log(f"::{kind} title={title}::{escaped}")


def set_outputs(values: dict[str, str]) -> None:
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as output:
        for name, value in values.items():
            if "\n" in value or "\r" in value:
                # A value over several lines would otherwise set other outputs.
                delimiter = f"airlock_{uuid.uuid4().hex}"
                output.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                output.write(f"{name}={value}\n")


def add_summary(markdown: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(markdown + "\n")


def text_input(name: str, default: str = "") -> str:
    """The input `name` (as action.yml spells it), trimmed; `default` when empty."""
    value = os.environ.get("INPUT_" + name.upper().replace("-", "_"), "").strip()
    return value or default


def bad_input(name: str, problem: str) -> ActionFailed:
    return ActionFailed(f"The {name} input {problem}", "Airlock: bad input")


def portal_inputs() -> dict:
    """The inputs every mode reads: where the portal is, and how to reach it."""
    url = text_input("airlock-url").rstrip("/")
    if not url.startswith(("https://", "http://")) or any(c.isspace() for c in url):
        raise bad_input(
            "airlock-url",
            f"must be the portal's address, like https://airlock.example.com; got {url!r}.",
        )
    retries = text_input("retries", "2")
    if not (retries.isascii() and retries.isdigit()):
        raise bad_input("retries", f"must be a whole number, like 2; got {retries!r}.")
    return {
        "url": url,
        "environment": text_input("environment"),
        "access": text_input("access", "reviewer"),
        "audience": text_input("audience", url),
        "retries": int(retries),
    }


def run_step(step) -> int:
    """Run one mode; a failure becomes an error annotation, a summary and exit status 1."""
    try:
        return step()
    except ActionFailed as failure:
        annotate("error", failure.title, str(failure))
        add_summary(f"### ❌ {failure.title}\n\n{failure}")
        return 1
