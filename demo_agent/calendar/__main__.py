"""``python -m demo_agent.calendar``: run the mock calendar provider (Werkzeug, threaded).

The request log prints paths without their query strings, so authorization
requests (state, challenges) never reach the log.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from werkzeug.serving import WSGIRequestHandler, run_simple

from .app import create_app
from .config import PREFIX


class QuietRequestHandler(WSGIRequestHandler):
    """Logs method, path and status only: no query string."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = getattr(self, "path", "").split("?", 1)[0]
        self.log("info", '"%s %s" %s', getattr(self, "command", "-"), path, code)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m demo_agent.calendar", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8002, help="port to listen on (8002)")
    parser.add_argument("--database", help="SQLAlchemy URL (CALENDAR_DATABASE_URL)")
    parser.add_argument("--issuer", help="issuer URL (CALENDAR_ISSUER, else from host and port)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config: dict[str, object] = {}
    if args.database:
        config["DATABASE_URL"] = args.database
    if args.issuer or not os.environ.get(PREFIX + "ISSUER"):
        config["ISSUER"] = args.issuer or f"http://{args.host}:{args.port}"
    app = create_app(config)
    run_simple(args.host, args.port, app, threaded=True, request_handler=QuietRequestHandler)


if __name__ == "__main__":
    main()
