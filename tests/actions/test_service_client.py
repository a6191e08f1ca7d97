"""The HTTP client against a real local aiohttp server (no fakes at this level)."""
import asyncio

import pytest
from aiohttp import web

from actions.service_client import ServiceClient, ServiceConfig, ServiceError, ServiceUnavailable, get_service_client, set_service_client


def track(clients, client):
    clients.append(client)
    return client


@pytest.fixture
async def server():
    seen = []

    async def verifications(request):
        seen.append((request.headers.get("Authorization"), await request.json()))
        body = await request.json()
        if body["phone"] == "13000000000":
            return web.json_response({"error": "no_match", "message": "不一致"}, status=404)
        return web.json_response({"verification_id": "v1", "masked_phone": "138****4333", "expires_in": 300}, status=201)

    async def tax_due(request):
        seen.append((request.headers.get("X-Taxpayer-Grant"), None))
        return web.json_response({"items": [], "total": "0.00"})

    async def slow(request):
        import asyncio

        await asyncio.sleep(0.5)
        return web.json_response({})

    async def broken(request):
        return web.Response(status=500, text="Internal Server Error")

    app = web.Application()
    app.router.add_post("/api/v1/identity/verifications", verifications)
    app.router.add_get("/api/v1/me/tax-due", tax_due)
    app.router.add_post("/api/v1/tickets", broken)
    app.router.add_post("/api/v1/handoffs", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    clients = []
    yield f"http://127.0.0.1:{port}", seen, clients
    for client in clients:
        await client.close()
    await runner.cleanup()


async def test_sends_the_token_and_returns_the_body(server):
    url, seen, clients = server
    client = track(clients, ServiceClient(ServiceConfig(url=url, token="t" * 20)))
    started = await client.start_verification("110101198704020880", "13817414333", "c1", "rest")
    assert started["verification_id"] == "v1"
    assert seen[0][0] == "Bearer " + "t" * 20
    assert seen[0][1]["conversation_id"] == "c1"
    await client.tax_due("grant-1")
    assert seen[1][0] == "grant-1"


async def test_error_bodies_become_typed_errors(server):
    url, _, clients = server
    client = track(clients, ServiceClient(ServiceConfig(url=url, token="t" * 20)))
    with pytest.raises(ServiceError) as err:
        await client.start_verification("110101198704020880", "13000000000", "c1", "rest")
    assert (err.value.status, err.value.code) == (404, "no_match")


async def test_server_errors_and_unreachable_services_are_unavailable(server):
    url, _, clients = server
    with pytest.raises(ServiceUnavailable):
        await track(clients, ServiceClient(ServiceConfig(url=url, token="t" * 20))).create_ticket({"kind": "complaint"})
    with pytest.raises(ServiceUnavailable):
        await track(clients, ServiceClient(ServiceConfig(url="http://127.0.0.1:9", token="t" * 20, timeout_seconds=1))).tax_due("g")


async def test_missing_route_means_no_knowledge_answer(server):
    url, _, clients = server
    assert await track(clients, ServiceClient(ServiceConfig(url=url, token="t" * 20))).answer_question("q", "ask_policy", "rest") is None


def test_client_needs_a_token(monkeypatch):
    set_service_client(None)
    monkeypatch.delenv("TAXBOT_SERVICE_TOKEN", raising=False)
    with pytest.raises(ServiceUnavailable):
        get_service_client()


async def test_a_slow_service_times_out_as_unavailable(server):
    url, _, clients = server
    client = track(clients, ServiceClient(ServiceConfig(url=url, token="t" * 20, timeout_seconds=0.3)))
    with pytest.raises(ServiceUnavailable):
        await client.create_handoff({"conversation_id": "c1"})
    await asyncio.sleep(0.4)  # let the slow handler finish before the server stops


async def test_one_session_serves_many_requests(server):
    url, seen, clients = server
    client = track(clients, ServiceClient(ServiceConfig(url=url, token="t" * 20)))
    await client.tax_due("g1")
    session = client._session
    await client.tax_due("g2")
    assert client._session is session and not session.closed
    assert [grant for grant, _ in seen] == ["g1", "g2"]
