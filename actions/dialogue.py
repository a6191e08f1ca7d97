"""Reading the conversation: what the user said last, what the bot asked last, which channel."""
from __future__ import annotations

from typing import Any, Dict, Optional, Text

from rasa_sdk import Tracker

FALLBACK_INTENT = "nlu_fallback"


def channel_of(tracker: Tracker) -> Text:
    return tracker.get_latest_input_channel() or "rest"


def latest_intent(tracker: Tracker) -> Optional[Text]:
    return (tracker.latest_message.get("intent") or {}).get("name")


# What the bot says once a handoff is settled (queued, connected, after hours, refused, or closed by the desk).
HANDED_OVER = frozenset(
    {
        "utter_handoff_queued",
        "utter_handoff_queued_no_estimate",
        "utter_handoff_connected",
        "utter_handoff_after_hours",
        "utter_handoff_refused",
        "utter_ask_satisfaction",
    }
)
ANSWERED_FROM_KNOWLEDGE = "utter_knowledge_answer"


def consecutive_fallbacks(tracker: Tracker) -> int:
    """How many user turns in a row, ending with the latest, NLU did not understand.

    Counting starts again after a handoff, and after a turn the knowledge base answered even though NLU did not
    understand it: the next misunderstanding asks to rephrase.
    """
    count = 0
    for event in reversed(tracker.events):
        if event.get("event") == "bot":
            said = (event.get("metadata") or {}).get("utter_action")
            if said in HANDED_OVER or said == ANSWERED_FROM_KNOWLEDGE:
                break
        if event.get("event") != "user":
            continue
        intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
        if intent != FALLBACK_INTENT:
            break
        count += 1
    return count


def last_bot_response(tracker: Tracker) -> Optional[Text]:
    """The response name (utter_*) of the bot's last message before the latest user turn."""
    seen_user = False
    for event in reversed(tracker.events):
        kind = event.get("event")
        if kind == "user":
            if seen_user:
                return None
            seen_user = True
        elif kind == "bot" and seen_user:
            metadata: Dict[Text, Any] = event.get("metadata") or {}
            return metadata.get("utter_action")
    return None


def previous_active_loop(tracker: Tracker) -> Optional[Text]:
    """The name of the most recent form that was active (it may just have completed)."""
    for event in reversed(tracker.events):
        if event.get("event") == "active_loop" and event.get("name"):
            return event["name"]
    return None
