"""Slack's Web API as Airlock uses it (slack_sdk): post and update request cards, answer a
clicker alone, open a modal, say who a Slack user is (users.info). Errors say whether
trying again later may help."""

from integrations.slack.client import SlackClient, SlackError, slack_configured
from integrations.slack.users import SlackPerson, slack_person

__all__ = ["SlackClient", "SlackError", "SlackPerson", "slack_configured", "slack_person"]
