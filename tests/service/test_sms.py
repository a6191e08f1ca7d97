"""SMS senders: the demo log line masks the phone; the HTTP sender talks to a fake gateway on loopback."""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from service.errors import SmsDeliveryFailed
from service.sms import HttpSmsSender, LogSmsSender
from taxlib.privacy import install_log_masking

TEXT = "【12366纳税服务】您的验证码为654321，5分钟内有效，请勿泄露给他人。"


class FakeGateway(ThreadingHTTPServer):
    status = 200
    requests: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    server: FakeGateway

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append({"path": self.path, "auth": self.headers["Authorization"], "json": json.loads(body)})
        self.send_response(self.server.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    server = FakeGateway(("127.0.0.1", 0), _Handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server: FakeGateway) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/sms/send"


def test_log_sender_masks_the_phone_not_the_text(caplog: pytest.LogCaptureFixture) -> None:
    install_log_masking()
    with caplog.at_level(logging.WARNING, logger="service.sms"):
        asyncio.run(LogSmsSender().send("13817414333", TEXT))
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"demo SMS to 138****4333: {TEXT}"


def test_http_sender_posts_json_with_bearer_key(gateway: FakeGateway) -> None:
    asyncio.run(HttpSmsSender(_url(gateway), "gateway-key-123").send("13817414333", TEXT))
    assert gateway.requests == [{"path": "/sms/send", "auth": "Bearer gateway-key-123",
                                 "json": {"phone": "13817414333", "text": TEXT}}]


@pytest.mark.parametrize("status", [400, 500, 503])
def test_http_sender_non_2xx_raises(gateway: FakeGateway, status: int) -> None:
    gateway.status = status
    with pytest.raises(SmsDeliveryFailed):
        asyncio.run(HttpSmsSender(_url(gateway), "k").send("13817414333", TEXT))


def test_http_sender_network_error_raises(gateway: FakeGateway) -> None:
    url = _url(gateway)
    gateway.shutdown()
    gateway.server_close()
    with pytest.raises(SmsDeliveryFailed):
        asyncio.run(HttpSmsSender(url, "k", timeout=1).send("13817414333", TEXT))
