"""Desk speed: how long a handoff takes to appear on a connected agent console while 200 conversations are already
waiting (the real service app under uvicorn, a supervisor's console on the WebSocket), and queue operations per
second (enqueue, accept, close) through the desk's own code, on SQLite and on PostgreSQL.

    .venvs/service/bin/python bench/desk.py [--waiting 200] [--handoffs 100] [--ops 300] [--postgres URL]

Prints one line per measurement and, last, one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.nlu_parse import percentile  # noqa: E402
from service.db import make_engine, make_sessionmaker, migrate  # noqa: E402
from service.desk import auth  # noqa: E402
from service.desk.bus import Bus  # noqa: E402
from service.desk.core import Desk  # noqa: E402
from service.desk.hours import BusinessHours  # noqa: E402
from service.models import DeskUser  # noqa: E402

PASSWORD = "bench-pass-2026"
PG_URL = os.environ.get("TAXBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_schema(base: str) -> tuple[str, callable]:  # type: ignore[valid-type]
    """A fresh schema on ``base``; returns its URL and a function that drops it."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    schema = f"taxbot_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base, connect_args={"connect_timeout": 3})
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    return url, drop


# ---------------------------------------------------------------- handoff → console latency

async def console_latency(url: str, token: str, waiting: int, handoffs: int) -> dict[str, float]:
    import websockets

    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        login = await client.post("/desk/api/login", json={"username": "banzhang", "password": PASSWORD})
        login.raise_for_status()
        cookie = f"taxdesk_session={login.cookies['taxdesk_session']}"
        for i in range(waiting):
            body = {"conversation_id": f"web-wait{i:012d}", "channel": "webchat", "reason": "user_request",
                    "last_message": "转人工"}
            (await client.post("/api/v1/handoffs", json=body, headers=headers)).raise_for_status()
        arrived: dict[str, float] = {}
        ws_url = url.replace("http://", "ws://") + "/desk/ws"
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, max_size=2**24) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello" and len(hello["cases"]) >= waiting, "the console did not load the queue"

            async def read() -> None:
                async for raw in ws:
                    event = json.loads(raw)
                    if event.get("type") == "case":
                        arrived.setdefault(event["case"]["conversation_id"], time.perf_counter())

            reader = asyncio.create_task(read())
            latencies = []
            for i in range(handoffs):
                conversation = f"web-new{i:013d}"
                started = time.perf_counter()
                body = {"conversation_id": conversation, "channel": "webchat", "reason": "user_request",
                        "last_message": "我要人工"}
                (await client.post("/api/v1/handoffs", json=body, headers=headers)).raise_for_status()
                deadline = started + 10
                while conversation not in arrived and time.perf_counter() < deadline:
                    await asyncio.sleep(0.001)
                if conversation not in arrived:
                    raise SystemExit(f"handoff {conversation} never reached the console")
                latencies.append((arrived[conversation] - started) * 1000)
            reader.cancel()
    return {"p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
            "max_ms": round(max(latencies), 1)}


def start_service(database_url: str, data_dir: Path) -> tuple[subprocess.Popen, str, str]:
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TAXBOT_SERVICE_TOKEN=token, TAXBOT_DATA_DIR=str(data_dir),
               TAXBOT_DATABASE_URL=database_url, TAXBOT_DESK_DEMO_PASSWORD=PASSWORD,
               TAXBOT_KB_INDEX_DIR=str(data_dir / "kb"), TAXBOT_LOG_LEVEL="WARNING")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "service.app:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=(data_dir / "service.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url, token
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"service exited: see {data_dir / 'service.log'}")
        time.sleep(0.3)
    process.kill()
    raise SystemExit("service did not start")


# ---------------------------------------------------------------- queue operations per second

def queue_ops(database_url: str, ops: int) -> dict[str, float]:
    migrate(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    desk = Desk(sessions, Bus(), BusinessHours.parse("always"))
    desk.ensure_groups()
    with sessions() as session:
        agent = auth.create_user(session, "opsagent", PASSWORD, "agent", "压测坐席", ("consult",), max_chats=ops + 1)
    desk.set_state(agent.id, "online")
    with sessions() as session:
        agent = session.get_one(DeskUser, agent.id)
    rates: dict[str, float] = {}
    started = time.perf_counter()
    cases = [desk.open_case(conversation_id=f"ops-{i}", channel="webchat", reason="user_request",
                            last_message="转人工", contact_phone=None, channel_user_id=None, taxpayer=None,
                            context=None).case.id for i in range(ops)]
    rates["enqueue_per_s"] = round(ops / (time.perf_counter() - started), 1)
    started = time.perf_counter()
    for case_id in cases:
        desk.accept(agent, case_id)
    rates["accept_per_s"] = round(ops / (time.perf_counter() - started), 1)
    started = time.perf_counter()
    for case_id in cases:
        desk.close(agent, case_id, "resolved")
    rates["close_per_s"] = round(ops / (time.perf_counter() - started), 1)
    engine.dispose()
    return rates


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiting", type=int, default=200)
    parser.add_argument("--handoffs", type=int, default=100)
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--postgres", default=PG_URL, help="empty string: SQLite only")
    args = parser.parse_args()
    results: dict[str, object] = {}
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            drop = None
            try:
                if backend == "sqlite":
                    url = f"sqlite:///{data}/desk.db"
                    ops_url = f"sqlite:///{data}/ops.db"
                else:
                    url, drop = postgres_schema(args.postgres)
                    ops_url, drop_ops = postgres_schema(args.postgres)
            except Exception as exc:  # PostgreSQL not reachable: say so, measure the rest
                print(f"[desk] {backend}: skipped ({type(exc).__name__})", flush=True)
                continue
            try:
                process, base, token = start_service(url, data)
                try:
                    latency = asyncio.run(console_latency(base, token, args.waiting, args.handoffs))
                finally:
                    process.terminate()
                    process.wait(20)
                print(f"[desk] {backend}: handoff → console with {args.waiting} waiting: {latency}", flush=True)
                ops = queue_ops(ops_url, args.ops)
                print(f"[desk] {backend}: queue operations: {ops}", flush=True)
                results[f"desk_console_latency_{backend}"] = latency
                results[f"desk_queue_ops_{backend}"] = ops
            finally:
                if drop:
                    drop()
                    drop_ops()
    print(json.dumps(results, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
