"""Checks on what a response may reveal, shared by the robustness and page tests."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

# What a leaked stack trace looks like: the trace header, a source path, an exception
# class name, or the name of a library the server is built on.
LEAK = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|\b[A-Z][A-Za-z]*(?:Error|Exception)\b"
    r"|(?i:sqlalchemy|psycopg|sqlite3|werkzeug|authlib|jinja2)"
)
# A random value in an attribute (CSRF token, CSP nonce) can spell a library name by chance
# ("...JiNjA2..."): such values are dropped before looking. Traces have spaces and quotes.
RANDOM_ATTRIBUTE = re.compile(r'="[A-Za-z0-9_.=+/-]{16,}"')


def leaks(response: Any) -> list[str]:
    """Fragments of the body or Location header that look like internals."""
    text = response.get_data(as_text=True) + "\n" + response.headers.get("Location", "")
    return LEAK.findall(RANDOM_ATTRIBUTE.sub('=""', text))


def assert_no_leak(response: Any) -> None:
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    found = leaks(response)
    assert not found, f"response reveals internals: {found}"


def assert_json_error(response: Any, error: str | None = None, status: int | None = None) -> dict:
    """RFC 6749 §5.2 shape: JSON object with string `error` and `error_description`."""
    assert_no_leak(response)
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:300]
    body = response.get_json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("error_description"), str) and body["error_description"], body
    if error is not None:
        assert body["error"] == error, body
    if status is not None:
        assert response.status_code == status, body
    else:
        assert 400 <= response.status_code < 500, body
    return body


def assert_html_page(response: Any, status: int | None = None) -> str:
    """A readable page: HTML with a heading, never a trace."""
    assert_no_leak(response)
    assert response.mimetype == "text/html", response.mimetype
    page = response.get_data(as_text=True)
    assert "<h1>" in page, page[:300]
    if status is not None:
        assert response.status_code == status, page[:500]
    return page


def signed_in_user(client: FlaskClient) -> str | None:
    """The user id in the browser's session cookie (flask-login's `_user_id`), if any."""
    with client.session_transaction() as session:
        value = session.get("_user_id")
        return value if isinstance(value, str) else None
