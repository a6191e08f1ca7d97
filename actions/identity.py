"""Identity verification before a self-service query: identifier + registered phone + SMS code."""
from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Optional, Text

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.dialogue import channel_of
from actions.service_client import ServiceError, ServiceUnavailable, get_service_client
from taxlib.identifiers import ID_NUMBER_PATTERN, USCC_PATTERN, classify_identifier, normalize_phone
from taxlib.text import compact_identifier, digits_only, to_halfwidth

logger = logging.getLogger(__name__)

MAX_IDENTITY_ATTEMPTS = 3  # identifier/phone pairs that match no record before we stop asking


def parse_identifier(text: Any) -> Optional[str]:
    """A valid ID number or unified social credit code found in what the user typed or said."""
    if not isinstance(text, str) or not text.strip():
        return None
    squeezed = re.sub(r"[\s\-]", "", to_halfwidth(text).upper())
    for pattern in (ID_NUMBER_PATTERN, USCC_PATTERN):
        for match in pattern.finditer(squeezed):
            if classify_identifier(match.group(0)):
                return match.group(0)
    spoken = compact_identifier(text)  # "一一零一零一…" read digit by digit
    return spoken if classify_identifier(spoken) else None


def parse_phone(text: Any) -> Optional[str]:
    if not isinstance(text, str):
        return None
    return normalize_phone(digits_only(text))


def parse_code(text: Any) -> Optional[str]:
    digits = digits_only(text) if isinstance(text, str) else ""
    return digits if len(digits) == 6 else None


class ValidateIdentityForm(FormValidationAction):
    def name(self) -> Text:
        return "validate_identity_form"

    async def required_slots(
        self,
        domain_slots: List[Text],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> List[Text]:
        # Once verification has failed for good, nothing more is asked: the form ends
        # and the follow-up action explains what the user can do instead.
        if tracker.get_slot("identity_failed"):
            return []
        return domain_slots

    async def validate_identifier(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        identifier = parse_identifier(value)
        if identifier is None:
            dispatcher.utter_message(response="utter_invalid_identifier")
        return {"identifier": identifier}

    async def validate_phone(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        phone = parse_phone(value)
        if phone is None:
            dispatcher.utter_message(response="utter_invalid_phone")
            return {"phone": None}
        identifier = parse_identifier(tracker.get_slot("identifier"))
        if identifier is None:
            # A phone volunteered before a valid identifier is dropped quietly and asked
            # for again in order, so exactly one place starts a verification (and sends an SMS).
            return {"phone": None}
        try:
            started = await get_service_client().start_verification(
                identifier, phone, tracker.sender_id, channel_of(tracker)
            )
        except ServiceError as exc:
            if exc.code == "no_match":
                attempts = (tracker.get_slot("identity_attempts") or 0) + 1
                if attempts >= MAX_IDENTITY_ATTEMPTS:
                    return {"identity_attempts": attempts, "identity_failed": True, "phone": None}
                dispatcher.utter_message(response="utter_identity_no_match")
                return {"identity_attempts": attempts, "identifier": None, "phone": None}
            if exc.code == "invalid_phone":
                dispatcher.utter_message(response="utter_invalid_phone")
                return {"phone": None}
            if exc.code == "invalid_identifier":
                dispatcher.utter_message(response="utter_invalid_identifier")
                return {"identifier": None, "phone": None}
            logger.warning("identity.start_failed code=%s", exc.code)
            dispatcher.utter_message(response="utter_service_unavailable")
            return {"identity_failed": True, "phone": None}
        except ServiceUnavailable:
            dispatcher.utter_message(response="utter_service_unavailable")
            return {"identity_failed": True, "phone": None}
        masked = started.get("masked_phone") or ""
        return {
            "phone": phone,
            "verification_id": started["verification_id"],
            "masked_phone": masked,
            "phone_tail": masked[-4:],
        }

    async def validate_otp_code(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> Dict[Text, Any]:
        code = parse_code(value)
        if code is None:
            dispatcher.utter_message(text="请输入短信里的6位数字验证码。")
            return {"otp_code": None}
        verification_id = tracker.get_slot("verification_id")
        if not verification_id:  # the phone step did not complete: ask for it again
            return {"otp_code": None, "phone": None}
        try:
            confirmed = await get_service_client().confirm_verification(verification_id, code)
        except ServiceError as exc:
            if exc.code == "wrong_code":
                dispatcher.utter_message(
                    response="utter_otp_wrong", attempts_left=exc.body.get("attempts_left", 0)
                )
                return {"otp_code": None}
            if exc.code == "expired":
                dispatcher.utter_message(response="utter_otp_expired")
                return {"otp_code": None, "phone": None, "verification_id": None}
            # locked, already used, not found: this verification is over
            return {"otp_code": None, "identity_failed": True}
        except ServiceUnavailable:
            dispatcher.utter_message(response="utter_service_unavailable")
            return {"otp_code": None, "identity_failed": True}
        taxpayer = confirmed.get("taxpayer") or {}
        name = taxpayer.get("name") or "您好"
        dispatcher.utter_message(response="utter_identity_verified", taxpayer_name=name)
        return {
            "otp_code": code,
            "verified": True,
            "taxpayer_grant": confirmed["grant"],
            "taxpayer_name": name,
        }
