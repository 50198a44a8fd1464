"""Filters of the plain-text notifications: `|inline` keeps untrusted text on our line,
`|quoted` sets it apart as a quoted block. The rules are requests_app.notifications'."""

from django import template

from requests_app.notifications import quote_block, quote_inline

register = template.Library()
register.filter("inline", quote_inline)
register.filter("quoted", quote_block)
