"""The one way to GitHub: every GitHub HTTP call (the grant engine, sign-in's org check, team
sync, deployment protection rules) goes through this package."""

from integrations.github.client import (
    AppInstallationClient,
    CallbackUrlError,
    DryRunGitHub,
    EnvironmentProtection,
    GitHubClient,
    GitHubError,
    LeaseLost,
    NotFoundError,
    PermanentGitHubError,
    RetryPolicy,
    Reviewer,
    TransientGitHubError,
    app_credentials_configured,
    classify,
    deployment_callback_target,
)

__all__ = [
    "AppInstallationClient",
    "CallbackUrlError",
    "DryRunGitHub",
    "EnvironmentProtection",
    "GitHubClient",
    "GitHubError",
    "LeaseLost",
    "NotFoundError",
    "PermanentGitHubError",
    "RetryPolicy",
    "Reviewer",
    "TransientGitHubError",
    "app_credentials_configured",
    "classify",
    "deployment_callback_target",
]
