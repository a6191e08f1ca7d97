"""Helpers for action tests: a fake service client and tracker builders (Rasa venv)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.service_client import ServiceError, ServiceUnavailable


class FakeService:
    """Records calls; answers from ``responses`` (a dict or an exception to raise) per method."""

    def __init__(self) -> None:
        self.calls: List[tuple] = []
        self.responses: Dict[str, Any] = {}

    async def _answer(self, method: str, *args: Any) -> Any:
        self.calls.append((method, *args))
        answer = self.responses.get(method)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def start_verification(self, identifier, phone, conversation_id, channel):
        return await self._answer("start_verification", identifier, phone, conversation_id, channel)

    async def confirm_verification(self, verification_id, code):
        return await self._answer("confirm_verification", verification_id, code)

    async def tax_due(self, grant):
        return await self._answer("tax_due", grant)

    async def payments(self, grant, limit=5):
        return await self._answer("payments", grant, limit)

    async def refunds(self, grant):
        return await self._answer("refunds", grant)

    async def create_ticket(self, ticket):
        return await self._answer("create_ticket", ticket)

    async def create_handoff(self, handoff):
        return await self._answer("create_handoff", handoff)

    async def answer_question(self, question, intent, channel, entry_id=None):
        if entry_id:
            return await self._answer("answer_question", question, intent, channel, entry_id)
        return await self._answer("answer_question", question, intent, channel)


def user(text: str, intent: str, confidence: float = 0.9, channel: str = "rest") -> Dict[str, Any]:
    return {
        "event": "user",
        "text": text,
        "input_channel": channel,
        "parse_data": {"intent": {"name": intent, "confidence": confidence}, "entities": []},
    }


def bot(response: str, text: str = "…") -> Dict[str, Any]:
    return {"event": "bot", "text": text, "metadata": {"utter_action": response}}


def make_tracker(
    events: Optional[List[Dict[str, Any]]] = None,
    slots: Optional[Dict[str, Any]] = None,
    sender: str = "conv-1",
    active_loop: Optional[str] = None,
) -> Tracker:
    events = events or []
    last_user = next((e for e in reversed(events) if e["event"] == "user"), None)
    latest_message = (
        {
            "text": last_user["text"],
            "intent": last_user["parse_data"]["intent"],
            "entities": last_user["parse_data"].get("entities", []),
            "metadata": last_user.get("metadata"),
        }
        if last_user
        else {}
    )
    return Tracker(
        sender,
        slots or {},
        latest_message,
        events,
        False,
        None,
        {"name": active_loop} if active_loop else {},
        "action_listen",
    )


def responses(dispatcher: CollectingDispatcher) -> List[Optional[str]]:
    return [m.get("response") for m in dispatcher.messages]


__all__ = ["FakeService", "ServiceError", "ServiceUnavailable", "bot", "make_tracker", "responses", "user"]
