"""Running Alembic from code (`authserver db upgrade`, `authserver init`, tests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

if TYPE_CHECKING:
    from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str, engine: Engine | None = None) -> Config:
    # Alembic is imported here, not at module level: it costs a quarter of the CLI's
    # start-up time and most commands never migrate.
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = database_url
    config.attributes["skip_logging_config"] = True
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def upgrade(database_url: str, engine: Engine | None = None, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url, engine), revision)


def check(database_url: str) -> None:
    """Raise if the models and the migrations disagree (`alembic check`)."""
    from alembic import command

    command.check(alembic_config(database_url))
