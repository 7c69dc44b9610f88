"""Refuse request paths and parameters that no protocol value can contain, before any view runs.

No OAuth 2.0 or OpenID Connect value, and no identifier in our URLs, contains a NUL
character, and PostgreSQL text cannot store one: left alone, it reaches a query or an
insert (a parameter, or a path segment such as `/approvals/<id>`) and becomes a 500.
The answer is the usual 400 (RFC-shaped JSON for APIs, a page for people).
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import BadRequest


def _refuse_nul() -> None:
    # request.path is percent-decoded: `/approvals/%00` arrives here as "/approvals/\x00",
    # and every view argument is a piece of it.
    if "\x00" in request.path:
        raise BadRequest("The request path must not contain NUL characters.")
    pairs = list(request.args.items(multi=True))
    if request.method == "POST":
        pairs += request.form.items(multi=True)
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        raise BadRequest("Request parameters must not contain NUL characters.")


def init_app(app: Flask) -> None:
    app.before_request(_refuse_nul)
