"""Answers a verified taxpayer's query about tax due, payments or refunds from the records store."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Awaitable, Callable, Dict, List, Text

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.service_client import ServiceError, ServiceUnavailable, get_service_client

logger = logging.getLogger(__name__)

PAYMENT_STATUS = {"success": "已缴款成功", "processing": "银行处理中", "failed": "扣款失败"}


def yuan(amount: Any) -> str:
    """'36500.00' -> '36,500.00'."""
    try:
        return f"{Decimal(str(amount)):,.2f}"
    except (InvalidOperation, ValueError):
        return str(amount)


def format_tax_due(item: Dict[str, Any]) -> str:
    overdue = "，已逾期" if item.get("status") == "overdue" else ""
    return f"{item['period']} {item['tax_type']} {yuan(item['amount'])} 元（缴款期限 {item.get('due_date', '')}{overdue}）"


def format_payment(item: Dict[str, Any]) -> str:
    status = PAYMENT_STATUS.get(item.get("status", ""), item.get("status", ""))
    paid_on = str(item.get("paid_at", ""))[:10]
    return f"{paid_on} {item['tax_type']}（{item['period']}）{yuan(item['amount'])} 元，{status}"


def format_refund(item: Dict[str, Any]) -> str:
    note = f"，{item['note']}" if item.get("note") else ""
    return f"{item['period']} {item['tax_type']}退税 {yuan(item['amount'])} 元：{item.get('status_label') or item['status']}{note}"


@dataclass(frozen=True)
class QueryKind:
    fetch: Callable[[Any, str], Awaitable[Dict[str, Any]]]
    format: Callable[[Dict[str, Any]], str]
    empty: str  # response when there is nothing to list
    full: str  # response with the list


QUERIES = {
    "tax_due": QueryKind(lambda client, grant: client.tax_due(grant), format_tax_due, "utter_no_tax_due", "utter_tax_due"),
    "payment": QueryKind(lambda client, grant: client.payments(grant, limit=5), format_payment, "utter_no_payments", "utter_payments"),
    "refund": QueryKind(lambda client, grant: client.refunds(grant), format_refund, "utter_no_refunds", "utter_refunds"),
}


class ActionSelfServiceQuery(Action):
    def name(self) -> Text:
        return "action_self_service_query"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> List[EventType]:
        if not tracker.get_slot("verified") or not tracker.get_slot("taxpayer_grant"):
            # Reached after the identity form without success.
            dispatcher.utter_message(response="utter_identity_failed")
            return [SlotSet("identity_failed", False), SlotSet("identity_attempts", 0), *_clear_form_slots()]

        # Set from the query's intent outside any form (slot mapping), so the code typed
        # into the identity form cannot change which query is answered.
        query = tracker.get_slot("pending_query")
        if query is None:
            dispatcher.utter_message(response="utter_ask_which_query")
            return []

        kind = QUERIES[query]
        try:
            result = await kind.fetch(get_service_client(), tracker.get_slot("taxpayer_grant"))
        except ServiceError as exc:
            if exc.code == "grant_invalid":
                # The verification has expired: verify again, then this action runs again.
                dispatcher.utter_message(response="utter_need_identity")
                return [
                    SlotSet("verified", False),
                    SlotSet("taxpayer_grant", None),
                    *_clear_form_slots(),
                    FollowupAction("identity_form"),
                ]
            logger.warning("self_service.failed query=%s code=%s", query, exc.code)
            dispatcher.utter_message(response="utter_service_unavailable")
            return []
        except ServiceUnavailable:
            dispatcher.utter_message(response="utter_service_unavailable")
            return []

        name = (result.get("taxpayer") or {}).get("name") or tracker.get_slot("taxpayer_name") or ""
        lines = [kind.format(item) for item in result.get("items") or []]
        extra = {"total": yuan(result.get("total", "0"))} if query == "tax_due" else {}
        if not lines:
            dispatcher.utter_message(response=kind.empty, taxpayer_name=name)
        else:
            dispatcher.utter_message(
                response=kind.full,
                taxpayer_name=name,
                items="\n".join(f"{n}. {line}" for n, line in enumerate(lines, 1)),
                items_spoken="；".join(lines) + "。",
                **extra,
            )
        return [SlotSet("pending_query", None)]


def _clear_form_slots() -> List[EventType]:
    return [SlotSet(slot, None) for slot in ("identifier", "phone", "otp_code", "verification_id", "masked_phone", "phone_tail")]

