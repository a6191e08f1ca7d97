"""Input validation of the REST channel (pure functions; the live channel is in tests/system)."""
import pytest

from channels.rest_input import KNOWN_CHANNELS, BadRequest, TaxRestInput, parse_body, validate_message
from rasa.shared.exceptions import InvalidConfigException


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe not utf-8", b"{not json", b"[1, 2]", b'"text"', b"", b"null"],
)
def test_malformed_bodies_are_refused(raw):
    with pytest.raises(BadRequest):
        parse_body(raw)


@pytest.mark.parametrize(
    "body",
    [
        {"message": "hi"},
        {"sender": "", "message": "hi"},
        {"sender": "x" * 200, "message": "hi"},
        {"sender": ["a"], "message": "hi"},
        {"sender": "u", "message": 42},
        {"sender": "u", "message": {"text": "hi"}},
        {"sender": "u", "message": "hi", "metadata": "x"},
        {"sender": "u", "message": "hi", "input_channel": "telegram"},
    ],
)
def test_wrong_shapes_are_refused(body):
    with pytest.raises(BadRequest):
        validate_message(body)


def test_control_characters_are_stripped_and_channels_kept():
    fields = validate_message({"sender": 12, "message": "\x00个税\x07起征点\u200b", "input_channel": "wechat"})
    assert fields == {"sender": "12", "message": "个税起征点", "metadata": None, "channel": "wechat"}
    assert set(KNOWN_CHANNELS) >= {"rest", "webchat", "wechat", "phone"}


def test_message_limit_is_validated_from_credentials():
    assert TaxRestInput.from_credentials({"max_message_chars": 500}).max_message_chars == 500
    with pytest.raises(InvalidConfigException):
        TaxRestInput.from_credentials({"max_message_chars": "many"})
    with pytest.raises(InvalidConfigException):
        TaxRestInput.from_credentials({"max_message_chars": 3})


async def test_replies_are_collected_under_the_input_channel_name():
    from channels.rest_input import ChannelCollector

    collector = ChannelCollector("phone")
    await collector.send_text_message("u1", "您好")
    assert collector.name() == "phone"
    assert collector.messages == [{"recipient_id": "u1", "text": "您好"}]
