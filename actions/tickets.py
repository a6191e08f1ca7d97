"""Complaints, reports and suggestions: validate what the forms collect and file a ticket."""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.dialogue import channel_of, previous_active_loop
from actions.identity import parse_phone
from actions.service_client import ServiceError, ServiceUnavailable, get_service_client

logger = logging.getLogger(__name__)

ANONYMOUS = "匿名"
_DECLINES = re.compile(r"不留|匿名|不方便|不想留|不用了?|不需要|没有|算了|no", re.IGNORECASE)
MAX_DETAIL_CHARS = 4000  # the service's limits (service/api/tickets.py)
MAX_SUBJECT_CHARS = 200

TICKET_KIND = {
    "complaint_form": ("complaint", "投诉"),
    "report_form": ("report", "举报"),
    "suggestion_form": ("suggestion", "建议"),
}


def _text(value: Any, limit: int = MAX_DETAIL_CHARS) -> Optional[str]:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value[:limit] if value else None


def parse_contact(value: Any) -> Optional[str]:
    """A mobile number, or ANONYMOUS when the user declines to leave one."""
    phone = parse_phone(value)
    if phone:
        return phone
    if isinstance(value, str) and _DECLINES.search(value):
        return ANONYMOUS
    return None


class _TicketFormValidation(FormValidationAction):
    form = ""  # rasa-sdk derives form_name() from name()

    def name(self) -> Text:
        return f"validate_{self.form}"

    async def validate_ticket_subject(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return {"ticket_subject": _text(value, MAX_SUBJECT_CHARS)}

    async def validate_ticket_detail(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        return {"ticket_detail": _text(value)}

    async def validate_contact_phone(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        contact = parse_contact(value)
        if contact is None:
            dispatcher.utter_message(response="utter_invalid_contact_phone")
        return {"contact_phone": contact}


class ValidateComplaintForm(_TicketFormValidation):
    form = "complaint_form"


class ValidateReportForm(_TicketFormValidation):
    form = "report_form"


class ValidateSuggestionForm(_TicketFormValidation):
    form = "suggestion_form"


def opening_message(tracker: Tracker, form: Text) -> Optional[str]:
    """What the user said that opened the form (it often already holds the facts)."""
    opened_at = None
    events = tracker.events
    for index, event in enumerate(events):
        if event.get("event") == "active_loop" and event.get("name") == form:
            opened_at = index
    if opened_at is None:
        return None
    for event in reversed(events[:opened_at]):
        if event.get("event") == "user":
            return _text(event.get("text"))
    return None


def contact_phone_of(tracker: Tracker) -> Optional[str]:
    """The contact phone the user left in a form, or None (not given, or anonymous)."""
    contact = tracker.get_slot("contact_phone")
    return contact if contact and contact != ANONYMOUS else None


class ActionSubmitTicket(Action):
    def name(self) -> Text:
        return "action_submit_ticket"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> List[EventType]:
        form = previous_active_loop(tracker) or "complaint_form"
        kind, label = TICKET_KIND.get(form, TICKET_KIND["complaint_form"])
        ticket = {
            "kind": kind,
            "subject": tracker.get_slot("ticket_subject"),
            "detail": tracker.get_slot("ticket_detail") or "",
            "contact_phone": contact_phone_of(tracker),
            "conversation_id": tracker.sender_id,
            "channel": channel_of(tracker),
            "opening_message": opening_message(tracker, form),
        }
        try:
            created = await get_service_client().create_ticket(ticket)
        except (ServiceError, ServiceUnavailable) as exc:
            # The facts stay in the tracker and the form slots; the user is told it was not filed.
            logger.warning("ticket.create_failed kind=%s error=%s", kind, exc)
            dispatcher.utter_message(response="utter_ticket_failed", ticket_kind=label)
            return []
        reference = created.get("reference", "")
        dispatcher.utter_message(
            response="utter_ticket_created",
            ticket_kind=label,
            reference=reference,
            reference_spoken=" ".join(reference),
        )
        logger.info("ticket.created kind=%s reference=%s", kind, reference)
        return [SlotSet("ticket_subject", None), SlotSet("ticket_detail", None), SlotSet("contact_phone", None)]
