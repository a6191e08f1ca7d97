"""Low-confidence turns, yes/no answers, and handing the conversation to a person.

A handoff queues the conversation at the human-agent desk (the service app) with its full context: the
transcript with NLU's reading of each turn, the slots an agent may see, and what the knowledge base proposed.
While an agent owns the conversation the bot is paused (``ConversationPaused``); the desk resumes it when the
agent closes the conversation and triggers ``EXTERNAL_handoff_closed``, which asks for a satisfaction rating.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, ConversationPaused, EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.dialogue import (
    FALLBACK_INTENT,
    channel_of,
    consecutive_fallbacks,
    last_bot_response,
    latest_intent,
    previous_active_loop,
)
from actions.questions import knowledge_reply
from actions.service_client import ServiceError, ServiceUnavailable, get_service_client
from actions.tickets import contact_phone_of

logger = logging.getLogger(__name__)

# Questions after which "yes" means "give me a person", with the handoff reason each implies.
OFFERS_OF_A_PERSON = {
    "utter_offer_human": "low_confidence",
    "utter_identity_failed": "verification_failed",
    "utter_ask_policy_general": "knowledge_gap",
    "utter_knowledge_expired": "knowledge_gap",
    "utter_knowledge_under_review": "knowledge_gap",
}


def handoff_after_turns() -> int:
    """Consecutive misunderstood turns after which the conversation goes to a person (>= 2)."""
    raw = os.environ.get("TAXBOT_FALLBACK_HANDOFF_TURNS", "3")
    try:
        return max(2, int(raw))
    except ValueError:
        logger.warning("config.invalid TAXBOT_FALLBACK_HANDOFF_TURNS=%r, using 3", raw)
        return 3


# The handoff body the desk accepts: at most 60 KB, with at most the 200 most recent transcript events.
MAX_HANDOFF_BYTES = 60_000
MAX_TRANSCRIPT_EVENTS = 200
RANKING_SIZE = 5
# Slots an agent must not see: the records grant, the SMS code and its verification, the form's bookkeeping.
PRIVATE_SLOTS = frozenset({"taxpayer_grant", "otp_code", "verification_id", "requested_slot",
                           "kb_candidates"})  # the last travels on its own
# Rasa's text for an intent triggered from outside (reminders, the desk's trigger_intent): not something the user said.
EXTERNAL_TEXT_PREFIX = "EXTERNAL: "
QUEUED = frozenset({"queued", "pending"})  # "pending": services from before the desk, without a queue position


def _at(timestamp: Any) -> Optional[str]:
    if not isinstance(timestamp, (int, float)) or isinstance(timestamp, bool):
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="milliseconds")


def _number(value: Any) -> Optional[float]:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return round(float(value), 4)


def transcript_turn(event: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A user or bot event as the desk shows it; None for other events and for intents triggered from outside."""
    kind = event.get("event")
    if kind == "user":
        text = event.get("text") or ""
        if text.startswith(EXTERNAL_TEXT_PREFIX):
            return None
        parsed = event.get("parse_data") or {}
        intent = parsed.get("intent") or {}
        return {
            "at": _at(event.get("timestamp")),
            "role": "user",
            "text": text,
            "intent": intent.get("name"),
            "confidence": _number(intent.get("confidence")),
            "intent_ranking": [
                {"name": str(ranked.get("name")), "confidence": _number(ranked.get("confidence")) or 0.0}
                for ranked in (parsed.get("intent_ranking") or [])[:RANKING_SIZE]
            ],
            "entities": [
                {"entity": str(entity["entity"]), "value": str(entity.get("value"))}
                for entity in parsed.get("entities") or []
                if entity.get("entity")
            ],
            "asr_confidence": _number((event.get("metadata") or {}).get("asr_confidence")),
            "buttons": [],
        }
    if kind == "bot":
        buttons = [
            {"title": str(button.get("title") or ""), "payload": str(button.get("payload") or "")}
            for button in (event.get("data") or {}).get("buttons") or []
        ]
        if not event.get("text") and not buttons:
            return None
        return {
            "at": _at(event.get("timestamp")),
            "role": "bot",
            "text": event.get("text") or "",
            "intent": None,
            "confidence": None,
            "intent_ranking": [],
            "entities": [],
            "asr_confidence": None,
            "buttons": buttons,
        }
    return None


def shared_slots(tracker: Tracker) -> Dict[str, Any]:
    """The slots that are set, without the private ones."""
    return {name: value for name, value in tracker.slots.items() if value is not None and name not in PRIVATE_SLOTS}


def _json_bytes(value: Any) -> int:
    # aiohttp's json= serialises with json.dumps' defaults (ASCII escapes): measure the body as it is sent.
    return len(json.dumps(value).encode("utf-8"))


def fit_transcript(body: Dict[str, Any], turns: Sequence[Dict[str, Any]], limit: int = MAX_HANDOFF_BYTES) -> None:
    """Put the most recent turns that fit into ``body["context"]["transcript"]``; older ones are dropped first and
    counted in ``dropped_turns``."""
    kept = list(turns[-MAX_TRANSCRIPT_EVENTS:])
    context = body["context"]
    context["transcript"] = []
    context["dropped_turns"] = len(turns)  # a placeholder at least as long as the final count
    budget = limit - _json_bytes(body)
    sizes = [_json_bytes(turn) + 2 for turn in kept]  # ", " between list items
    total, first = sum(sizes), 0
    while total > budget and first < len(kept):
        total -= sizes[first]
        first += 1
    context["transcript"] = kept[first:]
    dropped = len(turns) - len(kept) + first
    if dropped:
        context["dropped_turns"] = dropped
    else:
        del context["dropped_turns"]
    if total > budget:
        logger.warning("handoff.context_too_large bytes=%s", _json_bytes(body))


def handoff_body(tracker: Tracker, reason: Text) -> Dict[str, Any]:
    """What the desk gets: who and why, and the conversation so far."""
    metadata = tracker.latest_message.get("metadata") or {}
    turns = [turn for turn in map(transcript_turn, tracker.events) if turn is not None]
    body: Dict[str, Any] = {
        "conversation_id": tracker.sender_id,
        "channel": channel_of(tracker),
        "reason": reason,
        "last_message": (tracker.latest_message.get("text") or "")[:2000],
        "contact_phone": contact_phone_of(tracker),
        "channel_user_id": metadata.get("channel_user_id"),
        "taxpayer_identifier": tracker.get_slot("identifier") if tracker.get_slot("verified") is True else None,
        "context": {
            "transcript": [],
            "slots": shared_slots(tracker),
            "kb_candidates": tracker.get_slot("kb_candidates") or [],
            "intent": latest_intent(tracker),
        },
    }
    fit_transcript(body, turns)
    return body


def _paused() -> List[EventType]:
    # Rasa logs no action_listen after an action that pauses the conversation; without one the turns that follow
    # the resume (the desk's EXTERNAL_handoff_closed, the message after an after-hours note) would match no rule.
    return [ConversationPaused(), ActionExecuted("action_listen")]


def _count(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


async def request_handoff(dispatcher: CollectingDispatcher, tracker: Tracker, reason: Text) -> List[EventType]:
    """Queue the conversation at the desk with its reason and context, tell the user what happens next, and pause
    the bot while a person owns the conversation."""
    try:
        created = await get_service_client().create_handoff(handoff_body(tracker, reason))
    except (ServiceError, ServiceUnavailable) as exc:
        logger.warning("handoff.record_failed reason=%s error=%s", reason, exc)
        dispatcher.utter_message(response="utter_handoff_unavailable")
        return []
    reference, status = str(created.get("reference") or ""), created.get("status")
    logger.info("handoff.recorded reference=%s reason=%s status=%s", reference, reason, status)
    if status in QUEUED:
        position, wait_minutes = _count(created.get("position")), _count(created.get("wait_minutes"))
        if position is None or wait_minutes is None:
            dispatcher.utter_message(response="utter_handoff_queued_no_estimate", reference=reference)
        else:
            dispatcher.utter_message(
                response="utter_handoff_queued", reference=reference, position=position, wait_minutes=wait_minutes
            )
        return _paused()
    if status == "assigned":
        dispatcher.utter_message(response="utter_handoff_connected", reference=reference)
        return _paused()
    if status == "after_hours":  # the desk takes the next message as a note, then resumes the bot
        dispatcher.utter_message(response="utter_handoff_after_hours", reference=reference)
        return _paused()
    if status == "refused":  # blacklisted: answered politely, and the bot goes on
        dispatcher.utter_message(response="utter_handoff_refused")
        return []
    logger.warning("handoff.unknown_status reference=%s status=%r", reference, status)
    dispatcher.utter_message(response="utter_handoff_unavailable")
    return []


# A person asked for right after the assistant said it was not sure: the handoff says why.
UNSURE_REPLIES = {**OFFERS_OF_A_PERSON, "utter_knowledge_suggested": "knowledge_gap"}


COMPLAINT_FORM = "complaint_form"
# What the bot says when a complaint form is done: the ticket was filed, or it could not be.
COMPLAINT_FILED = frozenset({"utter_ticket_created", "utter_ticket_failed"})


def loop_when_asked(tracker: Tracker) -> Optional[Text]:
    """The form that was active when the user sent the latest message (a rule may have deactivated it since)."""
    seen_user = False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            seen_user = True
        elif seen_user and event.get("event") == "active_loop":
            return event.get("name")
    return None


def escalates_a_complaint(tracker: Tracker) -> bool:
    """A person asked for during a complaint, or right after one was filed."""
    if (tracker.active_loop or {}).get("name") == COMPLAINT_FORM or loop_when_asked(tracker) == COMPLAINT_FORM:
        return True
    return last_bot_response(tracker) in COMPLAINT_FILED and previous_active_loop(tracker) == COMPLAINT_FORM


def handoff_reason(tracker: Tracker) -> Text:
    if latest_intent(tracker) == "request_human":
        if escalates_a_complaint(tracker):
            return "complaint_escalation"
        return UNSURE_REPLIES.get(last_bot_response(tracker) or "", "user_request")
    return "low_confidence" if consecutive_fallbacks(tracker) else "other"


class ActionHandoff(Action):
    def name(self) -> Text:
        return "action_handoff"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        return await request_handoff(dispatcher, tracker, handoff_reason(tracker))


class ActionFallback(Action):
    """Two-stage fallback: ask to rephrase, then offer a person, then hand over."""

    def name(self) -> Text:
        return "action_fallback"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        # A policy question NLU could not place may still be one the knowledge base is sure about.
        answered = await knowledge_reply(dispatcher, tracker, FALLBACK_INTENT)
        if answered is not None:
            return answered
        misunderstood = consecutive_fallbacks(tracker)
        limit = handoff_after_turns()
        if misunderstood >= limit:
            return await request_handoff(dispatcher, tracker, "low_confidence")
        if misunderstood == limit - 1:
            dispatcher.utter_message(response="utter_offer_human")
        else:
            dispatcher.utter_message(response="utter_ask_rephrase")
        return []


class ActionHandleYesNo(Action):
    """A yes or no means what the bot asked last; on its own it is just acknowledged."""

    def name(self) -> Text:
        return "action_handle_yes_no"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        asked = last_bot_response(tracker)
        said_yes = latest_intent(tracker) == "affirm"
        if asked in OFFERS_OF_A_PERSON:
            if said_yes:
                return await request_handoff(dispatcher, tracker, OFFERS_OF_A_PERSON[asked])
            dispatcher.utter_message(response="utter_rephrase_ok" if asked == "utter_offer_human" else "utter_anything_else")
            return []
        dispatcher.utter_message(response="utter_ok" if said_yes else "utter_anything_else")
        return []
