"""Cut the slice of GitHub's OpenAPI description that the local GitHub implements.

Usage (from the repository root, with the npm package unpacked somewhere outside it):

    cd /tmp && npm pack @octokit/openapi && tar xzf octokit-openapi-*.tgz
    python tests/github_fake/cut_openapi.py /tmp/package/generated/api.github.com.json

It keeps only the operations in OPERATIONS, the webhook events in WEBHOOKS, and every
``#/components/...`` entry they reference, directly or through other components, and writes
``openapi-subset.json`` beside this file. The output is the upstream text, only fewer of it:
no schema is edited here, so a diff against a newer cut shows exactly what GitHub changed.
"""

import argparse
import json
from pathlib import Path

OUTPUT = Path(__file__).with_name("openapi-subset.json")

# (method, path template) for every REST operation the server answers. Keep in step with
# the routes in server.py; test_server.py checks that each route has its operation here.
OPERATIONS = [
    ("get", "/user"),
    ("get", "/user/emails"),
    ("get", "/users/{username}"),
    ("get", "/user/memberships/orgs/{org}"),
    ("get", "/orgs/{org}"),
    ("get", "/orgs/{org}/members/{username}"),
    ("get", "/orgs/{org}/memberships/{username}"),
    ("get", "/orgs/{org}/teams/{team_slug}"),
    ("get", "/orgs/{org}/teams/{team_slug}/members"),
    ("get", "/repos/{owner}/{repo}"),
    ("get", "/repos/{owner}/{repo}/environments"),
    ("get", "/repos/{owner}/{repo}/environments/{environment_name}"),
    ("put", "/repos/{owner}/{repo}/environments/{environment_name}"),
    ("delete", "/repos/{owner}/{repo}/environments/{environment_name}"),
    ("get", "/repos/{owner}/{repo}/environments/{environment_name}/secrets"),
    ("get", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/public-key"),
    ("get", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"),
    ("put", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"),
    ("delete", "/repos/{owner}/{repo}/environments/{environment_name}/secrets/{secret_name}"),
    ("post", "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule"),
    ("get", "/repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}"),
    ("get", "/orgs/{org}/actions/secrets"),
    ("get", "/orgs/{org}/actions/secrets/public-key"),
    ("get", "/orgs/{org}/actions/secrets/{secret_name}"),
    ("put", "/orgs/{org}/actions/secrets/{secret_name}"),
    ("delete", "/orgs/{org}/actions/secrets/{secret_name}"),
    ("get", "/orgs/{org}/actions/secrets/{secret_name}/repositories"),
    ("put", "/orgs/{org}/actions/secrets/{secret_name}/repositories"),
    ("put", "/orgs/{org}/actions/secrets/{secret_name}/repositories/{repository_id}"),
    ("delete", "/orgs/{org}/actions/secrets/{secret_name}/repositories/{repository_id}"),
    ("post", "/app/installations/{installation_id}/access_tokens"),
    ("delete", "/installation/token"),
    ("get", "/rate_limit"),
]

# Webhook events (the description's `x-webhooks`) whose payloads the local GitHub builds
# (shapes.deployment_protection_rule_event, shapes.workflow_run_event) and checks against
# their schema.
WEBHOOKS = [
    "deployment-protection-rule-requested",
    "workflow-run-completed",
]


def _refs(node):
    """Yield every $ref string inside a JSON value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def cut(spec: dict) -> dict:
    paths: dict = {}
    for method, path in OPERATIONS:
        operation = spec["paths"][path][method]  # KeyError: GitHub renamed or dropped it
        paths.setdefault(path, {})[method] = operation
        if "parameters" in spec["paths"][path]:
            paths[path]["parameters"] = spec["paths"][path]["parameters"]

    webhooks = {name: spec["x-webhooks"][name] for name in WEBHOOKS}

    components: dict = {}
    pending = list(_refs(paths)) + list(_refs(webhooks))
    while pending:
        ref = pending.pop()
        section, name = ref.removeprefix("#/components/").split("/", 1)
        if name in components.get(section, {}):
            continue
        target = spec["components"][section][name]
        components.setdefault(section, {})[name] = target
        pending.extend(_refs(target))

    return {
        "openapi": spec["openapi"],
        "info": spec["info"],
        "servers": spec.get("servers", []),
        "paths": paths,
        "x-webhooks": webhooks,
        "components": {
            section: dict(sorted(items.items())) for section, items in sorted(components.items())
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="generated/api.github.com.json from @octokit/openapi")
    parser.add_argument("--output", default=str(OUTPUT))
    args = parser.parse_args()
    spec = json.loads(Path(args.source).read_text())
    subset = cut(spec)
    Path(args.output).write_text(json.dumps(subset, indent=1, ensure_ascii=False) + "\n")
    count = sum(map(len, subset["components"].values()))
    print(
        f"{len(subset['paths'])} paths, {len(subset['x-webhooks'])} webhooks, {count} "
        f"components -> {args.output}"
    )


if __name__ == "__main__":
    main()
