"""The checked-in migration builds exactly the models' schema; SQLite enforces foreign keys."""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
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
