"""An environment's protection as the engine reads and writes it: its required reviewers and
the settings a PUT must send back unchanged."""

from __future__ import annotations

from dataclasses import dataclass, replace

from github.EnvironmentDeploymentBranchPolicy import EnvironmentDeploymentBranchPolicyParams
from github.EnvironmentProtectionRuleReviewer import ReviewerParams


@dataclass(frozen=True)
class Reviewer:
    """A required reviewer: a user (by id, with its login) or a team (by id, with its slug)."""

    type: str  # "User" | "Team"
    id: int | None  # None only in dry-run, where logins are not resolved
    name: str  # login or "org/slug"

    @property
    def key(self) -> tuple:
        return (self.type, self.id if self.id is not None else self.name.lower())

    def as_json(self) -> dict:
        label = "login" if self.type == "User" else "slug"
        return {"type": self.type, "id": self.id, label: self.name}

    @classmethod
    def from_json(cls, value: dict) -> Reviewer:
        return cls(value["type"], value.get("id"), value.get("login") or value.get("slug") or "")


@dataclass(frozen=True)
class EnvironmentProtection:
    """An environment's protection settings, as read from GitHub. Written back with only the
    reviewers changed (the PUT replaces every field it is given, and resets the others)."""

    reviewers: tuple[Reviewer, ...]
    wait_timer: int = 0
    prevent_self_review: bool = False
    deployment_branch_policy: dict | None = None
    can_admins_bypass: bool | None = None

    def with_reviewers(self, reviewers) -> EnvironmentProtection:
        return replace(self, reviewers=tuple(reviewers))

    def create_environment_arguments(self) -> dict:
        """Repository.create_environment's arguments: all four settings the PUT replaces.
        (can_admins_bypass is not in the PUT's schema, so GitHub keeps it as it is.)"""
        policy = self.deployment_branch_policy
        return {
            "wait_timer": self.wait_timer,
            "prevent_self_review": self.prevent_self_review,
            "reviewers": [ReviewerParams(r.type, r.id) for r in self.reviewers],
            "deployment_branch_policy": (
                EnvironmentDeploymentBranchPolicyParams(
                    protected_branches=policy["protected_branches"],
                    custom_branch_policies=policy["custom_branch_policies"],
                )
                if policy is not None
                else None
            ),
        }

    def as_json(self) -> dict:
        return {
            "reviewers": [r.as_json() for r in self.reviewers],
            "wait_timer": self.wait_timer,
            "prevent_self_review": self.prevent_self_review,
            "deployment_branch_policy": self.deployment_branch_policy,
            "can_admins_bypass": self.can_admins_bypass,
        }

    @classmethod
    def from_json(cls, value: dict) -> EnvironmentProtection:
        return cls(
            reviewers=tuple(Reviewer.from_json(r) for r in value.get("reviewers", [])),
            wait_timer=value.get("wait_timer", 0),
            prevent_self_review=value.get("prevent_self_review", False),
            deployment_branch_policy=value.get("deployment_branch_policy"),
            can_admins_bypass=value.get("can_admins_bypass"),
        )

    @classmethod
    def from_github(cls, payload: dict) -> EnvironmentProtection:
        """Parse GET/PUT .../environments/{name}. The reviewers, wait timer and
        prevent-self-review live in protection_rules; an environment without rules has
        neither, which means no reviewers, no wait and no self-review prevention."""
        reviewers: list[Reviewer] = []
        wait_timer = 0
        prevent_self_review = False
        for rule in payload.get("protection_rules") or []:
            if rule.get("type") == "wait_timer":
                wait_timer = int(rule.get("wait_timer") or 0)
            elif rule.get("type") == "required_reviewers":
                prevent_self_review = bool(rule.get("prevent_self_review"))
                for entry in rule.get("reviewers") or []:
                    who = entry.get("reviewer") or {}
                    if entry.get("type") == "Team":
                        org = (who.get("organization") or {}).get("login")
                        slug = who.get("slug") or who.get("name") or ""
                        name = f"{org}/{slug}" if org else slug
                        reviewers.append(Reviewer("Team", who.get("id"), name))
                    else:
                        reviewers.append(Reviewer("User", who.get("id"), who.get("login") or ""))
        policy = payload.get("deployment_branch_policy")
        if policy is not None:
            policy = {
                "protected_branches": bool(policy.get("protected_branches")),
                "custom_branch_policies": bool(policy.get("custom_branch_policies")),
            }
        return cls(
            reviewers=tuple(reviewers),
            wait_timer=wait_timer,
            prevent_self_review=prevent_self_review,
            deployment_branch_policy=policy,
            can_admins_bypass=payload.get("can_admins_bypass"),
        )
