"""The stand-in for GitHub when no credentials are configured (AIRLOCK_DRY_RUN)."""

from __future__ import annotations

from integrations.github.environments import EnvironmentProtection


class DryRunGitHub:
    """Stands in for GitHub when no credentials are configured: it reads nothing and writes
    nothing. Reads answer from `simulated` (what earlier dry-run writes left, kept by the
    reconciler on the target), so a demo grant is "added" and later "removed"."""

    dry_run = True  # logins and repositories get stand-in ids (grants.reconciler.runner.dry_run_id)
    unchanged_reads = 0  # it never asks GitHub, conditionally or not

    def __init__(self, simulated: dict | None = None, heartbeat=None):
        self.simulated = simulated if simulated is not None else {}
        self.heartbeat = heartbeat or (lambda: None)

    def get_environment(self, repository, environment) -> EnvironmentProtection:
        return EnvironmentProtection.from_json(self.simulated.get("environment", {}))

    def put_environment(self, repository, environment, protection):
        self.simulated["environment"] = protection.as_json()
        return protection

    def environment_secret_exists(self, repository, environment, name) -> bool:
        return name in self.simulated.get("secrets", [])

    def put_environment_secret(self, repository, environment, name, value) -> None:
        secrets = self.simulated.setdefault("secrets", [])
        if name not in secrets:
            secrets.append(name)

    def delete_environment_secret(self, repository, environment, name) -> bool:
        secrets = self.simulated.setdefault("secrets", [])
        if name in secrets:
            secrets.remove(name)
            return True
        return False

    def org_secret_visibility(self, org, name) -> str:
        return "selected"

    def org_secret_repository_ids(self, org, name) -> list:
        return list(self.simulated.get("repositories", []))

    def add_org_secret_repository(self, org, name, repository_id) -> None:
        repositories = self.simulated.setdefault("repositories", [])
        if repository_id not in repositories:
            repositories.append(repository_id)

    def remove_org_secret_repository(self, org, name, repository_id) -> None:
        repositories = self.simulated.setdefault("repositories", [])
        if repository_id in repositories:
            repositories.remove(repository_id)
