"""The one HTTP client the actions use to reach the service app.

Typed exceptions let an action choose the right ``utter_*``; a backend error string is
never shown to a user. Tests replace the client with ``set_service_client(fake)``.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import aiohttp

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """The service answered with an error the caller may want to tell the user about."""

    def __init__(self, status: int, code: str, body: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.body = body or {}


class ServiceUnavailable(Exception):
    """The service could not be reached or failed (network error, timeout, 5xx)."""


@dataclass(frozen=True)
class ServiceConfig:
    url: str
    token: str
    timeout_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> "ServiceConfig":
        token = os.environ.get("TAXBOT_SERVICE_TOKEN", "")
        if not token:
            raise ServiceUnavailable("TAXBOT_SERVICE_TOKEN is not set for the action server")
        return cls(
            url=os.environ.get("TAXBOT_SERVICE_URL", "http://127.0.0.1:8000").rstrip("/"),
            token=token,
            timeout_seconds=float(os.environ.get("TAXBOT_SERVICE_TIMEOUT", "5")),
        )


class ServiceClient:
    """Calls the service app's /api/v1 endpoints."""

    def __init__(self, config: ServiceConfig) -> None:
        self._config = config
        self._session: Optional[aiohttp.ClientSession] = None

    def _client(self) -> aiohttp.ClientSession:
        """One session (and connection pool) per client, created inside the running event loop."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(
        self,
        method: str,
        path: str,
        payload: Optional[Dict[str, Any]] = None,
        grant: Optional[str] = None,
        params: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._config.token}"}
        if grant:
            headers["X-Taxpayer-Grant"] = grant
        try:
            async with self._client().request(
                method, f"{self._config.url}{path}", json=payload, headers=headers, params=params
            ) as response:
                status, text = response.status, await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:  # on 3.10 not the builtin TimeoutError
            logger.warning("service.request_failed method=%s path=%s error=%s", method, path, type(exc).__name__)
            raise ServiceUnavailable(str(exc)) from exc
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = None
        if status >= 500:
            raise ServiceUnavailable(f"{method} {path}: HTTP {status}")
        if status >= 400:
            code = body.get("error") if isinstance(body, dict) else None
            raise ServiceError(status, str(code or f"http_{status}"), body if isinstance(body, dict) else None)
        if not isinstance(body, dict):
            raise ServiceUnavailable(f"{method} {path}: answer is not a JSON object")
        return body

    async def start_verification(self, identifier: str, phone: str, conversation_id: str, channel: str) -> Dict[str, Any]:
        return await self._request(
            "POST",
            "/api/v1/identity/verifications",
            payload={"identifier": identifier, "phone": phone, "conversation_id": conversation_id, "channel": channel},
        )

    async def confirm_verification(self, verification_id: str, code: str) -> Dict[str, Any]:
        return await self._request("POST", f"/api/v1/identity/verifications/{verification_id}/confirm", payload={"code": code})

    async def tax_due(self, grant: str) -> Dict[str, Any]:
        return await self._request("GET", "/api/v1/me/tax-due", grant=grant)

    async def payments(self, grant: str, limit: int = 5) -> Dict[str, Any]:
        return await self._request("GET", "/api/v1/me/payments", grant=grant, params={"limit": limit})

    async def refunds(self, grant: str) -> Dict[str, Any]:
        return await self._request("GET", "/api/v1/me/refunds", grant=grant)

    async def create_ticket(self, ticket: Dict[str, Any]) -> Dict[str, Any]:
        return await self._request("POST", "/api/v1/tickets", payload=ticket)

    async def create_handoff(self, handoff: Dict[str, Any]) -> Dict[str, Any]:
        """Queue the conversation for the desk: reference, status (queued, assigned, after_hours, blacklisted;
        "pending" from services before the desk), position, wait_minutes, group."""
        return await self._request("POST", "/api/v1/handoffs", payload=handoff)

    async def desk_inbound(
        self, conversation_id: str, channel: str, text: str, metadata: Optional[Dict[str, Any]] = None
    ) -> Dict[str, Any]:
        """A user message of a conversation the desk owns (the bot is paused): replies and where it was routed."""
        return await self._request(
            "POST",
            "/api/v1/desk/inbound",
            payload={"conversation_id": conversation_id, "channel": channel, "text": text, "metadata": metadata or {}},
        )

    async def answer_question(
        self, question: str, intent: str, channel: str, entry_id: Optional[str] = None
    ) -> Optional[Dict[str, Any]]:
        """The knowledge base's decision for a question (or for the entry the user picked): status, answer,
        candidates. None when the service has no answer for this request (unknown entry)."""
        payload: Dict[str, Any] = {"question": question[:500], "intent": intent, "channel": channel}
        if entry_id:
            payload["entry_id"] = entry_id
        try:
            return await self._request("POST", "/api/v1/kb/answer", payload=payload)
        except ServiceError as exc:
            if exc.status in (404, 422):
                return None
            raise


_client: Optional[ServiceClient] = None


def get_service_client() -> ServiceClient:
    """The process-wide client, built on first use from the environment."""
    global _client
    if _client is None:
        _client = ServiceClient(ServiceConfig.from_env())
    return _client


def set_service_client(client: Optional[Any]) -> None:
    """Inject a client (tests pass a fake; None resets to the environment's)."""
    global _client
    _client = client
