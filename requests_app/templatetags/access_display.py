"""Filters of the HTML pages that show a request: `|permissions` writes GitHub permissions,
{contents: write}, as "contents: write" (integrations.github.permissions' words)."""

from django import template

from integrations.github.permissions import format_permissions

register = template.Library()


@register.filter
def permissions(value) -> str:
    return format_permissions(value) if isinstance(value, dict) else ""
