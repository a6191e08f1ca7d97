"""A fake of WeChat's server API on loopback (a real HTTP server in a thread), speaking the documented endpoints
the service uses and recording what it is sent:

- ``GET /cgi-bin/token?grant_type=client_credential&appid=…&secret=…`` → ``{"access_token", "expires_in"}``
  (``errcode`` 40013 / 40125 for a wrong AppID / secret); each call issues a new token, and the one it replaces
  stops working ``classic_grace`` seconds later (WeChat: five minutes);
- ``POST /cgi-bin/stable_token`` with ``{"grant_type", "appid", "secret", "force_refresh"}`` → the same, but while the
  current token is valid every plain call returns it; ``force_refresh`` issues a new one and revokes the old;
- ``POST /cgi-bin/message/custom/send?access_token=…`` with ``{"touser", "msgtype": "text", "text": {"content"}}``
  → ``{"errcode": 0, "errmsg": "ok"}``; 40001 for a token it never issued or revoked, 42001 for an expired one,
  45015 for users outside the 48-hour window, 45002 for content over 2048 bytes, and any error queued by a test;
- ``GET /cgi-bin/media/get?access_token=…&media_id=…`` → the media file (``audio/amr`` for voice) with a
  Content-disposition naming it, or ``{"errcode": 40007}`` for an unknown media id.
"""
from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

APP_ID = "wx0123456789abcdef"
APP_SECRET = "fake-app-secret-0123456789abcdef"


@dataclass
class FakeWeChat:
    app_id: str = APP_ID
    app_secret: str = APP_SECRET
    expires_in: int = 7200
    url: str = ""
    sent: list[tuple[str, str]] = field(default_factory=list)  # (openid, content) accepted
    attempts: list[tuple[str, int]] = field(default_factory=list)  # (openid, errcode) of every send
    token_requests: int = 0  # both endpoints
    classic_grace: float = 300.0
    outside_window: set[str] = field(default_factory=set)  # openids answered 45015
    queued_errors: list[int] = field(default_factory=list)  # errcodes for the next sends, in order (0: as usual)
    media: dict[str, bytes] = field(default_factory=dict)  # media_id -> file (tests put voice messages' audio here)
    media_requests: int = 0
    _tokens: dict[str, str] = field(default_factory=dict)  # token -> "valid" | "expired" | "revoked"
    _replaced: dict[str, float] = field(default_factory=dict)  # classic token -> when a newer one replaced it
    _classic: str | None = None
    _stable: str | None = None
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---- what tests do to it

    def expire_tokens(self) -> None:
        """Every issued token now answers 42001 (access_token expired)."""
        with self._lock:
            self._tokens = {token: "expired" for token in self._tokens}

    def revoke_tokens(self) -> None:
        """Every issued token now answers 40001 (invalid credential, e.g. another process fetched a new one)."""
        with self._lock:
            self._tokens = {token: "revoked" for token in self._tokens}

    def texts_for(self, openid: str) -> list[str]:
        with self._lock:
            return [content for who, content in self.sent if who == openid]

    def wait_for(self, openid: str, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts = self.texts_for(openid)
            if len(texts) >= count:
                return texts
            time.sleep(0.02)
        raise AssertionError(f"{openid}: expected {count} messages, got {self.texts_for(openid)}")

    # ---- the endpoints

    def token(self, query: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            refused = self._check_credentials(query)
            if refused:
                return refused
            if self._classic is not None:
                self._replaced[self._classic] = time.monotonic()
            self._classic = self._issue()
            return {"access_token": self._classic, "expires_in": self.expires_in}

    def stable_token(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            refused = self._check_credentials(body)
            if refused:
                return refused
            if body.get("force_refresh") is True and self._stable is not None:
                self._tokens[self._stable] = "revoked"
            if self._stable is None or self._state(self._stable) != "valid":
                self._stable = self._issue()
            return {"access_token": self._stable, "expires_in": self.expires_in}

    def _check_credentials(self, given: dict[str, Any]) -> dict[str, Any] | None:
        self.token_requests += 1
        if given.get("grant_type") != "client_credential" or given.get("appid") != self.app_id:
            return {"errcode": 40013, "errmsg": "invalid appid"}
        if given.get("secret") != self.app_secret:
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        return None

    def _issue(self) -> str:
        token = f"ACCESS_TOKEN_{next(self._counter)}"
        self._tokens[token] = "valid"
        return token

    def _state(self, token: str) -> str:
        state = self._tokens.get(token, "revoked")
        replaced = self._replaced.get(token)
        if state == "valid" and replaced is not None and time.monotonic() - replaced >= self.classic_grace:
            return "revoked"
        return state

    def media_get(self, query: dict[str, str]) -> tuple[bytes | None, dict[str, Any]]:
        """(file, {}) or (None, error)."""
        with self._lock:
            self.media_requests += 1
            state = self._state(query.get("access_token", ""))
            if state != "valid":
                return None, {"errcode": 42001 if state == "expired" else 40001, "errmsg": "invalid credential"}
            data = self.media.get(query.get("media_id", ""))
            if data is None:
                return None, {"errcode": 40007, "errmsg": "invalid media_id"}
            return data, {}

    def custom_send(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        openid = str(body.get("touser"))
        with self._lock:
            state = self._state(query.get("access_token", ""))
            content = (body.get("text") or {}).get("content", "")
            queued = self.queued_errors.pop(0) if self.queued_errors else 0  # 0: answer as usual
            if state != "valid":
                errcode = 42001 if state == "expired" else 40001
            elif body.get("msgtype") != "text" or not isinstance(content, str):
                errcode = 40008
            elif queued:
                errcode = queued
            elif openid in self.outside_window:
                errcode = 45015
            elif len(content.encode("utf-8")) > 2048:
                errcode = 45002
            else:
                errcode = 0
                self.sent.append((openid, content))
            self.attempts.append((openid, errcode))
        return {"errcode": errcode, "errmsg": "ok" if errcode == 0 else f"error {errcode}"}


def _handler(fake: FakeWeChat) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _query(self) -> tuple[str, dict[str, str]]:
            parts = urlsplit(self.path)
            return parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path, query = self._query()
            if path == "/cgi-bin/token":
                return self._answer(200, fake.token(query))
            if path == "/cgi-bin/media/get":
                data, error = fake.media_get(query)
                if data is None:
                    return self._answer(200, error)
                self.send_response(200)
                self.send_header("Content-Type", "audio/amr")
                self.send_header("Content-disposition", f'attachment; filename="{query.get("media_id")}.amr"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None
            return self._answer(404, {"errcode": 404, "errmsg": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            path, query = self._query()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if path == "/cgi-bin/message/custom/send":
                return self._answer(200, fake.custom_send(query, body))
            if path == "/cgi-bin/stable_token":
                return self._answer(200, fake.stable_token(body))
            return self._answer(404, {"errcode": 404, "errmsg": "not found"})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (quiet)
            pass

    return Handler


@contextmanager
def running_fake(**options: Any) -> Iterator[FakeWeChat]:
    fake = FakeWeChat(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-wechat", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
