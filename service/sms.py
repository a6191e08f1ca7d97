"""SMS delivery behind one interface: a log sender for demos and tests, an HTTP gateway for production."""
from __future__ import annotations

import logging
from typing import Protocol

import httpx

from service.errors import SmsDeliveryFailed
from service.settings import Settings
from taxlib.privacy import mask_identifier

logger = logging.getLogger(__name__)


class SmsSender(Protocol):
    async def send(self, phone: str, text: str) -> None: ...


class LogSmsSender:
    """Writes the message to the log so an operator running the demo sees the code."""

    async def send(self, phone: str, text: str) -> None:
        logger.warning("demo SMS to %s: %s", mask_identifier(phone), text)


class HttpSmsSender:
    """POSTs {"phone", "text"} to an SMS gateway with a bearer key."""

    def __init__(self, url: str, key: str, timeout: float = 5.0) -> None:
        self.url, self._key, self.timeout = url, key, timeout

    async def send(self, phone: str, text: str) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.post(
                    self.url, json={"phone": phone, "text": text}, headers={"Authorization": f"Bearer {self._key}"}
                )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            logger.error("sms.delivery_failed to=%s error=%s", mask_identifier(phone), type(exc).__name__)
            raise SmsDeliveryFailed from exc
        logger.info("sms.sent to=%s", mask_identifier(phone))


def make_sms_sender(settings: Settings) -> SmsSender:
    if settings.sms_sender == "http":
        assert settings.sms_http_url and settings.sms_http_key  # guaranteed by Settings validation
        return HttpSmsSender(settings.sms_http_url, settings.sms_http_key.get_secret_value())
    return LogSmsSender()
