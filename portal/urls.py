from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from grants import views as grant_views
from grants import webhooks
from requests_app import slack_account_views, slack_views, token_views
from requests_app import urls as request_urls

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="requests_app:my-requests"), name="home"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path(
        "requests/",
        include((request_urls.urlpatterns + grant_views.request_urlpatterns, "requests_app")),
    ),
    path("api/", include("portal.api_urls")),
    path("github/webhook", webhooks.github_webhook, name="github-webhook"),
    path("account/tokens/", token_views.api_tokens, name="api-tokens"),
    path(
        "account/tokens/<int:pk>/revoke/", token_views.api_token_revoke, name="api-token-revoke"
    ),
    path("slack/interactions", slack_views.slack_interactions, name="slack-interactions"),
    path("slack/commands", slack_views.slack_commands, name="slack-commands"),
    path("account/slack/", slack_account_views.slack_account, name="slack-account"),
    path(
        "account/slack/<int:pk>/remove/",
        slack_account_views.slack_unlink_view,
        name="slack-unlink",
    ),
    path("account/slack/link/<str:code>/", slack_account_views.slack_link, name="slack-link"),
]
