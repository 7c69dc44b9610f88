"""HTTP for the SDK: one requests.Session, a timeout on every call, and the trace hook.

Every exchange is offered to an optional `trace` callable as an `Exchange` whose
request form, headers and response JSON have their credentials masked
(`masking.SECRET_FIELDS`), so a learner's tour can print them as they are.
Error bodies (RFC 6749 §5.2, RFC 6750 §3) become typed exceptions (`errors.error_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from .errors import ServerError, TransportError, error_for
from .masking import mask, mask_authorization, mask_fields

DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Exchange:
    """One HTTP request and its answer, safe to print (credentials masked)."""

    method: str
    url: str
    request: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    response: Any = None


TraceHook = Callable[[Exchange], None]


class Transport:
    """Sends requests, reports them to `trace`, maps error bodies to exceptions."""

    def __init__(
        self,
        session: requests.Session | None = None,
        trace: TraceHook | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.session = session or requests.Session()
        self.trace = trace
        self.timeout = timeout

    def send(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        bearer: str | None = None,
    ) -> requests.Response:
        """One request; network failures become `TransportError` (no secret in the message)."""
        headers = {"Accept": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        try:
            response = self.session.request(
                method,
                url,
                data=data,
                params=params,
                json=json,
                auth=auth,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            raise TransportError(f"{method} {url} failed: {type(error).__name__}") from None
        self._report(method, response, data, params, json, auth, headers)
        return response

    def _report(
        self,
        method: str,
        response: requests.Response,
        data: Mapping[str, str] | None,
        params: Mapping[str, str] | None,
        json: Any,
        auth: tuple[str, str] | None,
        headers: dict[str, str],
    ) -> None:
        if self.trace is None:
            return
        shown = dict(headers)
        if "Authorization" in shown:
            shown["Authorization"] = mask_authorization(shown["Authorization"])
        if auth is not None:
            shown["Authorization"] = f"Basic {auth[0]}:{mask(auth[1])}"
        sent = json if json is not None else dict(data or params or {})
        request = mask_fields(sent)
        url = str(response.url).split("?", 1)[0]
        self.trace(
            Exchange(
                method=method,
                url=url,
                request=request,
                headers=shown,
                status=response.status_code,
                response=mask_fields(_json_or_none(response)),
            )
        )

    def json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """The JSON object of a 2xx answer; an error body raises its typed `OAuthError`."""
        response = self.send(method, url, **kwargs)
        body = _json_or_none(response)
        if response.ok and isinstance(body, dict):
            return body
        if response.ok and not response.content:
            return {}  # e.g. RFC 7009 §2.2: revocation answers 200 with no body
        if isinstance(body, dict) and "error" in body:
            raise error_for(body, response.status_code)
        if response.ok:
            raise TransportError(f"{method} {url}: expected a JSON object")
        status = response.status_code
        raise ServerError("server_error", f"HTTP {status} without an error body", status)


def _json_or_none(response: requests.Response) -> Any:
    if "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None
