"""Run the mock broker: ``python -m demo_agent.broker [--port 8001] [--issuer URL]``.

Options override the ``BROKER_*`` environment variables. Without ``--audience`` or
``BROKER_AUDIENCE`` the broker's resource identifier is ``http://<host>:<port>``
(``http://127.0.0.1:8001`` by default), matching where it listens.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

from . import create_app


class RedactTokens(logging.Filter):
    """Blank ``access_token=`` values in the dev server's request log (never log a token)."""

    PATTERN = re.compile(r"(access_token=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.PATTERN.sub(r"\1[redacted]", record.getMessage()), None
        return True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m demo_agent.broker", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8001, help="listen port (8001)")
    parser.add_argument("--issuer", help="trusted issuer (BROKER_ISSUER, http://127.0.0.1:8000)")
    parser.add_argument("--audience", help="this broker's resource identifier (BROKER_AUDIENCE)")
    parser.add_argument("--database", help="SQLAlchemy URL (BROKER_DATABASE_URL)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    """The ``create_app`` config: explicit options only, plus the derived audience."""
    config: dict[str, Any] = {}
    if args.issuer:
        config["BROKER_ISSUER"] = args.issuer
    if args.database:
        config["BROKER_DATABASE_URL"] = args.database
    if args.audience:
        config["BROKER_AUDIENCE"] = args.audience
    elif "BROKER_AUDIENCE" not in environ:
        config["BROKER_AUDIENCE"] = f"http://{args.host}:{args.port}"
    return config


def main(argv: Sequence[str] | None = None) -> None:
    """Start the broker on the Werkzeug development server."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("werkzeug").addFilter(RedactTokens())
    args = parse_args(argv)
    app = create_app(config_from_args(args, dict(os.environ)))
    settings = app.extensions["broker"].settings
    logging.getLogger(__name__).info(
        "broker for issuer %s, audience %s", settings.issuer, settings.audience
    )
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
