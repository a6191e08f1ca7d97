"""Questions about policy, invoices, accounts and paying: answered from the knowledge base.

The service's knowledge endpoint answers with the entry's text and its citation. Where it has
no confident answer (or the knowledge base is not deployed), a safe general answer per intent
is given, which points to a person rather than guessing.
"""
from __future__ import annotations

import logging
from typing import List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
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
}


class ActionAnswerQuestion(Action):
    def name(self) -> Text:
        return "action_answer_question"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        intent = latest_intent(tracker) or "ask_policy"
        question = tracker.latest_message.get("text") or ""
        try:
            found = await get_service_client().answer_question(question, intent, channel_of(tracker))
        except (ServiceError, ServiceUnavailable) as exc:
            logger.warning("knowledge.unavailable intent=%s error=%s", intent, exc)
            found = None
        if found and found.get("answer"):
            dispatcher.utter_message(response="utter_knowledge_answer", answer=found["answer"])
            return []
        dispatcher.utter_message(response=GENERAL_ANSWER.get(intent, "utter_ask_policy_general"))
        return []
