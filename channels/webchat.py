"""Web chat channel (service venv): the chat page, the embeddable widget and the WebSocket with resume.
(Being written: see issue 5.)"""
from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["web chat"])
