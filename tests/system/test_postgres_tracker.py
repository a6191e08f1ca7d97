"""The scale-out storage: Rasa's tracker store and the service database on PostgreSQL."""
from __future__ import annotations

import os
import re
import uuid

import pytest

psycopg2 = pytest.importorskip("psycopg2")

from tests.system.conftest import start_system, stop_system  # noqa: E402

ADMIN_URL = os.environ.get("TAXBOT_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def admin():
    try:
        connection = psycopg2.connect(ADMIN_URL, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}")
    connection.autocommit = True
    return connection


@pytest.fixture(scope="module")
def postgres_system(tmp_path_factory):
    name = f"taxbot_test_{uuid.uuid4().hex[:8]}"
    connection = admin()  # autocommit: CREATE DATABASE cannot run inside a transaction
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    connection.close()
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    system = start_system(tmp_path_factory.mktemp("pg"), TAXBOT_TRACKER_STORE_URL=url, TAXBOT_DATABASE_URL=url)
    yield system, url
    stop_system(system)
    connection = admin()
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    connection.close()


def test_conversation_and_ticket_are_stored_in_postgresql(postgres_system):
    system, url = postgres_system
    sender = f"pg-{uuid.uuid4().hex[:8]}"
    system.texts(sender, "我有个建议")
    reply = system.texts(sender, "希望电子税务局的申报页面能自动保存草稿")
    reference = re.search(r"JY\d{14}", reply)
    assert reference, reply
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT type_name FROM events WHERE sender_id = %s", (sender,))
        kinds = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT kind, detail FROM tickets WHERE reference = %s", (reference.group(0),))
        ticket = cursor.fetchone()
    assert {"user", "bot", "action", "active_loop", "slot"} <= kinds
    assert ticket == ("suggestion", "希望电子税务局的申报页面能自动保存草稿")
    assert not (system.data_dir / "rasa_tracker.db").exists()
