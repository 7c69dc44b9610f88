"""Reading the HTML pages a person sees: forms, and the approval page's cards.

The pages follow one convention (DESIGN.md): a POST form with a hidden CSRF field,
`username` and `password` on sign-in pages, `decision=approve|deny` buttons on consent
and approval pages. The standard library's HTML parser is enough to read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)


@dataclass
class ApprovalCard:
    """One pending request as the approval page shows it."""

    request_id: str
    binding_message: str = ""
    summaries: list[str] = field(default_factory=list)
    form: Form | None = None


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[Form] = []
        self.cards: list[ApprovalCard] = []
        self._form: Form | None = None
        self._card: ApprovalCard | None = None
        self._capture: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        classes = attributes.get("class", "").split()
        if tag == "article" and "approval" in classes:
            self._card = ApprovalCard(attributes.get("id", "").removeprefix("req-"))
            self.cards.append(self._card)
        elif tag == "form":
            method = attributes.get("method", "get").lower()
            self._form = Form(attributes.get("action", ""), method)
            self.forms.append(self._form)
            if self._card is not None:
                self._card.form = self._form
        elif tag in ("input", "button") and self._form is not None and attributes.get("name"):
            name = attributes["name"]
            self._form.names.add(name)
            if attributes.get("type") == "hidden":
                self._form.fields[name] = attributes.get("value", "")
        elif tag == "p" and self._card is not None:
            if "binding-message" in classes:
                self._capture = "binding"
            elif "summary" in classes:
                self._capture = "summary"

    def handle_data(self, data: str) -> None:
        if self._capture is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self._capture is not None and self._card is not None:
            text = " ".join("".join(self._text).split())
            if self._capture == "binding":
                self._card.binding_message = text
            else:
                self._card.summaries.append(text)
            self._capture, self._text = None, []
        elif tag == "form":
            self._form = None
        elif tag == "article":
            self._card = None


def forms(html: str) -> list[Form]:
    parser = _PageParser()
    parser.feed(html)
    return parser.forms


def approval_cards(html: str) -> list[ApprovalCard]:
    parser = _PageParser()
    parser.feed(html)
    return parser.cards
