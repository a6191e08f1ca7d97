"""Deterministic extraction of taxpayer identifiers and phone numbers, with check digits.

DIET learns ``tax_type``, ``period`` … from examples, but identifiers have exact formats and
check digits (GB 32100 / GB 11643): regular expressions and arithmetic beat a neural guess.
This component replaces whatever DIET proposed for ``taxpayer_id``, ``id_number`` and ``phone``
(or for any span overlapping one) with what it finds itself. Each entity carries ``valid``:
a well-formed number whose check digit is wrong is still reported, so a form can say so.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Text

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.constants import DEFAULT_NLU_FALLBACK_INTENT_NAME as FALLBACK_INTENT
from rasa.shared.nlu.constants import (
    ENTITIES,
    INTENT,
    INTENT_NAME_KEY,
    INTENT_RANKING_KEY,
    PREDICTED_CONFIDENCE_KEY,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from taxlib.identifiers import (
    ID_NUMBER_PATTERN,
    PHONE_PATTERN,
    USCC_PATTERN,
    is_valid_id_number,
    is_valid_uscc,
    normalize_phone,
)

IDENTIFIER_ENTITIES = ("id_number", "taxpayer_id", "phone")


def find_identifiers(text: str) -> List[Dict[str, Any]]:
    """All identifier spans in ``text``, longest kinds first, never overlapping."""
    found: List[Dict[str, Any]] = []

    def overlaps(start: int, end: int) -> bool:
        return any(start < e["end"] and e["start"] < end for e in found)

    def add(entity: str, match: "re.Match[str]", value: str, valid: bool, group: int = 0) -> None:
        start, end = match.span(group)
        if not overlaps(start, end):
            found.append({"entity": entity, "start": start, "end": end, "value": value, "valid": valid})

    for m in ID_NUMBER_PATTERN.finditer(text):
        value = m.group(0).upper()
        if is_valid_id_number(value):
            add("id_number", m, value, True)
    for m in USCC_PATTERN.finditer(text):
        value = m.group(0).upper()
        if is_valid_uscc(value):
            add("taxpayer_id", m, value, True)
    # Well-formed but failing the check digit: report as what it most resembles.
    for m in ID_NUMBER_PATTERN.finditer(text):
        add("id_number", m, m.group(0).upper(), False)
    for m in USCC_PATTERN.finditer(text):
        if not m.group(0).isdigit():
            add("taxpayer_id", m, m.group(0).upper(), False)
    for m in PHONE_PATTERN.finditer(text):
        phone = normalize_phone(m.group(1))
        if phone:
            add("phone", m, phone, True, group=1)
    return sorted(found, key=lambda e: e["start"])


class _RuleBasedComponent(GraphComponent):
    """A component without configuration or training: rules and arithmetic only."""

    @staticmethod
    def get_default_config() -> Dict[Text, Any]:
        return {}

    @classmethod
    def create(
        cls,
        config: Dict[Text, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> GraphComponent:
        return cls()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=False
)
class IdentifierExtractor(_RuleBasedComponent, EntityExtractorMixin):
    """Finds unified social credit codes, resident ID numbers and mobile numbers."""

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text: Optional[str] = message.get(TEXT)
            if not text:
                continue
            identifiers = find_identifiers(text)
            kept = [
                e
                for e in message.get(ENTITIES, [])
                if e.get("entity") not in IDENTIFIER_ENTITIES
                and not any(e["start"] < i["end"] and i["start"] < e["end"] for i in identifiers)
            ]
            for entity in identifiers:
                entity["extractor"] = self.__class__.__name__
                entity["confidence_entity"] = 1.0
            message.set(
                ENTITIES,
                sorted(kept + identifiers, key=lambda e: e["start"]),
                add_to_output=True,
            )
        return messages


_NUMBER_CHARS = re.compile(r"[0-9０-９零〇一二三四五六七八九十百千万亿幺两]")


def is_contentless(text: str, identifiers: List[Dict[str, Any]]) -> bool:
    """True when a message holds no words: only numbers, identifiers, punctuation, emoji.

    Such a message ("246810", "138 1741 4333", "😀😀") says nothing about what the user
    wants; its meaning comes from what the bot just asked.
    """
    import unicodedata

    chars = list(text)
    for entity in identifiers:
        for i in range(entity["start"], entity["end"]):
            chars[i] = " "
    remainder = _NUMBER_CHARS.sub("", "".join(chars))
    return not any(unicodedata.category(c).startswith("L") for c in remainder)


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False
)
class ContentlessMessageClassifier(_RuleBasedComponent):
    """Marks messages without words as ``nlu_fallback`` (after the FallbackClassifier).

    DIET still answers confidently for a bare number (it has to pick some intent), but the
    dialogue should decide by context instead: inside a form the number fills the requested
    slot; outside one the user is asked to say what they want.
    """

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not text or text.startswith("/"):  # "/intent" payloads from buttons are explicit
                continue
            identifiers = [e for e in message.get(ENTITIES, []) if e.get("entity") in IDENTIFIER_ENTITIES]
            if not is_contentless(text, identifiers):
                continue
            ranking = [r for r in message.get(INTENT_RANKING_KEY) or [] if r.get(INTENT_NAME_KEY) != FALLBACK_INTENT]
            fallback = {INTENT_NAME_KEY: FALLBACK_INTENT, PREDICTED_CONFIDENCE_KEY: 1.0}
            message.set(INTENT, fallback, add_to_output=True)
            message.set(INTENT_RANKING_KEY, [fallback, *ranking], add_to_output=True)
        return messages
