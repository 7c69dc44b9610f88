"""Alembic environment: the models' metadata and the configured database."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from authserver.db import make_engine
from authserver.models import Base
from authserver.settings import load_settings
from vault.models import VaultBase

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# The vault keeps its own metadata (it imports nothing from the authserver).
target_metadata = [Base.metadata, VaultBase.metadata]


def _url() -> str:
    return config.attributes.get("database_url") or load_settings().database_url


def run_offline() -> None:
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    given = config.attributes.get("engine")
    engine = given or make_engine(_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=True,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        if given is None:  # an engine made here is closed here (`alembic check`, the CLI)
            engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
