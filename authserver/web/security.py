"""Response headers: no framing, a restrictive CSP, no caching of anything personal."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, g

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'{extra}"
)


# Host and port as a CSP source may hold them; anything else (`;`, a quote, a space)
# would end the source list and start a directive of the URI's choosing.
ORIGIN_NETLOC = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")
# A private-use scheme (RFC 8252 §7.1, "com.example.app"), as RFC 3986 §3.1 spells a scheme.
PRIVATE_USE_SCHEME = re.compile(r"^[a-z][a-z0-9+.\-]*\.[a-z0-9+.\-]+$")


def allow_form_redirect_to(uri: str) -> None:
    """Let this page's form end on `uri`: browsers apply form-action to every redirect that
    follows a form's submission, so a form whose answer redirects to a client must list the
    client's origin, or for a native app its private-use scheme (RFC 8252 §7.1)."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and ORIGIN_NETLOC.match(parts.netloc):
        source = f"{scheme}://{parts.netloc}"
    elif PRIVATE_USE_SCHEME.match(scheme):
        source = f"{scheme}:"
    else:
        return
    g.setdefault("form_action_origins", []).append(source)


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        extra = "".join(" " + origin for origin in g.get("form_action_origins", []))
        headers["Content-Security-Policy"] = CSP.format(extra=extra)
        headers["X-Frame-Options"] = "DENY"
        headers.setdefault("Cache-Control", "no-store")
    if current_app.extensions["authserver"].settings.https_issuer:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def init_app(app: Flask) -> None:
    app.after_request(_security_headers)
