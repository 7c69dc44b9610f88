"""Mock third-party OAuth 2.0 provider with a free/busy API (stands in for Google Calendar).

The token vault connects to it like to any upstream: authorization code with
PKCE (S256 only), confidential client, rotating refresh tokens, RFC 7009
revocation. Run it with ``python -m demo_agent.calendar [--port 8002]``; build it
in tests with ``create_app({...})``.

Configuration (``CALENDAR_*`` environment variables, or keys of ``create_app``'s dict):

- ``CALENDAR_ISSUER``: issuer URL without trailing slash (``http://127.0.0.1:8002``).
- ``CALENDAR_DATABASE_URL``: SQLAlchemy URL (``sqlite:///instance/calendar.db``).
- ``CALENDAR_SECRET_KEY``: session key (default: generated per process, with a warning).
- ``CALENDAR_ACCESS_TOKEN_TTL``: access token lifetime in seconds (3600).
- ``CALENDAR_CLIENTS``: JSON list of ``{client_id, client_secret, redirect_uris}``
  (default: ``authserver-vault`` / ``calendar-dev-secret-change-me`` redirecting to
  ``http://127.0.0.1:8000/connections/calendar/callback``).
- ``CALENDAR_TIMEZONE``: IANA zone of the calendars (default: the host's zone).
- ``CALENDAR_TEST_CONTROLS``: ``1`` enables the test controls below (default off).

Endpoints: ``GET /.well-known/oauth-authorization-server`` (RFC 8414),
``GET /authorize``, ``GET/POST /login``, ``GET /logout``, ``GET/POST /consent``,
``POST /token``, ``POST /revoke``, ``GET /freebusy?start=&end=`` (scope
``calendar.freebusy`` or ``calendar.read``; busy intervals, no titles) and
``GET /events?start=&end=`` (scope ``calendar.read``). Scopes: ``calendar.freebusy``,
``calendar.read``; ``offline_access`` is accepted and ignored.

Test controls (only with ``CALENDAR_TEST_CONTROLS=1``; otherwise every ``/_test``
path is 404):

- ``GET /_test/stats``: ``{"refresh_grants", "code_grants", "revocations",
  "refresh_attempts"}``, persisted counters of successful refresh grants,
  successful code grants, answered revocation requests and all refresh requests.
- ``POST /_test/faults`` with JSON ``{"token": MODE, "hang_seconds": s,
  "delay_seconds": s}`` sets how ``POST /token`` answers refresh grants (after
  client authentication, before any token is read; omitted keys reset):
  ``none`` (normal), ``server_error`` (500 ``server_error``), ``hang`` (sleep
  ``hang_seconds``, default 30, then 500), ``omit_refresh_token`` (access token
  only; the presented refresh token is not rotated and stays valid, like Google),
  ``invalid_grant`` (400 ``invalid_grant``, the token stays valid), ``narrow_scope``
  (the refreshed token gets only the grant's first scope), ``string_expires_in``
  (``"expires_in": "3600"``, a string, as some providers send it).
  ``delay_seconds`` delays every refresh answer, in any mode.
  ``GET /_test/faults`` shows the current setting.
- ``POST /_test/expire-access-tokens``: every access token is expired now.

Demo users (``DEMO_USERS``): alice / alice-calendar-pw, bob / bob-calendar-pw.
Their events are anchored to the current local date: alice is busy tomorrow
15:00-16:00 (Dentist) and free tomorrow 09:00-10:00. Token values, codes and
secrets are never logged; the database holds only their SHA-256 digests.
"""

from .app import create_app
from .demo_data import DEMO_EVENTS, DEMO_USERS

__all__ = ["DEMO_EVENTS", "DEMO_USERS", "create_app"]
