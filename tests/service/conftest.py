"""Shared fixtures: every DB-touching test runs on SQLite and on PostgreSQL (skipped when unreachable)."""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from service.api.deps import get_sms_sender
from service.app import create_app
from service.db import make_engine, migrate
from service.models import Base
from service.settings import Settings
from tests.service.service_support import AUTH, TOKEN, CapturingSms

PG_URL = os.environ.get("TAXBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TAXBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def fresh_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], str]]:
    """A factory of empty, migrated databases on one backend."""
    if request.param == "sqlite":
        root = tmp_path_factory.mktemp("sqlite")
        yield lambda: f"sqlite:///{root / uuid.uuid4().hex}.db"
        return
    admin = make_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.connect():
            pass
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unreachable at {PG_URL} (set TAXBOT_TEST_POSTGRES_URL): {exc.orig}")
    schema = f"taxbot_test_{uuid.uuid4().hex[:12]}"  # one fresh schema per test session
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    migrate(url)
    engine = make_engine(url)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)

    def empty() -> str:
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        return url

    yield empty
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis (the scale-out tests: pub/sub, shared rate limits); skipped when unreachable."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"Redis unreachable at {REDIS_URL} (set TAXBOT_TEST_REDIS_URL): {exc}")
    return REDIS_URL


@pytest.fixture
def db_url(fresh_database: Callable[[], str]) -> str:
    return fresh_database()


@pytest.fixture
def make_settings(db_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"service_token": TOKEN, "database_url": db_url, "data_dir": tmp_path, "kb_index_dir": tmp_path / "kb"} | overrides
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]
    return make


@pytest.fixture
def sms() -> CapturingSms:
    return CapturingSms()


@pytest.fixture
def make_client(make_settings: Callable[..., Settings], sms: CapturingSms) -> Iterator[Callable[..., TestClient]]:
    """Build an app (migrated, demo data seeded) with the capturing SMS sender; settings overridable."""
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        app = create_app(make_settings(**overrides))
        app.dependency_overrides[get_sms_sender] = lambda: sms
        client = TestClient(app, headers=AUTH)
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def db(client: TestClient) -> Iterator[Session]:
    """A session on the client's database, for asserting rows."""
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        yield session


@pytest.fixture
def start(client: TestClient) -> Callable[..., Any]:
    def start(who: dict[str, str], conversation_id: str = "conv-1", channel: str = "web") -> Any:
        return client.post("/api/v1/identity/verifications",
                           json=who | {"conversation_id": conversation_id, "channel": channel})
    return start


@pytest.fixture
def grant_for(client: TestClient, start: Callable[..., Any], sms: CapturingSms) -> Callable[[dict[str, str]], dict[str, str]]:
    """Verify a taxpayer end to end; returns the X-Taxpayer-Grant header."""
    def verify(who: dict[str, str]) -> dict[str, str]:
        verification_id = start(who).json()["verification_id"]
        response = client.post(f"/api/v1/identity/verifications/{verification_id}/confirm", json={"code": sms.last_code})
        assert response.status_code == 200, response.text
        return {"X-Taxpayer-Grant": response.json()["grant"]}
    return verify
