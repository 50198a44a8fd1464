"""Slack's Web API as Airlock uses it (slack_sdk): post and update request cards, answer a
clicker alone, open a modal. Errors say whether trying again later may help."""

from integrations.slack.client import SlackClient, SlackError, slack_configured

__all__ = ["SlackClient", "SlackError", "slack_configured"]
