"""Low-confidence turns, yes/no answers, and handing the conversation to a person.

Until the human-agent desk exists, a handoff is recorded by the service and the user is told
honestly that a person will follow up.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.dialogue import FALLBACK_INTENT, channel_of, consecutive_fallbacks, last_bot_response, latest_intent
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


async def request_handoff(dispatcher: CollectingDispatcher, tracker: Tracker, reason: Text) -> List[EventType]:
    """Record a handoff request with its reason and tell the user what happens next."""
    payload: Dict[str, Any] = {
        "conversation_id": tracker.sender_id,
        "channel": channel_of(tracker),
        "reason": reason,
        "last_message": (tracker.latest_message.get("text") or "")[:2000],
        "contact_phone": contact_phone_of(tracker),
    }
    try:
        created = await get_service_client().create_handoff(payload)
    except (ServiceError, ServiceUnavailable) as exc:
        logger.warning("handoff.record_failed reason=%s error=%s", reason, exc)
        dispatcher.utter_message(response="utter_handoff_unavailable")
        return []
    logger.info("handoff.recorded reference=%s reason=%s", created.get("reference"), reason)
    dispatcher.utter_message(response="utter_handoff_recorded", reference=created.get("reference", ""))
    return []


# A person asked for right after the assistant said it was not sure: the handoff says why.
UNSURE_REPLIES = {**OFFERS_OF_A_PERSON, "utter_knowledge_suggested": "knowledge_gap"}


def handoff_reason(tracker: Tracker) -> Text:
    if latest_intent(tracker) == "request_human":
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
