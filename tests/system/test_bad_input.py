"""Bad input through the REST channel: a polite reply or a 4xx, never a 5xx, and the server keeps serving."""
from __future__ import annotations

import json

import httpx
import pytest


def post(system, content: bytes) -> httpx.Response:
    return httpx.post(system.webhook, content=content, headers={"Content-Type": "application/json"}, timeout=60)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "没有输入内容"),
        ("   \t  ", "没有输入内容"),
        ("税" * 20000, "最多能处理2000个字"),
    ],
)
def test_empty_and_huge_messages_get_a_polite_reply(system, sender, text, expected):
    reply = post(system, json.dumps({"sender": sender, "message": text}).encode())
    assert reply.status_code == 200
    assert expected in reply.json()[0]["text"]


@pytest.mark.parametrize("text", ["😀😀😀", "\x00\x01\x07个税\x1b[31m", "🙏🏻", "‮‭"])
def test_emoji_and_control_characters_get_an_answer(system, sender, text):
    reply = post(system, json.dumps({"sender": sender, "message": text}).encode())
    assert reply.status_code == 200
    messages = reply.json()
    assert messages and all(m.get("text") for m in messages)


@pytest.mark.parametrize(
    "body",
    [
        b'{"sender": "x", "message": "\xff\xfe"}',
        b"{not json",
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"message": "no sender"}',
        b'{"sender": "x", "message": 123}',
        b'{"sender": "x", "message": "hi", "metadata": [1]}',
        b'{"sender": "x", "message": "hi", "input_channel": "nonsense"}',
        b"",
    ],
)
def test_malformed_bodies_are_4xx_with_a_reason(system, body):
    reply = post(system, body)
    assert reply.status_code == 400
    assert reply.json()["error"] == "bad_request"


def test_server_still_serves_after_the_bad_input(system, sender):
    for body in (b"[]", b"\xff", b'{"sender": 1}'):
        post(system, body)
    assert "12366智能税务助手" in system.texts(sender, "您好")
