"""The one way to GitHub: every GitHub HTTP call (the grant engine, sign-in's org check, team
sync, deployment protection rules) goes through this package."""

from integrations.github.actions import WorkflowJob
from integrations.github.app import AppInstallationClient, app_credentials_configured
from integrations.github.budget import (
    ENGINE,
    Band,
    Budget,
    Work,
    github_budget,
    github_budgets,
    github_work_allowed,
)
from integrations.github.callbacks import CallbackUrlError, deployment_callback_target
from integrations.github.client import GitHubClient
from integrations.github.dry_run import DryRunGitHub
from integrations.github.environments import EnvironmentProtection, Reviewer
from integrations.github.errors import (
    GitHubError,
    LeaseLost,
    NotFoundError,
    PermanentGitHubError,
    TransientGitHubError,
    classify,
)
from integrations.github.retry import RetryPolicy
from integrations.github.users import OrgMembership, org_membership

__all__ = [
    "ENGINE",
    "AppInstallationClient",
    "Band",
    "Budget",
    "CallbackUrlError",
    "DryRunGitHub",
    "EnvironmentProtection",
    "GitHubClient",
    "GitHubError",
    "LeaseLost",
    "NotFoundError",
    "OrgMembership",
    "PermanentGitHubError",
    "RetryPolicy",
    "Reviewer",
    "TransientGitHubError",
    "Work",
    "WorkflowJob",
    "app_credentials_configured",
    "classify",
    "deployment_callback_target",
    "github_budget",
    "github_budgets",
    "github_work_allowed",
    "org_membership",
]
