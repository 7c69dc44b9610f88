"""The `authserver` command line. Every command has --help; scripts read --json output."""

from __future__ import annotations

import click

from .admin import clients, resources, users
from .audit import audit
from .connections import connections
from .demo import demo
from .keys import keys, vault
from .setup import db, init, run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Self-hosted OpenID Connect provider and token vault for AI agents."""


for command in (init, run, db, users, clients, resources, connections, keys, vault, audit, demo):
    main.add_command(command)
