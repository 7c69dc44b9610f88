"""Authlib request adapters that read parameters only where the RFCs put them.

Authlib's Flask adapter merges query and body; a client secret or code in a URL
ends up in logs and browser history, so POST endpoints read the form body only
(RFC 6749 §2.3.1, §3.2) and GET endpoints the query string only.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cached_property
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from flask import Request
from werkzeug.datastructures import MultiDict


class _Payload(OAuth2Payload):
    def __init__(self, values: MultiDict[str, str]) -> None:
        self._values = values

    @property
    def data(self) -> MultiDict[str, str]:
        return self._values

    @cached_property
    def datalist(self) -> defaultdict[str, list[str]]:
        values: defaultdict[str, list[str]] = defaultdict(list)
        for key in self._values:
            values[key].extend(self._values.getlist(key))
        return values


class StrictOAuth2Request(OAuth2Request):
    """`values`, when given, are the authorization request's parameters in place of the
    HTTP request's own: those of a pushed request (RFC 9126) named by its `request_uri`."""

    def __init__(self, request: Request, values: MultiDict[str, str] | None = None) -> None:
        super().__init__(method=request.method, uri=request.url, headers=request.headers)
        self._request = request
        # Whether the parameters are a pushed request's (RFC 9126), not the URL's or form's.
        self.pushed = values is not None
        if values is None:
            values = request.form if request.method == "POST" else request.args
        self.payload = _Payload(values)

    @property
    def args(self) -> Any:
        return self._request.args

    @property
    def form(self) -> Any:
        return self._request.form if self._request.method == "POST" else MultiDict()
