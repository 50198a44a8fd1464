"""The forms and links of an HTML page, read as a browser reads them to submit them: the
fuzz tests (test_no_server_errors.py) start from what a browser would send and then put
arbitrary values in some of the fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

# A plausible value for a required field the page leaves empty, by input type, so that the
# rest of a form is valid while the fuzz changes one part of it.
PLAUSIBLE = {
    "text": "Deploying the hotfix for INC-1234 to production",
    "textarea": "Deploying the hotfix for INC-1234 to production",
    "password": "correct-horse-battery",
    "email": "dev@example.com",
    "number": "30",
}
BUTTON_TYPES = {"submit", "image"}
UNSENT_TYPES = {"reset", "file"}


@dataclass
class Form:
    method: str  # "get" or "post"
    action: str  # the path it submits to
    # What a browser sends with no button pressed: each field's value(s).
    values: dict[str, list[str]] = field(default_factory=dict)
    # Every value the page offers per field (options, radio values), sent or not.
    offered: dict[str, list[str]] = field(default_factory=dict)
    # The submit buttons' names and values: a browser sends one of them, or none.
    buttons: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Page:
    forms: list[Form]
    link_parameters: set[str]  # query parameter names of the page's own links (filters)


def read_page(url: str, html: str) -> Page:
    parser = _Parser(url)
    parser.feed(html)
    parser.close()
    return Page(forms=parser.forms, link_parameters=parser.link_parameters)


class _Parser(HTMLParser):
    def __init__(self, url: str):
        super().__init__(convert_charrefs=True)
        self.url = url
        self.forms: list[Form] = []
        self.link_parameters: set[str] = set()
        self._form: Form | None = None
        self._select: tuple[str, list[str]] | None = None  # name, options; until </select>
        # name, text, required; until </textarea>
        self._textarea: tuple[str, list[str], bool] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            action = urlsplit(urljoin(self.url, attributes.get("action") or self.url))
            self._form = Form(
                method=(attributes.get("method") or "get").lower(), action=action.path
            )
            self.forms.append(self._form)
        elif tag == "a" and "?" in attributes.get("href", ""):
            query = urlsplit(urljoin(self.url, attributes["href"])).query
            self.link_parameters.update(key for key, _ in parse_qsl(query, True))
        elif self._form is not None:
            self._field(tag, attributes)

    def _field(self, tag, attributes):
        form, name = self._form, attributes.get("name")
        if tag == "option" and self._select is not None:
            value = attributes.get("value", "")
            form.offered[self._select[0]].append(value)
            if "selected" in attributes:
                self._select[1].append(value)
        elif not name:
            return
        elif tag == "button" or (tag == "input" and attributes.get("type") in BUTTON_TYPES):
            form.buttons.append((name, attributes.get("value", "")))
        elif tag == "input" and attributes.get("type") not in UNSENT_TYPES:
            kind, value = attributes.get("type", "text"), attributes.get("value", "")
            form.offered.setdefault(name, []).append(value)
            if kind in ("checkbox", "radio"):
                if "checked" in attributes:
                    form.values.setdefault(name, []).append(value or "on")
            else:
                plausible = PLAUSIBLE.get(kind, "") if "required" in attributes else ""
                form.values.setdefault(name, []).append(value or plausible)
        elif tag == "select":
            form.offered.setdefault(name, [])
            self._select = (name, [])
        elif tag == "textarea":
            form.offered.setdefault(name, [])
            self._textarea = (name, [], "required" in attributes)

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1].append(data)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select" and self._select is not None and self._form is not None:
            name, selected = self._select
            options = self._form.offered[name]
            # A browser sends the selected option, or the first.
            self._form.values[name] = selected or options[:1]
            self._select = None
        elif tag == "textarea" and self._textarea is not None and self._form is not None:
            name, text, required = self._textarea
            plausible = PLAUSIBLE["textarea"] if required else ""
            self._form.values[name] = ["".join(text).strip() or plausible]
            self._textarea = None
