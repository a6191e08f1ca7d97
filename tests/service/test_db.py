"""The checked-in migration builds exactly the models' schema; SQLite enforces foreign keys."""
from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.db import make_engine, migrate, with_driver
from service.models import Base, TaxDue, Taxpayer


def test_migration_matches_models_and_is_idempotent(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)
    engine = make_engine(db_url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []


def test_constraints_are_enforced(db_url: str) -> None:
    migrate(db_url)
    engine = make_engine(db_url)
    bad_rows = [
        TaxDue(taxpayer_pk=999_999, tax_type="增值税", period="2026年1月", amount=Decimal(1), due_date=date.today(), status="unpaid"),
        Taxpayer(name="无证件", kind="individual", phone="13800000000"),
        Taxpayer(id_number="110101198704020880", name="x", kind="alien", phone="13800000000"),
    ]
    for row in bad_rows:
        with Session(engine) as session:
            session.add(row)
            with pytest.raises(IntegrityError):
                session.commit()
    engine.dispose()


def test_naive_datetimes_are_refused() -> None:
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Taxpayer(id_number="110101198704020880", name="x", kind="individual", phone="13800000000",
                             created_at=datetime(2026, 1, 1)))
        with pytest.raises(Exception, match="naive datetime"):
            session.commit()
        session.rollback()
        session.add(Taxpayer(id_number="110101198704020880", name="x", kind="individual", phone="13800000000",
                             created_at=datetime(2026, 1, 1, tzinfo=UTC)))
        session.commit()
        assert session.get(Taxpayer, 1).created_at.tzinfo is not None


def test_postgresql_urls_use_the_installed_driver() -> None:
    assert with_driver("postgresql://u:p%40ss@h:5432/db") == "postgresql+psycopg2://u:p%40ss@h:5432/db"
    assert with_driver("postgresql+psycopg2://h/db") == "postgresql+psycopg2://h/db"
    assert with_driver("sqlite:///data/taxbot.db") == "sqlite:///data/taxbot.db"


def _no_busy_wait(engine) -> None:  # type: ignore[no-untyped-def]
    """SQLite's own busy handler off: a write that meets another's lock fails at once instead of polling."""
    @event.listens_for(engine, "connect")
    def _busy_off(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.execute("PRAGMA busy_timeout=0")


def test_sqlite_writers_take_turns_instead_of_polling(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A write that starts while another thread's write transaction is open waits for that commit on the engine's
    turn (no SQLite busy polling, no 'database is locked'), then succeeds; a failed write gives its turn back on
    rollback."""
    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    _no_busy_wait(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE note (id INTEGER PRIMARY KEY, text TEXT UNIQUE)")
    holding, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql("INSERT INTO note (text) VALUES ('first')")
            holding.set()
            release.wait(5)
            order.append("first committed")
            connection.commit()

    def second(text: str = "second") -> None:
        with engine.connect() as connection:
            connection.exec_driver_sql("INSERT INTO note (text) VALUES (?)", (text,))
            connection.commit()
            order.append(f"{text} committed")

    one = threading.Thread(target=first)
    one.start()
    assert holding.wait(5)
    two = threading.Thread(target=second)
    two.start()
    two.join(0.3)
    assert two.is_alive(), "the second writer did not wait for the first's transaction"
    release.set()
    one.join(5)
    two.join(5)
    assert order == ["first committed", "second committed"]

    with engine.connect() as connection:  # a failed insert, rolled back: the next writer is not kept waiting
        with pytest.raises(IntegrityError):
            connection.exec_driver_sql("INSERT INTO note (text) VALUES ('first')")
        connection.rollback()
    done = threading.Thread(target=second, args=("third",))
    done.start()
    done.join(5)
    assert not done.is_alive() and order[-1] == "third committed"
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM note").scalar() == 3
    engine.dispose()
