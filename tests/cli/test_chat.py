import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from cli.chat import chat
from cli.config import RuntimeConfig


class FakeRest(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeRest.received.append(body)
        answer = [{"recipient_id": body["sender"], "text": "需要转人工吗？",
                   "buttons": [{"title": "转人工", "payload": "/request_human"}, {"title": "不用", "payload": "/deny"}]}]
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
        cfg = RuntimeConfig(_env_file=None, rasa_port=server.server_address[1])
        out = io.StringIO()
        assert chat(cfg, sender="s1", stdin=io.StringIO("听不懂\n1\n/exit\n"), out=out) == 0
    finally:
        server.shutdown()
    assert [r["message"] for r in FakeRest.received] == ["听不懂", "/request_human"]
    assert "[1] 转人工" in out.getvalue() and "[2] 不用" in out.getvalue()


def test_no_server_running_says_how_to_start_it():
    cfg = RuntimeConfig(_env_file=None, rasa_port=9)
    out = io.StringIO()
    assert chat(cfg, stdin=io.StringIO("你好\n"), out=out) == 2
    assert "./taxbot run" in out.getvalue()
