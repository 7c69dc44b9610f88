"""The `authserver` command line. Every command has --help; scripts read --json output."""

from __future__ import annotations

import click
from sqlalchemy.exc import InterfaceError, OperationalError, ProgrammingError

from vault.errors import DecryptionError, KeyRingError

from ..settings import PREFIX
from .admin import clients, resources, users
from .audit import audit
from .common import database_reason
from .connections import connections
from .demo import demo
from .keys import keys, vault
from .setup import db, init, run


class _Main(click.Group):
    """Turns a key ring that cannot be used into an operator error, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except KeyRingError as error:  # its messages never contain key text
            raise click.ClickException(f"{PREFIX}VAULT_KEYS: {error}") from None
        except (OperationalError, InterfaceError, ProgrammingError) as error:
            raise click.ClickException(
                f"database error: {database_reason(error)} "
                f"(check {PREFIX}DATABASE_URL; a new database needs `authserver init`)"
            ) from None
        except DecryptionError:
            raise click.ClickException(
                f"a stored secret could not be unsealed: is {PREFIX}VAULT_KEYS the key ring "
                "this database was sealed with (and does it still hold every old KEK)?"
            ) from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Self-hosted OpenID Connect provider and token vault for AI agents."""


for command in (init, run, db, users, clients, resources, connections, keys, vault, audit, demo):
    main.add_command(command)
