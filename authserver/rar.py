"""Rich Authorization Requests (RFC 9396): parsing, validating and rendering.

`authorization_details` is a JSON array of objects, each with a `type` that a
resource server registered together with a JSON Schema (validated with the
`jsonschema` library, draft 2020-12, asserting `format`) and a rendering for people.
An entry's `locations` (RFC 9396 §2.2), when present, may name only the resource server
that registered its type: that server is always in the token's audience (the endpoints
infer it, or refuse a `resource` without it) and is the only one that understands the
type, so any other location is a place no token of ours may be used. Anything else is
`invalid_authorization_details` (RFC 9396 §5).
"""

from __future__ import annotations

import contextlib
import json
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, validators
from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import AuthorizationDetailType, ResourceServer
from .registry import ResourceSnapshot

MAX_PARAMETER_LENGTH = 16 * 1024
MAX_ENTRIES = 10
PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
# RFC 6749 §5.2: error_description is printable ASCII without quote or backslash.
DESCRIPTION_CHARS = re.compile(r"[^\x20-\x21\x23-\x5B\x5D-\x7E]")
# `format` is asserted, not only annotated: a "uri" that is not one is refused (checked by
# rfc3986-validator, which jsonschema uses for it when installed).
FORMATS = Draft202012Validator.FORMAT_CHECKER
# JSON Schema counts 10.0 as an integer (its data model compares numbers by value), so a
# schema's `"type": "integer"` let "quantity": 10.0 through; the person approved it and
# the resource server, which reads integers as integers, refused every order under it.
# Here an integer is a JSON number written without a fraction or exponent.
STRICT_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
)
DetailsValidator = validators.extend(Draft202012Validator, type_checker=STRICT_TYPES)


class InvalidDetails(ValueError):
    """The authorization details are malformed, of an unknown type or fail their schema."""


@dataclass(frozen=True)
class ValidatedDetails:
    entries: list[dict[str, Any]]
    resources: list[ResourceSnapshot]  # the resource servers that registered the types used


def _describe(message: str) -> str:
    return DESCRIPTION_CHARS.sub("", message)[:300]


def _not_json(name: str) -> Any:
    """NaN and Infinity: Python reads them, RFC 8259 §6 does not (NaN passes every bound)."""
    raise ValueError(f"{name} is not JSON")


def parse(raw: str | None) -> list[dict[str, Any]] | None:
    """The parameter as a list of objects, or None when absent."""
    if raw is None or raw == "":
        return None
    if len(raw) > MAX_PARAMETER_LENGTH:
        raise InvalidDetails("authorization_details is too large.")
    try:
        value = json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError):
        raise InvalidDetails("authorization_details must be a JSON array.") from None
    if not isinstance(value, list) or not value:
        raise InvalidDetails("authorization_details must be a non-empty JSON array.")
    if len(value) > MAX_ENTRIES:
        raise InvalidDetails(f"At most {MAX_ENTRIES} authorization_details entries.")
    if not all(isinstance(entry, dict) and isinstance(entry.get("type"), str) for entry in value):
        raise InvalidDetails("Each authorization_details entry needs a string 'type'.")
    if any(_unprintable(text) for text in _strings(value)):
        raise InvalidDetails("authorization_details must not contain control characters.")
    return value


def _strings(value: Any) -> Iterator[str]:
    """Every string in a parsed JSON value, object keys included (a loop, not recursion:
    nesting as deep as the parser allows must not become a RecursionError here)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())


def _unprintable(text: str) -> bool:
    """Control (Cc) or format (Cf) characters: a newline that a schema's `$` lets through
    (Python's re matches it before a final newline), a right-to-left override or a
    zero-width space that makes what the approval page shows read differently from what
    the token carries."""
    return any(unicodedata.category(char) in ("Cc", "Cf") for char in text)


def check_schema(schema: dict[str, Any]) -> None:
    """For registration: refuse a schema that is not itself valid JSON Schema."""
    Draft202012Validator.check_schema(schema)


def validate(session: Session, entries: list[dict[str, Any]]) -> ValidatedDetails:
    types = {
        row.type: row
        for row in session.scalars(
            select(AuthorizationDetailType).where(
                AuthorizationDetailType.type.in_({entry["type"] for entry in entries})
            )
        )
    }
    resources: dict[str, ResourceSnapshot] = {}
    for index, entry in enumerate(entries):
        registered = types.get(entry["type"])
        if registered is None:
            raise InvalidDetails(f"authorization_details[{index}]: unknown type.")
        validator = DetailsValidator(registered.json_schema, format_checker=FORMATS)
        error = next(iter(sorted(validator.iter_errors(entry), key=str)), None)
        if error is not None:
            where = "/".join(str(part) for part in error.absolute_path) or "entry"
            raise InvalidDetails(
                _describe(f"authorization_details[{index}] {where}: {error.message}")
            )
        server = session.get(ResourceServer, registered.resource_server_id)
        _check_locations(index, entry, server)
        if server is not None:
            resources[server.id] = ResourceSnapshot.of(server)
    return ValidatedDetails(entries, list(resources.values()))


def _check_locations(index: int, entry: dict[str, Any], server: ResourceServer | None) -> None:
    """RFC 9396 §2.2 `locations`, when present: a non-empty array naming only `server`.

    People read the locations on the approval page as where the action happens; a
    location the token cannot be used at (a "sandbox", another API) would make them
    approve something other than what the token allows.
    """
    if "locations" not in entry:
        return
    locations = entry["locations"]
    owner = server.identifier if server is not None else None
    named_only_owner = isinstance(locations, list) and all(name == owner for name in locations)
    if owner is None or not locations or not named_only_owner:
        raise InvalidDetails(
            _describe(
                f"authorization_details[{index}] locations: must name only the resource "
                f"server of type {entry['type']}, {owner}."
            )
        )


def _format(value: Any, style: str | None) -> str:
    if style == "money" and isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an int beyond any float: shown as digits
            return f"{value:,.2f}"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def render(session: Session, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each entry as {title, summary, rendered: [(label, value)]} for a page (escaped by Jinja)."""
    rows = {row.type: row for row in session.scalars(select(AuthorizationDetailType))}
    return [_render_entry(entry, rows.get(entry.get("type", ""))) for entry in entries]


def _render_entry(
    entry: dict[str, Any], registered: AuthorizationDetailType | None
) -> dict[str, Any]:
    rendering = registered.rendering if registered else {}
    fields = rendering.get("fields") or [{"name": k, "label": k} for k in entry if k != "type"]
    formats = {field["name"]: field.get("format") for field in fields}
    pairs = [
        (field.get("label", field["name"]), _format(entry[field["name"]], field.get("format")))
        for field in fields
        if field["name"] in entry
    ]
    summary = _summary_template(rendering.get("summary"), entry)
    if summary:
        summary = PLACEHOLDER.sub(
            lambda m: _format(entry.get(m.group(1), ""), formats.get(m.group(1))), summary
        )
    return {
        "type": entry.get("type"),
        "title": rendering.get("title") or entry.get("type"),
        "summary": summary,
        "rendered": pairs,
    }


def _summary_template(summary: Any, entry: dict[str, Any]) -> str | None:
    """The summary line's template for this entry.

    A plain string serves every entry. An object {"by": field, "cases": {value: template}}
    picks the template by one field's value, because the same words can mean opposite
    things: a buy's limit is a ceiling, a sell's a floor. A value without a case gets no
    summary line (the labelled fields are still shown), never another case's wording.
    """
    if isinstance(summary, str):
        return summary
    if isinstance(summary, dict):
        chosen = summary["cases"].get(str(entry.get(summary["by"], "")))
        return chosen if isinstance(chosen, str) else None
    return None


def check_rendering(rendering: dict[str, Any]) -> None:
    """For registration: refuse a rendering the approval page could not show faithfully."""
    fields = rendering.get("fields", [])
    if not isinstance(fields, list) or not all(
        isinstance(field, dict) and isinstance(field.get("name"), str) for field in fields
    ):
        raise ValueError("rendering.fields must be a list of objects with a string 'name'")
    summary = rendering.get("summary")
    if summary is None or isinstance(summary, str):
        return
    cases = summary.get("cases") if isinstance(summary, dict) else None
    if (
        not isinstance(summary, dict)
        or not isinstance(summary.get("by"), str)
        or not isinstance(cases, dict)
        or not all(isinstance(template, str) for template in cases.values())
    ):
        raise ValueError(
            'rendering.summary must be a string or {"by": field, "cases": {value: string}}'
        )


def supported_types(session: Session) -> list[str]:
    return sorted(session.scalars(select(AuthorizationDetailType.type)))
