"""Constants and fakes shared by the service tests (fixtures live in conftest.py)."""
from __future__ import annotations

import re

from service.sms import LogSmsSender

TOKEN = "Kq8vZ2pL9xW4mN7rT5-svc-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

# Fixed demo taxpayers (service/demo_data)
ZHANG = {"identifier": "110101198704020880", "phone": "13817414333"}
YUNFAN = {"identifier": "9111010178CCCC3FLD", "phone": "13925449920"}
LINA = {"identifier": "310104199402160600", "phone": "15718746331"}


class CapturingSms(LogSmsSender):
    """The demo sender (so its log line is exercised) that also keeps every message."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, phone: str, text: str) -> None:
        await super().send(phone, text)
        self.sent.append((phone, text))

    @property
    def last_code(self) -> str:
        match = re.search(r"验证码为(\d{6})", self.sent[-1][1])
        assert match, self.sent[-1]
        return match.group(1)
