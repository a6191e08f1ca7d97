"""The WeChat official-account channel against requests built the way WeChat builds them (real sha1 signatures,
wechatpy's AES envelope) and a fake of WeChat's API on loopback (tests/service/wechat_fake.py): verification,
plaintext / compatible / safe mode, retries answered once, refusals that process nothing, the access_token's
cache and renewal, the 48-hour window, long texts, events, voice, other message types and buttons."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import xmltodict
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import check_signature

from channels import wechat
from channels.outbox import DeliveryFailed
from channels.wechat_api import RedactSecrets, WeChatApi
from channels.wechat_protocol import (
    BadMessage, UnsafeXml, choice, numbered, read_message, render, split_text, xml_dict,
)
from service.models import ChatMessage
from service.settings import Settings
from tests.service.desk_support import RecordingBot
from tests.service.service_support import TOKEN
from tests.service.wechat_fake import APP_ID, APP_SECRET, FakeWeChat, running_fake

WX_TOKEN = "wx-callback-token-2026"
AES_KEY = base64.b64encode(bytes(range(7, 39))).decode().rstrip("=")  # an EncodingAESKey: 43 characters
ACCOUNT = "gh_0f1e2d3c4b5a"  # the official account (ToUserName)
ALICE, BOB = "oAbCdEfGhIjKlMnOpQrStUvWx01", "oZyXwVuTsRqPoNmLkJiHgFeDc23"


# ------------------------------------------------------------------------------------------------ WeChat's side


def sha1_signature(*parts: str) -> str:
    """WeChat's algorithm, written independently of the code under test."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def signed(timestamp: int | None = None, **extra: str) -> dict[str, str]:
    stamp, nonce = str(int(time.time()) if timestamp is None else timestamp), secrets.token_hex(5)
    query = {"signature": sha1_signature(WX_TOKEN, stamp, nonce), "timestamp": stamp, "nonce": nonce} | extra
    check_signature(WX_TOKEN, query["signature"], stamp, nonce)  # wechatpy agrees (raises otherwise)
    return query


def message_xml(openid: str, msg_type: str, created: int | None = None, **fields: Any) -> str:
    """A pushed message as WeChat writes it: text in CDATA, numbers bare."""
    values: dict[str, Any] = {"ToUserName": ACCOUNT, "FromUserName": openid,
                              "CreateTime": created or int(time.time()), "MsgType": msg_type} | fields
    inner = "".join(f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}><![CDATA[{v}]]></{k}>"
                    for k, v in values.items())
    return f"<xml>{inner}</xml>"


def text_xml(openid: str, content: str, msg_id: int, created: int | None = None) -> str:
    return message_xml(openid, "text", created, Content=content, MsgId=msg_id)


def event_xml(openid: str, event: str, created: int | None = None, **fields: Any) -> str:
    return message_xml(openid, "event", created, Event=event, **fields)


def encrypted(xml: str, mode: str = "safe", app_id: str = APP_ID) -> tuple[dict[str, str], str]:
    """Query and body of a safe-mode (or compatible-mode: both copies) push, encrypted with wechatpy."""
    query = signed(openid=xmltodict.parse(xml)["xml"]["FromUserName"], encrypt_type="aes")
    reply = xmltodict.parse(WeChatCrypto(WX_TOKEN, AES_KEY, app_id).encrypt_message(
        xml, query["nonce"], query["timestamp"]))["xml"]
    assert reply["MsgSignature"] == sha1_signature(WX_TOKEN, query["timestamp"], query["nonce"], reply["Encrypt"])
    query["msg_signature"] = reply["MsgSignature"]
    plain = xml.removeprefix("<xml>").removesuffix("</xml>") if mode == "compatible" else \
        f"<ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
    return query, f"<xml>{plain}<Encrypt><![CDATA[{reply['Encrypt']}]]></Encrypt></xml>"


def push(client: TestClient, xml: str, query: dict[str, str] | None = None) -> Any:
    if query is None:
        query = signed(openid=xmltodict.parse(xml)["xml"]["FromUserName"])
    return client.post("/wechat", params=query, content=xml.encode("utf-8"), headers={"Content-Type": "text/xml"})


def push_safe(client: TestClient, xml: str, mode: str = "safe") -> Any:
    query, body = encrypted(xml, mode)
    return push(client, body, query)


# ------------------------------------------------------------------------------------------------ the service's side


class ScriptedBot(RecordingBot):
    """The Rasa stand-in: scripted replies for some texts (the echo otherwise), optionally slow."""

    def __init__(self, script: dict[str, list[dict[str, Any]]] | None = None, delay: float = 0.0) -> None:
        super().__init__()
        self.script, self.delay = script or {}, delay

    async def send(self, conversation_id: str, text: str, channel: str, metadata: dict[str, Any]) -> list[dict[str, Any]]:
        echo = await super().send(conversation_id, text, channel, metadata)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.script.get(text, echo)


def use(app: FastAPI, bot: RecordingBot) -> RecordingBot:
    app.state.bot = app.state.gateway.bot = app.state.hand_back.bot = bot
    return bot


@pytest.fixture
def fake() -> Iterator[FakeWeChat]:
    with running_fake() as server:
        yield server


@pytest.fixture
def make_wechat(make_client: Callable[..., TestClient], fake: FakeWeChat) -> Callable[..., tuple[TestClient, ScriptedBot]]:
    def make(safe: bool = False, bot: ScriptedBot | None = None, **overrides: Any) -> tuple[TestClient, ScriptedBot]:
        values = {"wechat_token": WX_TOKEN, "wechat_app_id": APP_ID, "wechat_app_secret": APP_SECRET,
                  "wechat_api_base": fake.url} | ({"wechat_aes_key": AES_KEY} if safe else {}) | overrides
        client = make_client(**values)
        return client, use(client.app, bot or ScriptedBot())  # type: ignore[arg-type]
    return make


def settle(client: TestClient, timeout: float = 15.0) -> None:
    """Wait until the webhook's background work is done and the outbox has nothing left to send (a reply given up
    on is "failed"; one waiting for a retry is still to send)."""
    app = client.app
    deadline, seen = time.monotonic() + timeout, set()
    while time.monotonic() < deadline:
        channel = getattr(app.state, "wechat", None)  # type: ignore[attr-defined]
        if not (channel and channel.tasks):
            with app.state.sessionmaker() as session:  # type: ignore[attr-defined]
                left = session.execute(select(ChatMessage.text, ChatMessage.attempts, ChatMessage.delivery_error)
                                       .where(ChatMessage.delivery.in_(("pending", "sending")))).all()
            if not left:
                return
            for text, attempts, error in set(left) - seen:
                if attempts:  # shown when a test fails: a delivery that had to be retried
                    print(f"settle: {text[:20]!r} to be retried after attempt {attempts}: {error}")
            seen |= set(left)
        time.sleep(0.02)
    raise AssertionError("the WeChat webhook or the outbox did not finish")


def stored(client: TestClient, conversation_id: str | None = None) -> list[tuple[str, str, str | None]]:
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        query = select(ChatMessage).order_by(ChatMessage.id)
        if conversation_id:
            query = query.where(ChatMessage.conversation_id == conversation_id)
        return [(m.kind, m.text, m.delivery) for m in session.scalars(query)]


# ------------------------------------------------------------------------------------------------ verification


def test_url_verification(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]]) -> None:
    client, _ = make_wechat()
    good = signed(echostr="8402963715528367091")
    answer = client.get("/wechat", params=good)
    assert answer.status_code == 200 and answer.text == "8402963715528367091"
    assert answer.headers["content-type"].startswith("text/plain")
    forged = good | {"signature": sha1_signature("another-token", good["timestamp"], good["nonce"])}
    assert client.get("/wechat", params=forged).status_code == 403
    assert client.get("/wechat", params={"echostr": "1"}).status_code == 403
    old = signed(timestamp=int(time.time()) - 301, echostr="1")
    assert client.get("/wechat", params=old).status_code == 403
    assert client.get("/wechat", params=signed(timestamp=int(time.time()) - 290, echostr="2")).text == "2"


def test_unconfigured_wechat_says_so(client: TestClient) -> None:
    answer = client.get("/wechat", params=signed(echostr="1"))
    assert answer.status_code == 503 and "TAXBOT_WECHAT_TOKEN" in answer.json()["message"]
    assert push(client, text_xml(ALICE, "你好", 1)).status_code == 503


def test_incomplete_configuration_is_refused_at_start_up(tmp_path: Any) -> None:
    base = {"service_token": TOKEN, "data_dir": tmp_path, "wechat_token": WX_TOKEN}
    with pytest.raises(ValueError, match="TAXBOT_WECHAT_APP_ID"):
        wechat.make_sender(Settings(_env_file=None, **base))  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="TAXBOT_WECHAT_AES_KEY"):
        wechat.make_sender(Settings(_env_file=None, **base, wechat_app_id=APP_ID,  # type: ignore[call-arg]
                                    wechat_app_secret=APP_SECRET, wechat_aes_key=AES_KEY[:-1]))
    assert wechat.make_sender(Settings(_env_file=None, service_token=TOKEN, data_dir=tmp_path)) is None  # type: ignore[call-arg]


# ------------------------------------------------------------------------------------------------ messages


def test_plaintext_message_answered_through_customer_service_api(
        make_wechat: Callable[..., tuple[TestClient, ScriptedBot]], fake: FakeWeChat) -> None:
    client, bot = make_wechat()
    answer = push(client, text_xml(ALICE, "个税起征点是多少", 23_456_789_012_345_678))
    assert answer.status_code == 200 and answer.text == "success"
    settle(client)
    assert fake.texts_for(ALICE) == ["机器人答复：个税起征点是多少"]
    assert bot.sent == [(f"wx-{ALICE}", "个税起征点是多少", "wechat", {"channel_user_id": ALICE})]
    assert stored(client) == [("user", "个税起征点是多少", None), ("bot", "机器人答复：个税起征点是多少", "sent")]
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        assert session.scalar(select(ChatMessage.client_id).where(ChatMessage.kind == "user")) == "23456789012345678"


@pytest.mark.parametrize("mode", ["safe", "compatible"])
def test_encrypted_message_answered(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]], fake: FakeWeChat,
                                    mode: str) -> None:
    client, bot = make_wechat(safe=True)
    answer = push_safe(client, text_xml(ALICE, "怎么开红字发票", 1001), mode)
    assert answer.status_code == 200 and answer.text == "success"
    settle(client)
    assert fake.texts_for(ALICE) == ["机器人答复：怎么开红字发票"]
    assert [text for _, text, _, _ in bot.sent] == ["怎么开红字发票"]


def test_compatible_mode_without_our_key_uses_the_plaintext_copy(
        make_wechat: Callable[..., tuple[TestClient, ScriptedBot]], fake: FakeWeChat) -> None:
    client, bot = make_wechat()
    assert push_safe(client, text_xml(ALICE, "你好", 1002), "compatible").text == "success"
    settle(client)
    assert fake.texts_for(ALICE) == ["机器人答复：你好"]
    assert push_safe(client, text_xml(ALICE, "再问一个", 1003), "safe").status_code == 503  # no key for it


def test_safe_mode_refuses_what_it_cannot_trust(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                                fake: FakeWeChat) -> None:
    client, bot = make_wechat(safe=True)
    assert push(client, text_xml(ALICE, "明文", 2001)).status_code == 403  # a plaintext body is signed by nothing
    query, body = encrypted(text_xml(ALICE, "篡改", 2002))
    start = body.index("<Encrypt><![CDATA[") + len("<Encrypt><![CDATA[")
    tampered = body[:start] + ("A" if body[start] != "A" else "B") + body[start + 1:]
    assert push(client, tampered, query).status_code == 403  # msg_signature no longer matches
    query, body = encrypted(text_xml(ALICE, "别的公众号", 2003), app_id="wx9999999999999999")
    assert push(client, body, query).status_code == 403  # decrypts, but for another AppID
    query, body = encrypted(text_xml(ALICE, "签名", 2004))
    assert push(client, body, query | {"msg_signature": "0" * 40}).status_code == 403
    settle(client)
    assert stored(client) == [] and bot.sent == [] and fake.attempts == []


def test_three_retries_of_one_msgid_are_answered_once(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                                      fake: FakeWeChat) -> None:
    client, bot = make_wechat(bot=ScriptedBot(delay=0.3))  # the retries arrive while the first is being answered
    xml = text_xml(ALICE, "我的退税到哪一步了", 3001, created=int(time.time()))
    for _ in range(3):  # WeChat's retries: the same message, a new nonce each time
        assert push(client, xml).text == "success"
    settle(client)
    assert fake.texts_for(ALICE) == ["机器人答复：我的退税到哪一步了"]
    assert len(bot.sent) == 1
    assert [kind for kind, _, _ in stored(client)] == ["user", "bot"]
    assert push(client, xml).text == "success"  # a late retry too
    settle(client)
    assert len(fake.texts_for(ALICE)) == 1 and len(bot.sent) == 1


BOMB = """<?xml version="1.0"?>
<!DOCTYPE xml [
 <!ENTITY a "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
]>
<xml><ToUserName>gh_0f1e2d3c4b5a</ToUserName><FromUserName>oAbCdEfGhIjKlMnOpQrStUvWx01</FromUserName>
<CreateTime>1700000000</CreateTime><MsgType>text</MsgType><Content>&d;</Content><MsgId>4001</MsgId></xml>"""
EXTERNAL = """<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<xml><FromUserName>oAbCdEfGhIjKlMnOpQrStUvWx01</FromUserName><MsgType>text</MsgType><Content>&x;</Content></xml>"""


@pytest.mark.parametrize("case", ["bad_signature", "old_timestamp", "future_timestamp", "entity_bomb",
                                  "external_entity", "malformed", "not_utf8", "no_msgtype", "bad_openid",
                                  "two_megabytes"])
def test_refused_without_processing(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]], fake: FakeWeChat,
                                    case: str) -> None:
    client, bot = make_wechat()
    xml = text_xml(ALICE, "你好", 4001)
    query = signed(openid=ALICE)
    expected, body = 400, xml
    if case == "bad_signature":
        query["signature"] = sha1_signature("not-the-token", query["timestamp"], query["nonce"])
        expected = 403
    elif case in ("old_timestamp", "future_timestamp"):
        query = signed(timestamp=int(time.time()) + (-600 if case == "old_timestamp" else 600), openid=ALICE)
        expected = 403
    elif case == "entity_bomb":
        body = BOMB
    elif case == "external_entity":
        body = EXTERNAL
    elif case == "malformed":
        body = xml[:-7]
    elif case == "not_utf8":
        body = xml.replace("你好", "\udcff")  # encoded below as a lone surrogate's bytes: not UTF-8
    elif case == "no_msgtype":
        body = xml.replace("<MsgType><![CDATA[text]]></MsgType>", "")
    elif case == "bad_openid":
        body = xml.replace(ALICE, "../../etc")
    elif case == "two_megabytes":
        body, expected = text_xml(ALICE, "税" * 700_000, 4001), 413
    data = body.encode("utf-8", "surrogateescape")
    answer = client.post("/wechat", params=query, content=data, headers={"Content-Type": "text/xml"})
    assert answer.status_code == expected, answer.text
    assert answer.text != "success"
    settle(client)
    assert stored(client) == [] and bot.sent == []
    assert fake.attempts == [] and fake.token_requests == 0


# ------------------------------------------------------------------------------------------------ delivery


def test_access_token_cached_and_renewed_on_40001_and_42001(
        make_wechat: Callable[..., tuple[TestClient, ScriptedBot]], fake: FakeWeChat) -> None:
    client, _ = make_wechat()
    push(client, text_xml(ALICE, "一", 5001))
    push(client, text_xml(BOB, "二", 5002))
    settle(client)
    assert fake.texts_for(ALICE) == ["机器人答复：一"] and fake.texts_for(BOB) == ["机器人答复：二"]
    assert fake.token_requests == 1  # cached
    fake.expire_tokens()
    push(client, text_xml(ALICE, "三", 5003))
    settle(client)
    assert fake.texts_for(ALICE)[-1] == "机器人答复：三" and fake.token_requests == 2
    fake.revoke_tokens()
    push(client, text_xml(BOB, "四", 5004))
    settle(client)
    assert fake.texts_for(BOB)[-1] == "机器人答复：四" and fake.token_requests == 3
    assert [code for who, code in fake.attempts] == [0, 0, 42001, 0, 40001, 0]
    assert all(delivery == "sent" for kind, _, delivery in stored(client) if kind == "bot")


def test_outside_48_hours_recorded_failed_not_retried(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                                      fake: FakeWeChat) -> None:
    client, _ = make_wechat()
    fake.outside_window.add(ALICE)
    push(client, text_xml(ALICE, "还在吗", 6001))
    settle(client)
    status = client.app.state.outbox.status(f"wx-{ALICE}")  # type: ignore[attr-defined]
    assert [(s["delivery"], s["attempts"]) for s in status] == [("failed", 1)]
    assert "45015" in status[0]["delivery_error"]
    assert asyncio.run(client.app.state.outbox.once()) == 0  # type: ignore[attr-defined]
    assert fake.attempts == [(ALICE, 45015)] and fake.sent == []


def test_long_answers_split_at_sentences(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                         fake: FakeWeChat) -> None:
    sentence = "纳税人享受专项附加扣除，应当按规定留存相关资料备查。"  # 26 characters, 78 bytes
    long = "".join(f"{i:02d}{sentence}" for i in range(60))  # about 4.8 KB
    client, _ = make_wechat(bot=ScriptedBot({"扣除政策": [{"text": long}]}))
    push(client, text_xml(ALICE, "扣除政策", 7001))
    settle(client)
    parts = fake.texts_for(ALICE)
    assert len(parts) == 3
    assert all(len(part.encode("utf-8")) <= 2048 for part in parts)
    assert all(part.endswith("。") for part in parts)
    assert "".join(parts) == long
    assert stored(client)[-1][2] == "sent"  # one message, delivered in three parts


def test_split_text_boundaries() -> None:
    paragraphs = "第一段" + "甲" * 600 + "。\n" + "第二段" + "乙" * 300 + "！第三句" + "丙" * 200
    parts = split_text(paragraphs)
    assert parts[0] == "第一段" + "甲" * 600 + "。"  # the paragraph break first
    assert all(len(p.encode()) <= 2048 for p in parts) and "".join(parts) == paragraphs.replace("\n", "")
    emoji = "😀" * 1000  # 4 bytes each, no break anywhere: cut between characters
    parts = split_text(emoji)
    assert [len(p) for p in parts] == [512, 488] and "".join(parts) == emoji
    assert split_text("短消息") == ["短消息"]
    assert split_text("a" * 2048) == ["a" * 2048]


def test_token_fetched_once_for_concurrent_sends_and_refreshed_before_expiry(fake: FakeWeChat) -> None:
    now = [1000.0]
    api = WeChatApi(fake.url, APP_ID, APP_SECRET, clock=lambda: now[0])

    async def burst() -> None:
        await asyncio.gather(*(api.send_text(ALICE, f"消息{i}") for i in range(10)))

    asyncio.run(burst())
    assert fake.token_requests == 1 and len(fake.sent) == 10
    now[0] += 7200 - 301  # still more than five minutes left
    asyncio.run(api.send_text(ALICE, "再来"))
    assert fake.token_requests == 1
    now[0] += 2  # within five minutes of expiry: refreshed before WeChat would refuse it
    asyncio.run(api.send_text(ALICE, "刷新"))
    assert fake.token_requests == 2 and [code for _, code in fake.attempts] == [0] * 12


def test_replicas_share_the_stable_token_where_classic_fetches_replace_each_other(fake: FakeWeChat) -> None:
    """Two service replicas, each with its own cache. With the stable-token endpoint (the default) they get the same
    token and neither send is refused. With the classic endpoint each fetch replaces the token the other holds (at
    once here; after five minutes at WeChat), so every turn of the other replica costs a refused send and a fetch."""
    fake.classic_grace = 0.0

    async def turns(first: WeChatApi, second: WeChatApi) -> None:
        for n in range(3):
            await first.send_text(ALICE, f"甲{n}")
            await second.send_text(ALICE, f"乙{n}")

    one, two = WeChatApi(fake.url, APP_ID, APP_SECRET), WeChatApi(fake.url, APP_ID, APP_SECRET)
    asyncio.run(turns(one, two))
    assert fake.token_requests == 2 and [code for _, code in fake.attempts] == [0] * 6
    assert one._token == two._token

    fake.attempts.clear()
    fake.token_requests = 0
    one = WeChatApi(fake.url, APP_ID, APP_SECRET, stable_token=False)
    two = WeChatApi(fake.url, APP_ID, APP_SECRET, stable_token=False)
    asyncio.run(turns(one, two))
    assert len(fake.texts_for(ALICE)) == 12  # delivered all the same, after renewing
    assert 40001 in [code for _, code in fake.attempts] and fake.token_requests > 2


def test_send_errors_mapped(fake: FakeWeChat) -> None:
    api = WeChatApi(fake.url, APP_ID, APP_SECRET)
    fake.queued_errors = [-1]  # system busy: worth another try later
    with pytest.raises(DeliveryFailed) as failed:
        asyncio.run(api.send_text(ALICE, "忙"))
    assert not failed.value.permanent and "-1" in failed.value.reason
    fake.queued_errors = [40001, 40001]  # renewed once, then given up (the outbox tries again later)
    with pytest.raises(DeliveryFailed) as failed:
        asyncio.run(api.send_text(ALICE, "令牌"))
    assert not failed.value.permanent and fake.token_requests == 2
    fake.outside_window.add(BOB)
    with pytest.raises(DeliveryFailed) as failed:
        asyncio.run(api.send_text(BOB, "窗口外"))
    assert failed.value.permanent
    wrong = WeChatApi(fake.url, APP_ID, "wrong-secret")
    with pytest.raises(DeliveryFailed, match="40125"):
        asyncio.run(wrong.send_text(ALICE, "密钥错"))
    dead = WeChatApi("http://127.0.0.1:9", APP_ID, APP_SECRET, timeout=2)
    with pytest.raises(DeliveryFailed, match="ConnectError"):
        asyncio.run(dead.send_text(ALICE, "连不上"))


def test_a_retry_resumes_after_the_part_that_failed(fake: FakeWeChat) -> None:
    sender = wechat.CustomerServiceSender(WeChatApi(fake.url, APP_ID, APP_SECRET))
    text = "。".join(["第" + "字" * 299] * 4) + "。"  # 3,600 bytes: two parts of two sentences
    fake.queued_errors = [0, -1]
    with pytest.raises(DeliveryFailed):
        asyncio.run(sender.send(f"wx-{ALICE}", text, None))
    asyncio.run(sender.send(f"wx-{ALICE}", text, None))
    parts = fake.texts_for(ALICE)
    assert len(parts) == 2 and "".join(parts) == text  # the first part once, the second after the retry
    with pytest.raises(DeliveryFailed) as failed:
        asyncio.run(sender.send("web-abc", "不是微信会话", None))
    assert failed.value.permanent


def test_secrets_kept_out_of_http_logs() -> None:
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s"',
                               ("GET", "https://x/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=s3cr3t",
                                "HTTP/1.1 200 OK"), None)
    RedactSecrets().filter(record)
    assert "s3cr3t" not in record.getMessage() and "appid=wx1" in record.getMessage()


# ------------------------------------------------------------------------------------------------ events and types


def test_subscribe_unsubscribe_and_menu_clicks(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                               fake: FakeWeChat) -> None:
    greeting = "您好，我是12366智能税务助手。我可以解答税收政策问题，帮您查询应缴税款和退税进度。"
    client, bot = make_wechat(bot=ScriptedBot({"/greet": [{"text": greeting}]}))
    now = int(time.time())
    subscribe = event_xml(ALICE, "subscribe", now, EventKey="")
    assert push(client, subscribe).text == "success"
    assert push(client, subscribe).text == "success"  # WeChat's retry of the event
    settle(client)
    assert fake.texts_for(ALICE) == [greeting]
    assert [(text, meta.get("event")) for _, text, _, meta in bot.sent] == [("/greet", "subscribe")]

    assert push(client, event_xml(BOB, "unsubscribe", now)).text == "success"
    settle(client)
    assert stored(client, f"wx-{BOB}") == [] and fake.texts_for(BOB) == []

    push(client, event_xml(ALICE, "CLICK", now + 1, EventKey="HUMAN"))
    push(client, event_xml(ALICE, "CLICK", now + 2, EventKey="TAX_DUE"))
    settle(client)
    assert [text for _, text, _, _ in bot.sent[1:]] == ["/request_human", "/query_tax_due"]
    push(client, event_xml(ALICE, "CLICK", now + 3, EventKey="NO_SUCH_KEY"))
    push(client, event_xml(ALICE, "VIEW", now + 4, EventKey="https://etax.example.cn/"))
    settle(client)
    assert len(bot.sent) == 3
    assert fake.texts_for(ALICE)[-1] == wechat.UNKNOWN_MENU
    assert stored(client, f"wx-{ALICE}")[-2:] == [("user", "[菜单]", None), ("system", wechat.UNKNOWN_MENU, "sent")]


def test_menu_keys_are_intents_of_the_domain() -> None:
    intents = set()
    for path in (Path(__file__).parents[2] / "bot" / "domain").glob("*.yml"):
        intents |= {i if isinstance(i, str) else next(iter(i)) for i in yaml.safe_load(path.read_text()).get("intents", [])}
    assert {payload.removeprefix("/") for payload in wechat.MENU.values()} <= intents
    assert wechat.WELCOME.removeprefix("/") in intents


def test_voice_with_and_without_recognition(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                            fake: FakeWeChat) -> None:
    client, bot = make_wechat()
    push(client, message_xml(ALICE, "voice", MediaId="media-1", Format="amr", Recognition="我想查一下退税进度", MsgId=8001))
    settle(client)
    assert bot.sent == [(f"wx-{ALICE}", "我想查一下退税进度", "wechat",
                         {"asr_confidence": None, "voice": True, "channel_user_id": ALICE})]
    assert fake.texts_for(ALICE) == ["机器人答复：我想查一下退税进度"]
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        user = session.scalars(select(ChatMessage).where(ChatMessage.kind == "user")).one()
        assert user.payload == {"asr_confidence": None}
    push(client, message_xml(BOB, "voice", MediaId="media-2", Format="amr", MsgId=8002))
    settle(client)
    assert len(bot.sent) == 1
    assert fake.texts_for(BOB) == [wechat.VOICE_NOT_RECOGNISED]
    assert stored(client, f"wx-{BOB}") == [("user", "[语音]", None), ("system", wechat.VOICE_NOT_RECOGNISED, "sent")]


def eval_recording(kind: str = "policy") -> tuple[str, Path]:
    """(reference text, 16 kHz file) of the first item of ``kind`` in the speech evaluation set (asr/eval)."""
    import json

    root = Path(__file__).resolve().parents[2] / "asr" / "eval"
    item = next(i for i in json.loads((root / "manifest.json").read_text())["items"] if i["kind"] == kind)
    return item["text"], root / "audio" / "16k" / f"{item['id']}.flac"


def test_voice_without_recognition_is_downloaded_and_recognised(
        make_wechat: Callable[..., tuple[TestClient, ScriptedBot]], fake: FakeWeChat) -> None:
    """No Recognition field: the AMR audio comes from the media API and asr/ (Whisper, for real) reads it."""
    from asr import audio as audio_io
    from asr.metrics import cer

    reference, recording = eval_recording()
    fake.media["voice-media-1"] = audio_io.amr_nb_bytes(audio_io.load(recording))
    client, bot = make_wechat()
    reply = push(client, message_xml(ALICE, "voice", MediaId="voice-media-1", Format="amr", MsgId=8101))
    assert reply.text == "success"
    push(client, message_xml(ALICE, "voice", MediaId="voice-media-1", Format="amr", MsgId=8101))  # WeChat's retry
    settle(client, timeout=60)
    assert len(bot.sent) == 1 and fake.media_requests == 1  # recognised once
    conversation, heard, channel, metadata = bot.sent[0]
    assert channel == "wechat" and metadata["voice"] is True and 0 < metadata["asr_confidence"] <= 1
    assert cer(reference, heard) <= 0.25, (reference, heard)
    assert fake.texts_for(ALICE) == [f"机器人答复：{heard}"]
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        user = session.scalars(select(ChatMessage).where(ChatMessage.kind == "user")).one()
        assert user.text == heard and user.payload == {"asr_confidence": metadata["asr_confidence"]}


def test_voice_that_cannot_be_recognised_gets_a_polite_reply(
        make_wechat: Callable[..., tuple[TestClient, ScriptedBot]], fake: FakeWeChat) -> None:
    """Garbage after an AMR header, and silence: nothing goes to the bot; the user is asked to type."""
    import numpy as np

    from asr import audio as audio_io
    from asr.types import Audio

    fake.media["garbage"] = b"#!AMR\n" + bytes(range(256)) * 8
    fake.media["silence"] = audio_io.amr_nb_bytes(Audio(np.zeros(16000, dtype=np.int16), 8000))
    client, bot = make_wechat()
    push(client, message_xml(ALICE, "voice", MediaId="garbage", Format="amr", MsgId=8201))
    push(client, message_xml(BOB, "voice", MediaId="silence", Format="amr", MsgId=8202))
    settle(client, timeout=60)
    assert bot.sent == []
    assert fake.texts_for(ALICE) == [wechat.VOICE_NOT_RECOGNISED]
    assert fake.texts_for(BOB) == [wechat.VOICE_NOT_RECOGNISED]
    assert stored(client, f"wx-{BOB}") == [("user", "[语音]", None), ("system", wechat.VOICE_NOT_RECOGNISED, "sent")]


@pytest.mark.parametrize("msg_type,fields,shown", [
    ("image", {"PicUrl": "http://mmbiz.qpic.cn/x.jpg", "MediaId": "m1"}, "[图片]"),
    ("location", {"Location_X": "39.9", "Location_Y": "116.4", "Scale": 15, "Label": "北京"}, "[位置]"),
    ("link", {"Title": "通知", "Description": "d", "Url": "https://example.cn/"}, "[链接]"),
])
def test_other_message_types_get_a_polite_reply(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                                fake: FakeWeChat, msg_type: str, fields: dict[str, Any],
                                                shown: str) -> None:
    client, bot = make_wechat()
    xml = message_xml(ALICE, msg_type, **fields, MsgId=9001)
    push(client, xml)
    push(client, xml)  # a retry
    settle(client)
    assert bot.sent == []
    assert fake.texts_for(ALICE) == [wechat.TEXT_ONLY]
    assert "文字" in wechat.TEXT_ONLY
    assert stored(client) == [("user", shown, None), ("system", wechat.TEXT_ONLY, "sent")]


# ------------------------------------------------------------------------------------------------ buttons


def test_buttons_numbered_and_a_digit_mapped_back(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                                  fake: FakeWeChat) -> None:
    offer = [{"text": "这个问题需要为您转接人工客服吗？",
              "buttons": [{"title": "转人工", "payload": "/request_human"}, {"title": "不用了", "payload": "/deny"}]}]
    client, bot = make_wechat(bot=ScriptedBot({"发票被退回了": offer}))
    push(client, text_xml(ALICE, "发票被退回了", 10_001))
    settle(client)
    assert fake.texts_for(ALICE) == ["这个问题需要为您转接人工客服吗？\n\n回复 1：转人工\n回复 2：不用了"]
    push(client, text_xml(ALICE, "２", 10_002))  # a full-width digit, as some keyboards type it
    settle(client)
    assert bot.sent[-1][1] == "/deny"
    push(client, text_xml(ALICE, "2", 10_003))  # the buttons were answered: a digit is a digit again
    settle(client)
    assert bot.sent[-1][1] == "2"
    push(client, text_xml(ALICE, "发票被退回了", 10_004))
    settle(client)
    push(client, text_xml(ALICE, "转人工", 10_005))  # a button's title works too
    settle(client)
    assert bot.sent[-1][1] == "/request_human"


def test_a_digit_sent_before_the_buttons_arrived_picks_from_them(
        make_wechat: Callable[..., tuple[TestClient, ScriptedBot]], fake: FakeWeChat) -> None:
    """Buttons are read when a message is answered, in order: a user who types "1" while the answer with the buttons
    is still on its way picks from those buttons. The transcript keeps what the user typed."""
    offer = [{"text": "需要转人工吗？", "buttons": [{"title": "转人工", "payload": "/request_human"}]}]
    client, bot = make_wechat(bot=ScriptedBot({"发票被退回了": offer}, delay=0.5))
    push(client, text_xml(ALICE, "发票被退回了", 11_001))
    push(client, text_xml(ALICE, "1", 11_002))  # acknowledged before the first message is answered
    settle(client)
    assert [text for _, text, *_ in bot.sent] == ["发票被退回了", "/request_human"]
    with client.app.state.sessionmaker() as session:  # type: ignore[attr-defined]
        typed = session.scalars(select(ChatMessage.text).where(ChatMessage.kind == "user").order_by(ChatMessage.id))
        assert list(typed) == ["发票被退回了", "1"]


def test_rating_buttons_keep_their_digits() -> None:
    rating = [{"title": "满意", "payload": "1"}, {"title": "一般", "payload": "2"}, {"title": "不满意", "payload": "3"},
              {"title": "转为投诉", "payload": "0"}]
    question = "请为本次服务评价：回复 1 满意，2 一般，3 不满意；如需投诉请回复 0。"
    assert render(question, rating) == question  # the text names the numbers already
    assert render("请评价：", rating) == "请评价：\n\n回复 1：满意\n回复 2：一般\n回复 3：不满意\n回复 0：转为投诉"
    assert [choice(rating, d) for d in ("1", "0", "4")] == ["1", "0", None]
    assert [n for n, _, _ in numbered([{"title": "是", "payload": "/affirm"}, {"title": "否", "payload": "/deny"}])] == ["1", "2"]


# ------------------------------------------------------------------------------------------------ parsing


def test_parsing_refuses_dtds_and_reads_wechat_messages() -> None:
    for body in (BOMB, EXTERNAL, "<!DOCTYPE xml><xml/>", '<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd"><xml/>'):
        with pytest.raises(UnsafeXml):
            xml_dict(body.encode())
    for body in (b"<xml><a></xml>", b"<notxml/>", b"", "<xml>你好</xml>".encode("gbk"), b"<!doctype xml><xml/>"):
        with pytest.raises(BadMessage):
            xml_dict(body)
    quoted = read_message(text_xml(ALICE, "<!DOCTYPE html> 是什么？<!ENTITY>", 43).encode())  # inside CDATA: text
    assert quoted.text == "<!DOCTYPE html> 是什么？<!ENTITY>"
    incoming = read_message(text_xml(ALICE, "你好 <b>", 42, created=1_700_000_000).encode())
    assert (incoming.openid, incoming.kind, incoming.message_id, incoming.text) == (ALICE, "text", "42", "你好 <b>")
    event = read_message(event_xml(ALICE, "CLICK", 1_700_000_000, EventKey="HUMAN").encode())
    assert (event.kind, event.event, event.event_key, event.message_id) == ("event", "click", "HUMAN", "click-1700000000")
    with pytest.raises(BadMessage):
        read_message(text_xml(ALICE, "x", 42).replace("<MsgId>42</MsgId>", "<MsgId>abc</MsgId>").encode())
    with pytest.raises(BadMessage):
        read_message(text_xml(ALICE, "x", 42).replace("<Content><![CDATA[x]]></Content>",
                                                      "<Content><a>1</a></Content>").encode())


def test_a_cancelled_webhook_still_answers_what_it_stored(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                                         fake: FakeWeChat) -> None:
    """The handler cancelled while the message is being stored (the connection dropped): the message is stored
    and answered all the same, once."""
    client, bot = make_wechat()
    push(client, text_xml(BOB, "先打个招呼", 12_000))
    settle(client)
    channel = client.app.state.wechat  # type: ignore[attr-defined]

    async def cancelled() -> None:
        request = asyncio.create_task(channel.take(read_message(text_xml(ALICE, "你好", 12_001).encode())))
        await asyncio.sleep(0)  # the request is inside take(), waiting for the message to be stored
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        while channel.tasks:
            await asyncio.sleep(0.02)

    asyncio.run(cancelled())
    settle(client)
    assert [text for conversation, text, *_ in bot.sent if conversation == f"wx-{ALICE}"] == ["你好"]
    push(client, text_xml(ALICE, "你好", 12_001))  # WeChat's retry: already answered
    settle(client)
    assert len(fake.texts_for(ALICE)) == 1


def test_a_message_is_stored_before_wechat_hears_success(make_wechat: Callable[..., tuple[TestClient, ScriptedBot]],
                                                         fake: FakeWeChat) -> None:
    client, bot = make_wechat(bot=ScriptedBot(delay=1.0))  # the bot is still thinking when the push is answered
    answer = push(client, text_xml(ALICE, "我的退税到哪一步了", 34_567_890_123_456_789))
    assert answer.text == "success"
    assert ("user", "我的退税到哪一步了", None) in stored(client)  # already stored: a crash now loses nothing
    settle(client)
    assert fake.texts_for(ALICE) == ["机器人答复：我的退税到哪一步了"]
