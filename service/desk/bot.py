"""The desk's and gateway's client of the Rasa server: send a user's message, and give a conversation back to
the bot after a person handled it (resume the paused tracker, then trigger the external event that makes the
bot ask for a satisfaction rating)."""
from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import httpx

logger = logging.getLogger(__name__)

HANDOFF_CLOSED = "EXTERNAL_handoff_closed"


class BotUnavailable(Exception):
    pass


class BotClient:
    def __init__(self, url: str | None, token: str | None, timeout: float = 30.0) -> None:
        self.url, self.token, self.timeout = (url or "").rstrip("/"), token, timeout
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> httpx.AsyncClient:
        """One connection pool per event loop (making a client costs milliseconds of CPU: its TLS context)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = httpx.AsyncClient(timeout=self.timeout), loop
        return self._client

    @property
    def configured(self) -> bool:
        return bool(self.url)

    async def _post(self, path: str, body: dict[str, Any], auth: bool = True) -> Any:
        if not self.url:
            raise BotUnavailable("TAXBOT_RASA_URL is not set")
        params = {"token": self.token} if auth and self.token else None
        try:
            response = await self._http().post(f"{self.url}{path}", json=body, params=params)
        except httpx.HTTPError as exc:
            raise BotUnavailable(type(exc).__name__) from exc
        if response.status_code >= 300:
            raise BotUnavailable(f"HTTP {response.status_code}")
        return response.json()

    async def send(self, conversation_id: str, text: str, channel: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        """The bot's replies to one user message, in Rasa's REST format."""
        body = {"sender": conversation_id, "message": text, "input_channel": channel, "metadata": metadata}
        replies = await self._post("/webhooks/rest/webhook", body, auth=False)
        return replies if isinstance(replies, list) else []

    async def resume(self, conversation_id: str, ask_rating: bool) -> list[dict[str, Any]]:
        """Un-pause the conversation; with ``ask_rating`` the bot then asks for a rating (its messages returned)."""
        path = f"/conversations/{quote(conversation_id, safe='')}"
        await self._post(f"{path}/tracker/events", {"event": "resume"})
        if not ask_rating:
            return []
        answer = await self._post(f"{path}/trigger_intent", {"name": HANDOFF_CLOSED, "entities": {}})
        messages = answer.get("messages") if isinstance(answer, dict) else None
        return messages if isinstance(messages, list) else []
