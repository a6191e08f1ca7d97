"""Health, version, and the HTTP edge: JSON errors everywhere, no 5xx for bad input, 64 KiB body limit."""
from __future__ import annotations

from collections.abc import Iterator

from fastapi.testclient import TestClient
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.service.service_support import ZHANG
from service import __version__
from service.api.deps import get_session


def test_health_ok_without_token(client: TestClient) -> None:
    response = client.get("/health", headers={"Authorization": ""})
    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})


def test_health_degraded_when_the_database_fails(client: TestClient) -> None:
    broken = create_engine("sqlite:////nonexistent-dir/x/taxbot.db")

    def broken_session() -> Iterator[Session]:
        with Session(broken) as session:
            yield session

    client.app.dependency_overrides[get_session] = broken_session  # type: ignore[attr-defined]
    response = client.get("/health")
    assert (response.status_code, response.json()) == (503, {"status": "degraded", "database": "error"})


def test_version(client: TestClient) -> None:
    assert client.get("/version").json() == {"name": "taxbot-service", "version": __version__} == \
           {"name": "taxbot-service", "version": "0.1.0"}


def test_unknown_route_and_method_are_json(client: TestClient) -> None:
    assert client.get("/api/v1/nothing-here").json()["error"] == "not_found"
    response = client.delete("/api/v1/tickets")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_malformed_bodies_get_json_422(client: TestClient) -> None:
    cases = [
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"json": []},
        {"json": {"identifier": 110101198704020880, "phone": ["x"]}},
    ]
    for case in cases:
        response = client.post("/api/v1/identity/verifications", **case)
        assert response.status_code == 422, case
        body = response.json()
        assert body["error"] == "invalid_request" and body["message"] and isinstance(body["details"], list)
        assert str(ZHANG["identifier"]) not in response.text  # the rejected input is not echoed back
    undecodable = client.post("/api/v1/identity/verifications", content=b"\xff", headers={"Content-Type": "application/json"})
    assert undecodable.status_code == 400 and undecodable.json()["error"] == "invalid_request"


def test_body_over_64_kib_is_refused(client: TestClient) -> None:
    big = {"kind": "suggestion", "detail": "x" * (70 * 1024), "conversation_id": "c", "channel": "web"}
    response = client.post("/api/v1/tickets", json=big)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        for _ in range(70):
            yield b"x" * 1024

    response = client.post("/api/v1/tickets", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"
    small = {"kind": "suggestion", "detail": "x" * 4000, "conversation_id": "c", "channel": "web"}
    assert client.post("/api/v1/tickets", json=small).status_code == 201


def test_nul_characters_are_refused_not_a_500(client: TestClient) -> None:
    ticket = '{"kind": "suggestion", "detail": "a\\u0000b", "conversation_id": "c", "channel": "web"}'
    requests = [
        client.post("/api/v1/tickets", content=ticket, headers={"Content-Type": "application/json"}),
        client.get("/api/v1/tickets?conversation_id=a%00b"),
        client.post("/api/v1/identity/verifications/a%00b/confirm", json={"code": "123456"}),
    ]
    for response in requests:
        assert response.status_code == 422 and response.json()["error"] == "invalid_request"
    assert client.get("/api/v1/tickets?conversation_id=c").json() == {"items": []}
