"""Engine, sessions and schema migrations (Alembic, run programmatically)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def with_driver(url: str) -> str:
    """'postgresql://…' means psycopg2 here (SQLAlchemy 2.1 would otherwise pick psycopg 3, not installed)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = with_driver(url)
    kwargs.setdefault("hide_parameters", True)  # SQL errors must not quote ID or phone numbers
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, **kwargs)
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _foreign_keys_on(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA foreign_keys=ON")
        # Write-ahead log: readers do not wait for the writer (the desk, the gateway and the outbox write while
        # consoles and webhooks read); a write waits up to 10 s for another instead of failing at once.
        if url.split("?")[0] not in ("sqlite://", "sqlite:///:memory:"):
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            dbapi_connection.execute("PRAGMA synchronous=FULL")  # NORMAL measured no faster here
        dbapi_connection.execute("PRAGMA busy_timeout=10000")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", with_driver(url).replace("%", "%%"))  # ConfigParser interpolation
    return config


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the newest schema."""
    logger.info("db.migrate start")
    command.upgrade(alembic_config(url), "head")


def configured_engine() -> Engine | None:
    """For the command-line tools: the configured database, brought to the newest schema; None (the reason
    printed to stderr) when the configuration is invalid."""
    import sys

    from pydantic import ValidationError

    from service.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"配置无效：\n{exc}", file=sys.stderr)
        return None
    assert settings.database_url is not None  # filled in by Settings
    migrate(settings.database_url)
    return make_engine(settings.database_url)
