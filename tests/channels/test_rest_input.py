"""The REST channel: input validation (pure functions), and a conversation the desk owns (the channel in a Sanic
server on loopback, a fake desk); the channel with the real Rasa server is in tests/system."""
import asyncio
import itertools
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from sanic import Sanic
from sanic.touchup import TouchUp

from actions.service_client import ServiceClient, ServiceConfig
from channels.rest_input import KNOWN_CHANNELS, BadRequest, TaxRestInput, keep_paused_sessions, parse_body, validate_message
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.core.processor import MessageProcessor
from rasa.core.tracker_store import InMemoryTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, ConversationPaused, Restarted, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
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


# ---- a conversation the desk owns ----------------------------------------------------------------
# The channel's blueprint in a real Sanic server on loopback, a fake desk (aiohttp) standing in for the service
# app, and a stand-in for Rasa's agent that handles messages as its processor does while a conversation is paused.

DOMAIN = Path(__file__).resolve().parents[2] / "bot" / "domain"
TOKEN = "desk-token-" + "x" * 12
_apps = itertools.count()


@pytest.fixture(scope="module")
def domain():
    return Domain.load(str(DOMAIN))


class FakeRasa:
    """The agent's tracker store and responses; ``on_new_message`` records the message, says nothing while the
    conversation is paused, and lets ``/restart`` restart it (rasa.core.processor._should_handle_message)."""

    def __init__(self, domain):
        self.domain = domain
        self.tracker_store = InMemoryTrackerStore(domain)
        self.nlg = TemplatedNaturalLanguageGenerator(domain.responses)
        self.handled = []

    async def on_new_message(self, message):
        self.handled.append(message.text)
        tracker = await self.tracker_store.get_or_create_tracker(message.sender_id)
        tracker.update(UserUttered(message.text, metadata=message.metadata))
        if message.text.startswith("/restart"):
            tracker.update(Restarted())
        if not tracker.is_paused():
            await message.output_channel.send_text_message(message.sender_id, "机器人的回答")
        await self.tracker_store.save(tracker)

    async def pause(self, sender):
        events = [ActionExecuted("action_listen"), UserUttered("转人工"), ActionExecuted("action_handoff"),
                  ConversationPaused(), ActionExecuted("action_listen")]
        await self.tracker_store.save(DialogueStateTracker.from_events(sender, events, slots=self.domain.slots))

    async def is_paused(self, sender):
        return (await self.tracker_store.retrieve(sender)).is_paused()

    async def texts(self, sender):
        return [e.text for e in (await self.tracker_store.retrieve(sender)).events if isinstance(e, UserUttered)]


@pytest.fixture
async def desk():
    """The service's /api/v1/desk/inbound: records what it gets; ``mode`` makes it fail or hang."""
    state = SimpleNamespace(seen=[], mode="ok", release=asyncio.Event())

    async def inbound(request):
        state.seen.append((request.headers.get("Authorization"), await request.json()))
        if state.mode == "broken":
            return web.Response(status=500, text="Internal Server Error")
        if state.mode == "slow":
            await state.release.wait()  # longer than the client waits
        return web.json_response({"replies": [{"text": "您好，我是客服小王，请讲。"}], "routed": "agent"})

    app = web.Application()
    app.router.add_post("/api/v1/desk/inbound", inbound)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    yield state
    state.release.set()
    await runner.cleanup()


_touch_up = TouchUp.run
_touched_up = []


def _touch_up_once(app):
    if not _touched_up:
        _touch_up(app)
        _touched_up.append(app.name)


@pytest.fixture
async def channel(domain, desk, monkeypatch):
    """POST to the channel's webhook: ``channel.say(sender, text)`` returns the reply list."""
    # Sanic 21.12 rewrites its own classes' methods when a server starts (TouchUp) and fails when a second server
    # in the same process tries again: the rewrite is done once, and holds for every later server.
    monkeypatch.setattr("sanic.app.TouchUp.run", _touch_up_once)
    rasa = FakeRasa(domain)
    client = ServiceClient(ServiceConfig(url=desk.url, token=TOKEN, timeout_seconds=0.5))
    app = Sanic(f"rest_input_test_{next(_apps)}")
    app.ctx.agent = rasa
    app.blueprint(TaxRestInput(desk=client).blueprint(rasa.on_new_message), url_prefix="/webhooks/rest")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # Sanic 21.12 takes port=0 for "the default port", 8000
    server = await app.create_server(sock=sock, return_asyncio_server=True, access_log=False)
    await server.startup()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/rest/webhook"
    session = aiohttp.ClientSession()

    async def say(sender, text, **extra):
        async with session.post(url, json={"sender": sender, "message": text, **extra}) as answer:
            assert answer.status == 200
            return await answer.json()

    yield SimpleNamespace(say=say, rasa=rasa)
    await session.close()
    await client.close()
    server.close()
    await server.wait_closed()


async def test_a_conversation_the_bot_owns_is_answered_by_the_bot(channel, desk):
    assert await channel.say("u1", "个税起征点是多少") == [{"recipient_id": "u1", "text": "机器人的回答"}]
    assert desk.seen == []


async def test_a_paused_conversation_is_recorded_and_answered_by_the_desk(channel, desk):
    await channel.rasa.pause("u2")
    reply = await channel.say("u2", "我还在等", input_channel="wechat", metadata={"channel_user_id": "oWx-1"})
    assert reply == [{"recipient_id": "u2", "text": "您好，我是客服小王，请讲。"}]
    assert desk.seen == [
        (
            f"Bearer {TOKEN}",
            {"conversation_id": "u2", "channel": "wechat", "text": "我还在等", "metadata": {"channel_user_id": "oWx-1"}},
        )
    ]
    assert await channel.rasa.texts("u2") == ["转人工", "我还在等"]  # Rasa keeps the whole conversation
    assert await channel.rasa.is_paused("u2")


@pytest.mark.parametrize("command", ["/restart", "/session_start", "/restart{}", "/greet"])
async def test_a_command_while_paused_goes_to_the_desk_as_text_and_keeps_the_pause(channel, desk, command):
    await channel.rasa.pause("u3")
    assert await channel.say("u3", command) == [{"recipient_id": "u3", "text": "您好，我是客服小王，请讲。"}]
    assert channel.rasa.handled == []  # Rasa never saw it: a restart would have taken the conversation back
    assert await channel.rasa.is_paused("u3")
    assert desk.seen[0][1]["text"] == command and desk.seen[0][1]["metadata"] == {}


async def test_restart_is_still_a_restart_when_the_bot_owns_the_conversation(channel, desk):
    await channel.say("u4", "你好")
    await channel.say("u4", "/restart")
    assert channel.rasa.handled == ["你好", "/restart"]
    assert desk.seen == []


@pytest.mark.parametrize("mode", ["broken", "slow"])
async def test_when_the_desk_cannot_be_reached_the_user_is_told_and_the_message_is_kept(channel, desk, domain, mode):
    desk.mode = mode
    await channel.rasa.pause("u5")
    started = time.monotonic()
    reply = await channel.say("u5", "人呢？", input_channel="phone")
    assert time.monotonic() - started < 1.5  # the client gives up after its timeout
    spoken = next(r["text"] for r in domain.responses["utter_service_unavailable"] if r.get("channel") == "phone")
    assert reply == [{"recipient_id": "u5", "text": spoken}]
    assert await channel.rasa.texts("u5") == ["转人工", "人呢？"]


def test_a_paused_conversation_does_not_expire_into_a_new_session(domain):
    keep_paused_sessions()
    keep_paused_sessions()  # idempotent: wrapping twice would still work, but once is enough
    processor = SimpleNamespace(domain=domain)  # session_expiration_time: 60 minutes
    two_hours_ago = time.time() - 7200
    events = [
        ActionExecuted("action_listen"), UserUttered("转人工", timestamp=two_hours_ago), ActionExecuted("action_handoff")
    ]
    waiting = DialogueStateTracker.from_events("u6", events + [ConversationPaused()], slots=domain.slots)
    idle = DialogueStateTracker.from_events("u7", events, slots=domain.slots)
    assert MessageProcessor._has_session_expired(processor, waiting) is False
    assert MessageProcessor._has_session_expired(processor, idle) is True
