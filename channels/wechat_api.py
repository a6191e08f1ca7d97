"""WeChat's server API as the service uses it (async, httpx): the access_token, cached in one place and refreshed
before it expires, and customer-service text messages (客服消息) with WeChat's error codes mapped to
``DeliveryFailed`` (permanent or worth retrying).

The token comes from the stable-token endpoint by default (``POST /cgi-bin/stable_token``, getStableAccessToken):
while a token is valid, every caller gets that same token, so several service replicas share one instead of each
fetch replacing the token the others hold, as ``GET /cgi-bin/token`` does. Its force-refresh mode (20 a day, meant
for a leaked token) is never used: after 40001/42001 a plain call returns the token in force.

wechatpy's ``WeChatClient`` covers the same endpoints but is synchronous (requests); the outbox is async, so the
two calls are written here.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from channels.outbox import DeliveryFailed

logger = logging.getLogger(__name__)

TOKEN_EXPIRED = {40001, 40014, 42001}  # invalid credential, invalid access_token, access_token expired
# Trying again cannot help: outside the 48-hour window (45015), too many messages without a reply from the user
# (45047), not a follower / invalid openid (43004, 40003), the account may not send customer-service messages (48001)
PERMANENT = {45015, 45047, 43004, 40003, 48001}
REFRESH_EARLY_SECONDS = 300.0
MAX_MEDIA_BYTES = 2_000_000  # a WeChat voice message is at most 60 s of AMR, about 60 KB
_SECRET_IN_URL = re.compile(r"((?:secret|access_token)=)[^&\s\"']+")


class RedactSecrets(logging.Filter):
    """httpx logs every request URL at INFO: the token endpoint's ``secret`` and every call's ``access_token``
    are in the query string, so they are blanked out of those lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed log call must not lose the record
            return True
        redacted = _SECRET_IN_URL.sub(r"\1***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_http_logs() -> None:
    http_logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactSecrets) for f in http_logger.filters):
        http_logger.addFilter(RedactSecrets())


class WeChatApi:
    """One per app: holds the access_token (one fetch at a time, shared by every send) and a connection pool."""

    def __init__(self, base_url: str, app_id: str, app_secret: str, timeout: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, stable_token: bool = True) -> None:
        self.base_url, self.app_id, self._secret = base_url.rstrip("/"), app_id, app_secret
        self.stable_token = stable_token
        self.timeout, self.clock = timeout, clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._client: httpx.AsyncClient | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.token_fetches = 0

    def _bound(self) -> tuple[httpx.AsyncClient, asyncio.Lock]:
        """The connection pool and the token lock of the running event loop (neither can move between loops; the
        service has one, tests may run a second)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._lock is None or self._loop is not loop:
            self._client, self._lock, self._loop = httpx.AsyncClient(timeout=self.timeout), asyncio.Lock(), loop
        return self._client, self._lock

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _call(self, method: str, path: str, params: dict[str, str], body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = await self._bound()[0].request(method, f"{self.base_url}{path}", params=params, json=body)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"wechat {path}: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise DeliveryFailed(f"wechat {path}: HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise DeliveryFailed(f"wechat {path}: not JSON") from exc
        if not isinstance(answer, dict):
            raise DeliveryFailed(f"wechat {path}: unexpected answer")
        return answer

    async def token(self) -> str:
        """The cached access_token, fetched when there is none or it expires within five minutes."""
        async with self._bound()[1]:
            if self._token and self.clock() < self._expires_at:
                return self._token
            credentials = {"grant_type": "client_credential", "appid": self.app_id, "secret": self._secret}
            if self.stable_token:
                answer = await self._call("POST", "/cgi-bin/stable_token", {}, {**credentials, "force_refresh": False})
            else:
                answer = await self._call("GET", "/cgi-bin/token", credentials)
            token, expires_in = answer.get("access_token"), answer.get("expires_in")
            if not isinstance(token, str) or not token:
                errcode = answer.get("errcode")
                logger.warning("wechat.token_failed errcode=%s", errcode)
                raise DeliveryFailed(f"access_token errcode {errcode}")
            lifetime = float(expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else 7200.0
            self._token = token
            self._expires_at = self.clock() + lifetime - min(REFRESH_EARLY_SECONDS, lifetime / 2)
            self.token_fetches += 1
            logger.info("wechat.token_fetched expires_in=%s", int(lifetime))
            return token

    def _forget(self, token: str) -> None:
        """Drop ``token`` if it is still the cached one (a concurrent send may have renewed it already)."""
        if self._token == token:
            self._token, self._expires_at = None, 0.0

    async def send_text(self, openid: str, content: str) -> None:
        """One customer-service text message; an invalid or expired access_token is renewed and the send tried once
        more. Raises DeliveryFailed (``permanent`` when WeChat will not take it later either)."""
        body = {"touser": openid, "msgtype": "text", "text": {"content": content}}
        for attempt in (1, 2):
            token = await self.token()
            answer = await self._call("POST", "/cgi-bin/message/custom/send", {"access_token": token}, body)
            errcode = answer.get("errcode", 0)
            if errcode == 0:
                return
            if errcode in TOKEN_EXPIRED and attempt == 1:
                logger.info("wechat.token_renew errcode=%s", errcode)
                self._forget(token)
                continue
            logger.warning("wechat.send_failed openid=%s errcode=%s", openid, errcode)
            raise DeliveryFailed(f"wechat errcode {errcode}: {str(answer.get('errmsg', ''))[:80]}",
                                 permanent=errcode in PERMANENT)

    async def download_media(self, media_id: str, max_bytes: int = MAX_MEDIA_BYTES) -> bytes:
        """A temporary media file (a voice message's audio) by its MediaId, through ``GET /cgi-bin/media/get``.
        WeChat answers the file itself, or JSON with an ``errcode``; an expired token is renewed once. Raises
        DeliveryFailed (``permanent`` for an unknown or expired media id, or a file over ``max_bytes``)."""
        client = self._bound()[0]
        for attempt in (1, 2):
            token = await self.token()
            try:
                async with client.stream("GET", f"{self.base_url}/cgi-bin/media/get",
                                         params={"access_token": token, "media_id": media_id}) as response:
                    if response.status_code != 200:
                        raise DeliveryFailed(f"wechat media/get: HTTP {response.status_code}")
                    data = bytearray()
                    async for block in response.aiter_bytes():
                        data += block
                        if len(data) > max_bytes:
                            raise DeliveryFailed(f"wechat media/get: over {max_bytes} bytes", permanent=True)
                    kind = response.headers.get("content-type", "")
            except httpx.HTTPError as exc:
                raise DeliveryFailed(f"wechat media/get: {type(exc).__name__}") from exc
            if "json" not in kind and not kind.startswith("text/"):
                return bytes(data)
            try:
                answer = json.loads(bytes(data))
            except ValueError as exc:
                raise DeliveryFailed("wechat media/get: neither a file nor JSON") from exc
            errcode = answer.get("errcode") if isinstance(answer, dict) else None
            if errcode in TOKEN_EXPIRED and attempt == 1:
                logger.info("wechat.token_renew errcode=%s", errcode)
                self._forget(token)
                continue
            logger.warning("wechat.media_failed errcode=%s", errcode)
            raise DeliveryFailed(f"wechat media/get errcode {errcode}", permanent=errcode in (40007, 40008))
        raise DeliveryFailed("wechat media/get: the access_token was refused twice")
