"""Request and response validation against GitHub's own OpenAPI description.

openapi-subset.json is the cut of @octokit/openapi's api.github.com.json that this server
implements (see cut_openapi.py). OpenAPI 3.0 schemas are almost JSON Schema draft 4; the one
difference that matters here is `nullable: true`, which is turned into an allowed null when
the subset is loaded. A `$ref` stays a `$ref`: each validator's root schema carries the
subset's components, so "#/components/..." resolves inside it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError

SUBSET = Path(__file__).with_name("openapi-subset.json")


def _to_json_schema(node):
    """A copy of an OpenAPI 3.0 schema with `nullable: true` expressed in JSON Schema."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _to_json_schema(value) for key, value in node.items()}
    if converted.pop("nullable", False) is True:
        if "type" in converted:
            converted["type"] = [converted["type"], "null"]
            if "enum" in converted:
                converted["enum"] = [*converted["enum"], None]
        else:
            converted = {"anyOf": [converted, {"type": "null"}]}
    return converted


@functools.cache
def _spec() -> dict:
    return _to_json_schema(json.loads(SUBSET.read_text()))


def operation(method: str, template: str) -> dict | None:
    """The OpenAPI operation for a route template such as "/repos/{owner}/{repo}"."""
    return _spec()["paths"].get(template, {}).get(method.lower())


def operation_id(method: str, template: str) -> str:
    found = operation(method, template)
    return found["operationId"] if found else ""


@functools.cache
def _validator(method: str, template: str, where: str) -> Draft4Validator | None:
    """A validator for an operation's request body (where="request") or a response status."""
    found = operation(method, template) or {}
    if where == "request":
        content = (found.get("requestBody") or {}).get("content", {})
    else:
        response = found.get("responses", {}).get(where)
        if response and "$ref" in response:
            response = _spec()["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        content = (response or {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return None
    return Draft4Validator({**schema, "components": _spec()["components"]})


def request_body_errors(method: str, template: str, body) -> list[str]:
    """Why GitHub would refuse this request body, in GitHub's words; [] when it is fine."""
    found = operation(method, template)
    if found is None or "requestBody" not in found:
        return []
    if body is None:
        return ["Body is required."] if found["requestBody"].get("required") else []
    validator = _validator(method, template, "request")
    if validator is None:
        return []
    return [_github_wording(e) for e in sorted(validator.iter_errors(body), key=lambda e: e.path)]


def response_errors(method: str, template: str, status: int, body) -> list[str]:
    """Where a response body departs from GitHub's documented schema for that status."""
    found = operation(method, template)
    if found is None:
        return [f"no operation {method} {template} in the subset"]
    if str(status) not in found.get("responses", {}):
        return [f"status {status} is not documented for {found['operationId']}"]
    validator = _validator(method, template, str(status))
    if validator is None:
        return [] if body in (None, b"", "") else [f"status {status} documents no body"]
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]


def _github_wording(error: ValidationError) -> str:
    """One line of GitHub's "Invalid request." explanation for a schema error."""
    where = "/".join(str(p) for p in error.absolute_path)
    value = json.dumps(error.instance)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return " ".join(f'"{key}" is not a permitted key.' for key in extra)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f'"{missing}" wasn\'t supplied.'
    if error.validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        article = "an" if wanted[0] in "aeiou" else "a"
        return f"For 'properties/{where}', {value} is not {article} {wanted}."
    if error.validator in {"anyOf", "oneOf"}:
        return f"For '{where or 'body'}', no subschema in \"{error.validator}\" matched."
    if error.validator == "enum":
        allowed = json.dumps(error.validator_value)
        return f"For 'properties/{where}', {value} is not a member of {allowed}."
    return f"For '{where or 'body'}', {value}: {error.message}."


def webhook_payload_errors(event: str, body) -> list[str]:
    """Where a webhook payload departs from its documented schema (the description's
    x-webhooks, e.g. "deployment-protection-rule-requested"); [] when it is fine."""
    webhook = _spec().get("x-webhooks", {}).get(event)
    if webhook is None:
        return [f"no webhook {event} in the subset"]
    schema = webhook["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = Draft4Validator({**schema, "components": _spec()["components"]})
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
