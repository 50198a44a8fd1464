"""JSON request bodies, read with a bound on how deeply they nest: the API's parser (DRF)
and parse_json, for the views that read JSON themselves."""

import json

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_JSON_DEPTH = 100
TOO_DEEP = f"nested more than {MAX_JSON_DEPTH} levels deep."


class JSONTooDeep(ValueError):
    def __init__(self):
        super().__init__(TOO_DEEP)


def _check_depth(value) -> None:
    """Raise JSONTooDeep if the value's arrays and objects nest deeper than MAX_JSON_DEPTH
    (walked without recursion, for the same reason)."""
    pending = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:
        node, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise JSONTooDeep
        children = node.values() if isinstance(node, dict) else node
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def parse_json(text: str | bytes):
    """json.loads, refusing (JSONTooDeep, a ValueError) a value nested too deeply."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JSONTooDeep from None
    _check_depth(value)
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (strict: no NaN or Infinity), with the same bound: too deep is a
    ParseError, a 400 in the API's error shape."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            value = super().parse(stream, media_type, parser_context)
            _check_depth(value)
        except (RecursionError, JSONTooDeep):
            raise ParseError(f"JSON parse error - {TOO_DEEP}") from None
        return value
