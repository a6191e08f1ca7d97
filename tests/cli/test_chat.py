import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from cli.chat import chat
from cli.config import RuntimeConfig


class FakeRest(BaseHTTPRequestHandler):
    """The service's chat gateway as ``taxbot chat`` sees it: replies to a send, and (later) an agent's message."""

    received: list = []

    def do_GET(self):  # noqa: N802
        agent = {"id": 100, "kind": "agent", "text": "您好，我是人工客服小李", "payload": None}
        self._answer({"items": [agent] if len(FakeRest.received) >= 2 else []})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeRest.received.append(body)
        n = len(FakeRest.received)
        answer = {"replies": [{"id": n, "kind": "bot", "text": "需要转人工吗？", "payload": {"buttons": [
            {"title": "转人工", "payload": "/request_human"}, {"title": "不用", "payload": "/deny"}]}}]}
        self._answer(answer)

    def _answer(self, answer):
        data = json.dumps(answer, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_buttons_are_numbered_and_a_number_sends_the_payload():
    server = HTTPServer(("127.0.0.1", 0), FakeRest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = RuntimeConfig(_env_file=None, service_port=server.server_address[1])
        out = io.StringIO()
        lines = SlowLines(["听不懂\n", "1\n", "/exit\n"], pause_before=2)
        assert chat(cfg, sender="session-0123456789", stdin=lines, out=out) == 0
    finally:
        server.shutdown()
    assert [r["text"] for r in FakeRest.received] == ["听不懂", "/request_human"]
    assert {r["session"] for r in FakeRest.received} == {"session-0123456789"}
    assert "[1] 转人工" in out.getvalue() and "[2] 不用" in out.getvalue()
    assert out.getvalue().count("客服：您好，我是人工客服小李") == 1  # arrived while the user was typing


class SlowLines(io.StringIO):
    """stdin that pauses before one line, as a person typing does, so the waiting thread gets a turn."""

    def __init__(self, lines, pause_before):
        super().__init__("".join(lines))
        self.pause_before, self.count = pause_before, 0

    def readline(self, *args):
        self.count += 1
        if self.count == self.pause_before + 1:
            threading.Event().wait(1.5)
        return super().readline(*args)


def test_no_server_running_says_how_to_start_it():
    cfg = RuntimeConfig(_env_file=None, service_port=9)
    out = io.StringIO()
    assert chat(cfg, stdin=io.StringIO("你好\n"), out=out) == 2
    assert "./taxbot run" in out.getvalue()
