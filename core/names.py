"""GitHub's rules for the names Airlock compares, and each name's one canonical form (the
rules and why: docs/api.md "Names")."""

import re
import string

from django.core.exceptions import ValidationError

OWNER_MAX = 39
REPOSITORY_NAME_MAX = 100
ENVIRONMENT_MAX = 255
PATTERN_MAX = 255

# A GitHub owner, which is a login: the policy file's members and approver groups' members
# follow it too (.match or .fullmatch: the pattern is anchored).
GITHUB_LOGIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}\Z")
_OWNER = GITHUB_LOGIN
_REPOSITORY_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_ENVIRONMENT = re.compile(r"[\x20-\x7e]{1,255}")
_TEAM_SLUG = re.compile(r"[A-Za-z0-9._-]{1,100}")
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RESERVED_REPOSITORY_NAMES = {".", ".."}
_REFUSED_REPOSITORY_ENDINGS = (".git", ".wiki")
GLOB_CHARACTERS = "*?[]!"
_OWNER_GLOB = re.compile(r"[A-Za-z0-9*?\[\]!-]+")
_REPOSITORY_NAME_GLOB = re.compile(r"[A-Za-z0-9._*?\[\]!-]+")

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)

OWNER_RULE = "1 to 39 letters, digits and hyphens, not starting with a hyphen"
REPOSITORY_RULE = (
    "owner/name, for example acme/api: the name 1 to 100 letters, digits, '.', '-' and '_'"
)
ENVIRONMENT_RULE = (
    "1 to 255 printable ASCII characters (letters, digits, spaces and punctuation); other "
    "characters are refused so that look-alike letters cannot name the same environment"
)
GITHUB_TEAM_RULE = "a GitHub team as its organization and slug, for example acme/sre"
SECRET_RULE = "letters, digits and underscores, not starting with a digit nor with GITHUB_"


class NameRefused(ValidationError):
    """A name outside GitHub's rules. A ValidationError whose error_dict names the field,
    so forms, the API (400) and the webhook show it beside the field that was wrong."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(errors)


def ascii_lower(text: str) -> str:
    """Lower-case A-Z only: the same on Python, SQLite and PostgreSQL."""
    return text.translate(_ASCII_LOWER)


def _text(value, field: str, rule: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise NameRefused({field: f"Required: {rule}."})
    return value.strip()


def owner_problem(owner: str) -> str:
    """Why owner is not a GitHub owner name, or "" when it is."""
    if _OWNER.fullmatch(owner):
        return ""
    return f"'{owner}' is not a GitHub owner: {OWNER_RULE}."


def validate_github_login(value) -> None:
    """A model and form validator: value is a GitHub login (an owner name, by the same rule),
    so that matching it to usernames without regard to case cannot take a look-alike."""
    if not isinstance(value, str) or not _OWNER.fullmatch(value):
        raise ValidationError(f"'{value}' is not a GitHub login: {OWNER_RULE}.")


def github_team_parts(value) -> tuple[str, str]:
    """(org, team slug) of an approver group's GitHub team, written 'org/team-slug'."""
    text = value.strip() if isinstance(value, str) else ""
    org, _, slug = text.partition("/")
    if not (_OWNER.fullmatch(org) and _TEAM_SLUG.fullmatch(slug)):
        raise ValidationError(f"'{value}' is not org/team-slug: {GITHUB_TEAM_RULE}.")
    return org, slug


def validate_github_team(value) -> None:
    """A model field validator: github_team names a team as team sync reads it."""
    github_team_parts(value)


def repository_name_problem(name: str) -> str:
    """Why name (without its owner) is not a GitHub repository name, or "" when it is."""
    if not _REPOSITORY_NAME.fullmatch(name):
        return (
            f"A repository name is 1 to {REPOSITORY_NAME_MAX} letters, digits, '.', '-' and "
            "'_'."
        )
    if name in _RESERVED_REPOSITORY_NAMES:
        return f"'{name}' is reserved: it is not a repository name on GitHub."
    ending = next((e for e in _REFUSED_REPOSITORY_ENDINGS if ascii_lower(name).endswith(e)), "")
    if ending:
        return f"GitHub repository names do not end in '{ending}': name the repository without it."
    return ""


def canonical_owner(value, *, field: str = "owner") -> str:
    owner = _text(value, field, OWNER_RULE)
    problem = owner_problem(owner)
    if problem:
        raise NameRefused({field: problem})
    return ascii_lower(owner)


def canonical_repository(value, *, field: str = "repository") -> str:
    """The canonical owner/name of a repository; NameRefused for one outside GitHub's rules."""
    full_name = _text(value, field, REPOSITORY_RULE)
    owner, slash, name = full_name.partition("/")
    if not slash:
        raise NameRefused({field: f"Give the repository as {REPOSITORY_RULE}."})
    problem = owner_problem(owner) or repository_name_problem(name)
    if problem:
        raise NameRefused({field: problem})
    return ascii_lower(full_name)


def canonical_environment(value, *, field: str = "environment") -> str:
    """The canonical name of an environment; NameRefused for one outside the rules."""
    name = _text(value, field, ENVIRONMENT_RULE)
    if not _ENVIRONMENT.fullmatch(name):
        raise NameRefused({field: f"An environment name is {ENVIRONMENT_RULE}."})
    return ascii_lower(name)


def canonical_target(*, repository, environment) -> tuple[str, str]:
    """(repository, environment) in canonical form; NameRefused naming each refused one."""
    errors, canonical = {}, []
    for rule, value in ((canonical_repository, repository), (canonical_environment, environment)):
        try:
            canonical.append(rule(value))
        except NameRefused as refusal:
            errors.update(refusal.message_dict)
    if errors:
        raise NameRefused(errors)
    return canonical[0], canonical[1]


def canonical_secret_name(value, *, field: str = "name") -> str:
    """A secret's name as GitHub shows it (upper-cased); NameRefused outside its rules."""
    name = _text(value, field, SECRET_RULE)
    if not _SECRET_NAME.fullmatch(name) or name.upper().startswith("GITHUB_"):
        raise NameRefused({field: f"A secret name is {SECRET_RULE}."})
    return name.translate(_ASCII_UPPER)


# --- policy patterns ------------------------------------------------------------------------


def _is_glob(text: str) -> bool:
    return any(char in GLOB_CHARACTERS for char in text)


def _pattern_text(value, field: str, example: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise NameRefused({field: f"Give a pattern, for example {example}."})
    pattern = value.strip()
    if len(pattern) > PATTERN_MAX:
        raise NameRefused({field: f"A pattern has at most {PATTERN_MAX} characters."})
    if pattern.count("[") != pattern.count("]"):
        raise NameRefused({field: f"'{pattern}' has an unbalanced [ ]."})
    return pattern


def canonical_repository_pattern(value, *, field: str = "repository_patterns") -> str:
    """A policy's repository glob ("acme/*", "acme/api-?"), lower-cased; NameRefused for one
    that is not owner/name or uses characters no repository name has."""
    pattern = _pattern_text(value, field, "acme/*")
    owner, slash, name = pattern.partition("/")
    if not slash or not owner or not name:
        raise NameRefused(
            {field: f"'{pattern}' must name owner/repository, for example acme/* or acme/api."}
        )
    for part, glob, problem in (
        (owner, _OWNER_GLOB, owner_problem),
        (name, _REPOSITORY_NAME_GLOB, repository_name_problem),
    ):
        if not _is_glob(part):
            refused = problem(part)
        elif not glob.fullmatch(part):
            refused = f"'{part}' has characters GitHub names do not."
        else:
            refused = ""
        if refused:
            raise NameRefused({field: f"'{pattern}': {refused}"})
    return ascii_lower(pattern)


def canonical_environment_pattern(value, *, field: str = "environment_patterns") -> str:
    """A policy's environment glob ("production", "prod-*"), lower-cased; NameRefused for one
    with characters outside the environment rule."""
    pattern = _pattern_text(value, field, "production or prod-*")
    if not _ENVIRONMENT.fullmatch(pattern):
        raise NameRefused({field: f"'{pattern}': an environment name is {ENVIRONMENT_RULE}."})
    return ascii_lower(pattern)


SLACK_CHANNEL_RE = re.compile(r"[CGD][A-Z0-9]{2,30}")


def validate_slack_channel(value: str) -> None:
    """A Slack channel id as Slack's API names channels (C…, G… for private ones), not a
    #name: names change, ids do not."""
    if value and not SLACK_CHANNEL_RE.fullmatch(value):
        raise ValidationError(
            f"{value!r} is not a Slack channel id: use the id (e.g. C0123456789, in the "
            "channel's details in Slack), not its #name."
        )
