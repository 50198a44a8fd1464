"""The target and workflow-restriction rules a request is checked against before its policy."""

import re

from core.names import NameRefused, canonical_target
from requests_app.models import AccessKind

# Restrictions are globs matched (fnmatchcase) against the whole OIDC claim, so a pattern
# that could never match one (a bare "deploy.yml", a bare "main") is refused here rather
# than silently making the grant useless to every workflow.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
_GLOB_START = ("*", "?", "[")


def validate_target(*, repository: str, environment: str, access: str):
    """The target in canonical form (core.names), and the errors of what was refused."""
    errors = {}
    try:
        repository, environment = canonical_target(repository=repository, environment=environment)
    except NameRefused as refusal:
        errors.update(refusal.message_dict)
    if access not in AccessKind.values:
        errors["access"] = f"Access must be one of: {', '.join(AccessKind.values)}."
    return repository, environment, errors


def validate_restrictions(*, workflow_ref_pattern: str, ref_pattern: str) -> dict:
    errors = {}
    for name, value, limit in (
        ("workflow_ref_pattern", workflow_ref_pattern, 500),
        ("ref_pattern", ref_pattern, 255),
    ):
        if len(value) > limit:
            errors[name] = f"At most {limit} characters."
        elif _CONTROL_CHARACTERS.search(value):
            errors[name] = "Remove the control characters (tabs, line breaks)."
        elif value.count("[") != value.count("]"):
            errors[name] = "The pattern has an unbalanced [ ]."
    if "workflow_ref_pattern" not in errors and workflow_ref_pattern:
        if "@" not in workflow_ref_pattern and not workflow_ref_pattern.endswith("*"):
            errors["workflow_ref_pattern"] = (
                "A workflow pattern matches the job's whole job_workflow_ref, for example "
                "acme/api/.github/workflows/deploy.yml@refs/heads/main; end it with @* to "
                "allow any ref."
            )
    if "ref_pattern" not in errors and ref_pattern:
        if not ref_pattern.startswith(("refs/", *_GLOB_START)):
            errors["ref_pattern"] = (
                "A ref pattern matches the whole ref, for example refs/heads/main or "
                "refs/tags/v*."
            )
    return errors

