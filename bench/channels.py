"""Channels speed, with the whole system running (``./taxbot run`` on spare ports, a local stand-in for WeChat's API):

- WeChat: acknowledgement latency of ``POST /wechat`` (plaintext mode, real signatures) with 50 users sending at once,
  p50 / p99 (WeChat gives up after 5 s; the target is p99 <= 300 ms);
- web chat: turn latency over the WebSocket, from sending a message to its acknowledgement (which comes after the
  bot's answer), p50 / p95, for turns that do not consult the knowledge base, and apart for policy questions;
- the gateway: messages per second answered, 20 web chat users sending at once.

    .venvs/service/bin/python bench/channels.py [--wechat-users 50] [--rounds 10]

Prints one line per measurement and, last, one JSON object.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import sys
import tempfile
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.nlu_parse import percentile  # noqa: E402
from tests.system.conftest import start_system, stop_system  # noqa: E402

WECHAT_TOKEN = "benchtoken" + uuid.uuid4().hex[:8]
PLAIN_TURNS = ["你好", "谢谢", "好的", "再见", "我要投诉", "算了"]  # NLU and dialogue only
POLICY_TURNS = ["个税起征点是多少", "专票开错了怎么红冲", "年终奖怎么交税"]


class FakeWeChatApi(BaseHTTPRequestHandler):
    """WeChat's token and customer-service endpoints, answering at once (what they are sent is not measured)."""

    TOKEN = {"access_token": "bench-token", "expires_in": 7200}

    def do_GET(self) -> None:  # noqa: N802 (GET /cgi-bin/token)
        self._json(self.TOKEN)

    def do_POST(self) -> None:  # noqa: N802 (POST /cgi-bin/stable_token, /cgi-bin/message/custom/send)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._json(self.TOKEN if self.path.startswith("/cgi-bin/stable_token") else {"errcode": 0, "errmsg": "ok"})

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def signed_query(openid: str) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": openid}


def text_xml(openid: str, text: str, msg_id: int) -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>").encode()


async def wechat_acks(url: str, users: int, rounds: int) -> dict[str, float]:
    """Each user on its own keep-alive connection, sending a new message 0.2 s after the last was acknowledged; a
    first round, unmeasured, warms the service up (its first queries and database connections).

    The requests are written and read with bare asyncio streams, not an HTTP client library. With an httpx client
    for the 50 users the client itself was the bottleneck on this 2-core machine: against the same service it
    measured p99 1.2-1.8 s where these streams measure 60-170 ms, and still 150 ms when every request opens a new
    connection. The client's own delays would be counted as the service's."""
    latencies: list[float] = []
    host, port = url.removeprefix("http://").rsplit(":", 1)

    async def user(n: int) -> None:
        openid = f"oBench{n:06d}{uuid.uuid4().hex[:12]}"
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for r in range(-1, rounds):  # round -1 warms the service up (its first queries, connections) unmeasured
                body = text_xml(openid, PLAIN_TURNS[r % len(PLAIN_TURNS)], 10**12 + n * 1000 + r + 1)
                head = (f"POST /wechat?{urlencode(signed_query(openid))} HTTP/1.1\r\nHost: {host}\r\n"
                        f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n").encode()
                started = time.perf_counter()
                writer.write(head + body)
                status, reply = await read_response(reader)
                if r >= 0:
                    latencies.append((time.perf_counter() - started) * 1000)
                assert status == 200 and reply == b"success", (status, reply)
                await asyncio.sleep(0.2)
        finally:
            writer.close()

    await asyncio.gather(*(user(n) for n in range(users)))
    return {"p50_ms": round(percentile(latencies, 50), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1), "requests": len(latencies)}


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length body (what uvicorn sends for ``success``)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    return int(lines[0].split()[1]), await reader.readexactly(length)


async def web_turn(ws, text: str) -> float:  # type: ignore[no-untyped-def]
    client_id = uuid.uuid4().hex[:16]
    started = time.perf_counter()
    await ws.send(json.dumps({"type": "message", "id": client_id, "text": text}))
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "ack" and frame.get("id") == client_id:
            return (time.perf_counter() - started) * 1000
        if frame.get("type") == "error" and frame.get("id") == client_id:
            raise SystemExit(f"web chat refused a bench message: {frame}")


async def open_chat(url: str):  # type: ignore[no-untyped-def]
    import websockets

    ws = await websockets.connect(url.replace("http://", "ws://") + "/chat/ws", max_size=2**22)
    await ws.send(json.dumps({"type": "hello", "session": f"bench-{uuid.uuid4().hex}", "last_seen": 0}))
    while json.loads(await ws.recv()).get("type") != "welcome":
        pass
    return ws


async def web_turns(url: str, rounds: int) -> dict[str, dict[str, float]]:
    plain, policy = [], []
    warm = await open_chat(url)  # the first conversation after a start pays TensorFlow's tracing
    for text in PLAIN_TURNS + POLICY_TURNS:
        await web_turn(warm, text)
    await warm.close()
    for _ in range(rounds):
        ws = await open_chat(url)
        for text in PLAIN_TURNS:
            plain.append(await web_turn(ws, text))
        for text in POLICY_TURNS:
            policy.append(await web_turn(ws, text))
        await ws.close()

    def summary(values: list[float]) -> dict[str, float]:
        return {"p50_ms": round(percentile(values, 50), 1), "p95_ms": round(percentile(values, 95), 1),
                "turns": len(values)}

    return {"plain": summary(plain), "policy": summary(policy)}


async def gateway_rate(url: str, users: int, each: int) -> dict[str, float]:
    chats = [await open_chat(url) for _ in range(users)]
    started = time.perf_counter()

    async def talk(ws) -> None:  # type: ignore[no-untyped-def]
        for i in range(each):
            await web_turn(ws, PLAIN_TURNS[i % 4])

    await asyncio.gather(*(talk(ws) for ws in chats))
    seconds = time.perf_counter() - started
    for ws in chats:
        await ws.close()
    return {"messages_per_s": round(users * each / seconds, 1), "messages": users * each, "users": users}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wechat-users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--only", choices=("webchat", "wechat"), help="measure one channel")
    args = parser.parse_args()
    # WeChat's stand-in runs in its own process: in this one it would compete with the measuring client for the GIL
    # while the outbox sends it the answers, and the client's own delay would count as the service's.
    api = ThreadingHTTPServer(("127.0.0.1", 0), FakeWeChatApi)
    server = multiprocessing.Process(target=api.serve_forever, daemon=True)
    server.start()
    api.socket.close()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        system = start_system(Path(tmp), TAXBOT_WECHAT_TOKEN=WECHAT_TOKEN, TAXBOT_WECHAT_APP_ID="wxbench0000000000",
                              TAXBOT_WECHAT_APP_SECRET="bench-secret-" + uuid.uuid4().hex,
                              TAXBOT_WECHAT_API_BASE=f"http://127.0.0.1:{api.server_address[1]}",
                              # the bench's users all come from 127.0.0.1: the per-address limit is not measured
                              TAXBOT_WEBCHAT_IP_MESSAGES_PER_MINUTE="100000",
                              TAXBOT_WEBCHAT_MESSAGES_PER_MINUTE="1000")
        try:
            if args.only in (None, "webchat"):
                turns = asyncio.run(web_turns(system.service_url, args.rounds))
                print(f"[channels] web chat turns (non-retrieval / policy): {turns}", flush=True)
                rate = asyncio.run(gateway_rate(system.service_url, 20, 10))
                print(f"[channels] gateway throughput: {rate}", flush=True)
                results.update({"webchat_turn_plain": turns["plain"], "webchat_turn_policy": turns["policy"],
                                "gateway_throughput": rate})
            if args.only in (None, "wechat"):
                acks = asyncio.run(wechat_acks(system.service_url, args.wechat_users, args.rounds))
                print(f"[channels] WeChat acknowledgement, {args.wechat_users} users at once: {acks}", flush=True)
                results["wechat_ack"] = acks
        finally:
            stop_system(system)
            server.terminate()
    print(json.dumps(results, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
