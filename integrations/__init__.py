"""Airlock's ways out to other services; every GitHub HTTP call goes through
integrations.github."""
