"""Filters of the plain-text notifications: `|inline` keeps untrusted text on our line,
`|quoted` sets it apart as a quoted block, `|run_lines` gives a workflow-filed request's
run, `|token_lines` what its tokens may do. The rules are requests_app.notifications'."""

from django import template

from requests_app.notifications import quote_block, quote_inline, run_lines, token_lines

register = template.Library()
register.filter("inline", quote_inline)
register.filter("quoted", quote_block)
register.filter("run_lines", run_lines)
register.filter("token_lines", token_lines)
