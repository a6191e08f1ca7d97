"""The custom NLU component that extracts identifiers (Rasa venv)."""
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message

from bot.components.identifiers import IdentifierExtractor, find_identifiers

ID = "110101198704020880"
USCC = "9111010178CCCC3FLD"


def test_finds_each_kind_with_its_span():
    text = f"身份证{ID}，手机13817414333，公司税号{USCC}"
    found = find_identifiers(text)
    assert [(e["entity"], e["value"], e["valid"]) for e in found] == [
        ("id_number", ID, True),
        ("phone", "13817414333", True),
        ("taxpayer_id", USCC, True),
    ]
    for e in found:
        assert text[e["start"]:e["end"]].upper().replace(" ", "") == e["value"]


def test_wrong_check_digit_is_reported_as_invalid():
    (entity,) = find_identifiers("身份证110101198704020881")
    assert (entity["entity"], entity["valid"]) == ("id_number", False)
    (entity,) = find_identifiers("税号9111010178CCCC3FLE")
    assert (entity["entity"], entity["valid"]) == ("taxpayer_id", False)


def test_a_phone_inside_a_longer_number_is_not_a_phone():
    assert find_identifiers("卡号62220213817414333123") == []


def test_replaces_what_diet_guessed_for_identifiers():
    text = f"查{ID}的个税"
    message = Message(data={TEXT: text})
    message.set(
        ENTITIES,
        [
            {"entity": "phone", "value": ID[:11], "start": 1, "end": 12, "extractor": "DIETClassifier"},
            {"entity": "tax_type", "value": "个税", "start": 20, "end": 22, "extractor": "DIETClassifier"},
        ],
    )
    IdentifierExtractor().process([message])
    entities = message.get(ENTITIES)
    assert [(e["entity"], e["value"], e["extractor"]) for e in entities] == [
        ("id_number", ID, "IdentifierExtractor"),
        ("tax_type", "个税", "DIETClassifier"),
    ]


def classify(text, intent="goodbye"):
    from bot.components.identifiers import ContentlessMessageClassifier
    from rasa.shared.nlu.constants import INTENT

    message = Message(data={TEXT: text})
    message.set(INTENT, {"name": intent, "confidence": 0.99})
    IdentifierExtractor().process([message])
    ContentlessMessageClassifier().process([message])
    return message.get(INTENT)["name"]


def test_messages_without_words_are_left_to_the_dialogue():
    for text in ["246810", "138 1741 4333", ID, "幺三八一七四一", "😀😀😀", "？？", "9111010178CCCC3FLD"]:
        assert classify(text) == "nlu_fallback", text


def test_messages_with_words_keep_their_intent():
    for text in [f"我的身份证号是{ID}", "验证码123456", "再见", "ok", "/greet"]:
        assert classify(text) == "goodbye", text
