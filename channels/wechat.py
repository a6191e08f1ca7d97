"""WeChat official account channel (service venv): the ``/wechat`` webhook and the customer-service message sender.
(Being written: see issue 5.)"""
from __future__ import annotations

from fastapi import APIRouter

from channels.outbox import Sender
from service.settings import Settings

router = APIRouter(tags=["wechat"])


def make_sender(settings: Settings) -> Sender | None:
    """The customer-service message sender when WeChat is configured, else None."""
    return None
