from django.apps import AppConfig


class GitHubIntegrationConfig(AppConfig):
    """The GitHub integration's own table (models.RememberedRead). Labelled apart from
    allauth's GitHub provider, whose app label is "github"."""

    name = "integrations.github"
    label = "github_integration"
    verbose_name = "GitHub integration"
