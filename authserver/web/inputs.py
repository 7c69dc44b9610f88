"""Refuse request parameters that no protocol value can contain, before any view runs.

No OAuth 2.0 or OpenID Connect value contains a NUL character, and PostgreSQL text
cannot store one: left alone, it reaches a query or an insert and becomes a 500.
The answer is the usual 400 (RFC-shaped JSON for APIs, a page for people).
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import BadRequest


def _refuse_nul() -> None:
    pairs = list(request.args.items(multi=True))
    if request.method == "POST":
        pairs += request.form.items(multi=True)
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        raise BadRequest("Request parameters must not contain NUL characters.")


def init_app(app: Flask) -> None:
    app.before_request(_refuse_nul)
