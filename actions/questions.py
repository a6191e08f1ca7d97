"""Questions about policy, invoices, accounts and paying: answered from the knowledge base.

The service retrieves the best entry and decides (see ``knowledge_index/answering.py``): answer with the entry's
text and citation; offer the close candidates as buttons; or, when nothing is confident, the best entry is out of
force or not yet reviewed, say so and offer a person. Questions NLU did not recognise as knowledge questions
(``nlu_fallback``, ``out_of_scope``) are asked too; the service answers those only when retrieval is very sure.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.dialogue import channel_of, latest_intent
from actions.service_client import ServiceError, ServiceUnavailable, get_service_client

logger = logging.getLogger(__name__)

GENERAL_ANSWER = {
    "ask_policy": "utter_ask_policy_general",
    "invoice": "utter_invoice_general",
    "account_help": "utter_account_help_general",
    "pay_tax": "utter_pay_tax_general",
    "out_of_scope": "utter_out_of_scope",
}
NOT_CURRENT = {"expired": "utter_knowledge_expired", "needs_review": "utter_knowledge_under_review"}
CHOICE_INTENT = "ask_policy"
CHOICE_ENTITY = "kb_entry"


def chosen_entry(tracker: Tracker) -> Optional[Text]:
    """The entry the user picked with a button (``/ask_policy{"kb_entry": "..."}``), if they did."""
    for entity in tracker.latest_message.get("entities") or []:
        if entity.get("entity") == CHOICE_ENTITY and entity.get("value"):
            return str(entity["value"])
    return None


def choice_buttons(choices: List[Dict[str, Any]]) -> List[Dict[str, Text]]:
    return [
        {"title": choice["title"], "payload": f"/{CHOICE_INTENT}" + json.dumps({CHOICE_ENTITY: choice["id"]})}
        for choice in choices
    ]


async def knowledge_reply(dispatcher: CollectingDispatcher, tracker: Tracker, intent: Text) -> Optional[List[EventType]]:
    """Ask the knowledge base about the latest message. Returns the events when it said something, None when it
    has nothing to say (no confident entry, or the service is unavailable): the caller decides what then."""
    question = tracker.latest_message.get("text") or ""
    entry_id = chosen_entry(tracker)
    try:
        found = await get_service_client().answer_question(question, intent, channel_of(tracker), entry_id=entry_id)
    except (ServiceError, ServiceUnavailable) as exc:
        logger.warning("knowledge.unavailable intent=%s error=%s", intent, exc)
        return None
    if not found:
        return None
    proposed = [{"id": c.get("id"), "title": c.get("title"), "score": c.get("score")} for c in found.get("candidates", [])]
    events: List[EventType] = [SlotSet("kb_candidates", proposed)]
    status = found.get("status")
    logger.info("knowledge.%s intent=%s entry=%s score=%s", status, intent, (found.get("entry") or {}).get("id"),
                found.get("score"))
    if status == "answered" and found.get("answer"):
        dispatcher.utter_message(response="utter_knowledge_answer", answer=found["answer"])
        return events
    if status == "suggested" and found.get("answer"):
        dispatcher.utter_message(response="utter_knowledge_suggested", answer=found["answer"])
        return events
    if status == "ambiguous" and found.get("choices"):
        dispatcher.utter_message(response="utter_knowledge_choose", buttons=choice_buttons(found["choices"]))
        return events
    if status in NOT_CURRENT:
        dispatcher.utter_message(response=NOT_CURRENT[status])
        return events
    return None


class ActionAnswerQuestion(Action):
    def name(self) -> Text:
        return "action_answer_question"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        intent = latest_intent(tracker) or "ask_policy"
        events = await knowledge_reply(dispatcher, tracker, intent)
        if events is not None:
            return events
        dispatcher.utter_message(response=GENERAL_ANSWER.get(intent, "utter_ask_policy_general"))
        return []
