"""The web chat in a real browser (Debian chromium driven by Playwright) against the running system.

A taxpayer opens the chat page, asks a policy question and gets the answer; the network goes away while they send
a message (it waits, then goes out once the network is back); the WebSocket is killed right after a message reached
the server and before its answer came back (the page reconnects, sends the message again, and the message and its
answer are each shown and stored once); a reload restores the history; a button from the assistant hands the
conversation to a person (the page shows the title, not the payload) and the queue state; an agent accepts and
replies; the agent closes and the rating comes as buttons. The embeddable widget is loaded by one script tag on
another site's page, and opens the chat. Screenshots at 1280×800 and 390×844 are left in the test's tmp directory.
"""
from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.system.browser import launch, playwright_or_skip
from tests.system.conftest import System

sync_api = playwright_or_skip()
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
expect = sync_api.expect


class Pipe:
    """Sits on the page's WebSocket (Playwright's route_web_socket): passes every frame through, records what the
    page sends, and on request kills the connection right after the next chat message reached the server."""

    def __init__(self) -> None:
        self.connections = 0
        self.sent: list[dict[str, Any]] = []
        self.cut_next_message = False

    def __call__(self, page_side: Any) -> None:
        self.connections += 1
        server = page_side.connect_to_server()

        def up(message: str | bytes) -> None:
            frame = json.loads(message)
            self.sent.append(frame)
            server.send(message)
            if frame.get("type") == "message" and self.cut_next_message:
                self.cut_next_message = False
                page_side.close(code=4000, reason="cut by the test")
                server.close()

        page_side.on_message(up)
        server.on_message(lambda message: page_side.send(message))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    expect.set_options(timeout=20_000)  # answers go through Rasa and the knowledge base
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()
    expect.set_options(timeout=5_000)


def new_page(browser: Any, errors: list[str], **options: Any) -> tuple[Any, Any]:
    context = browser.new_context(locale="zh-CN", **options)
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page


def shown(page: Any) -> list[tuple[str, str]]:
    """(kind, text) of every message bubble on the page, in order."""
    return [(m.get_attribute("data-kind"), m.get_by_test_id("bubble").inner_text())
            for m in page.get_by_test_id("message").all()]


def ask(page: Any, text: str) -> None:
    """Type and press Enter, as a person would."""
    box = page.get_by_role("textbox", name="输入您的问题")
    box.focus()
    box.fill(text)
    box.press("Enter")
    expect(box).to_have_value("")


def stored_user_texts(system: System, session: str) -> list[str]:
    items = httpx.get(f"{system.service_url}/chat/api/messages", params={"session": session}, timeout=10).json()["items"]
    return [m["text"] for m in items if m["kind"] == "user"]


def test_the_chat_survives_drops_and_reloads_and_reaches_a_person(system: System, browser: Any, tmp_path: Path) -> None:
    errors: list[str] = []
    context, page = new_page(browser, errors, viewport=DESKTOP)
    pipe = Pipe()
    page.route_web_socket("**/chat/ws", pipe)
    page.goto(system.service_url)
    expect(page.get_by_test_id("connection")).to_have_text("已连接")
    log = page.get_by_role("log", name="对话记录")
    bot = page.locator('[data-testid="message"][data-kind="bot"]')

    ask(page, "个税起征点是多少")
    expect(bot.last).to_contain_text("5000")
    session = page.evaluate("localStorage.getItem('taxbot.webchat.session')")

    # Offline: the message waits on the page, and goes out once the network is back.
    context.set_offline(True)
    expect(page.get_by_test_id("connection")).to_contain_text("断开")
    ask(page, "增值税税率是多少")
    expect(page.get_by_test_id("message-status").last).to_have_text("等待网络恢复后自动发送")
    context.set_offline(False)
    expect(bot.last).to_contain_text("13%")

    # Killed after the message reached the server, before the answer came back: resent, answered once.
    before = pipe.connections
    pipe.cut_next_message = True
    ask(page, "印花税怎么交")
    expect(bot.last).to_contain_text("印花税由书立应税凭证的当事人缴纳")
    expect(page.get_by_test_id("connection")).to_have_text("已连接")
    assert pipe.connections > before, "the connection was not cut"
    resent = [f for f in pipe.sent if f.get("type") == "message" and f["text"] == "印花税怎么交"]
    assert len(resent) == 2 and resent[0]["id"] == resent[1]["id"], resent
    expect(log.get_by_test_id("message-status")).to_have_count(0)  # nothing left unacknowledged
    conversation = shown(page)
    for question in ("个税起征点是多少", "增值税税率是多少", "印花税怎么交"):
        assert conversation.count(("user", question)) == 1, conversation
    assert sum("印花税由书立应税凭证" in text for _, text in conversation) == 1, conversation
    assert sum("13%" in text for _, text in conversation) == 1, conversation
    assert stored_user_texts(system, session) == ["个税起征点是多少", "增值税税率是多少", "印花税怎么交"]

    # A reload restores the conversation from the server.
    page.reload()
    expect(page.get_by_test_id("connection")).to_have_text("已连接")
    expect(page.get_by_test_id("message")).to_have_count(len(conversation))
    assert shown(page) == conversation

    # The assistant's button hands over to a person; the page says what the button said.
    offer = page.get_by_test_id("quick-reply").filter(has_text="转人工")
    expect(offer).to_be_enabled()
    offer.focus()
    page.keyboard.press("Enter")
    banner = page.get_by_test_id("handoff")
    expect(banner).to_be_visible()
    expect(page.get_by_test_id("handoff-text")).to_contain_text("正在为您转接人工客服")
    expect(page.get_by_test_id("handoff-text")).to_contain_text(re.compile("您前面还有|马上就轮到您了"))
    expect(page.get_by_role("button", name="取消排队")).to_be_visible()
    expect(bot.last).to_contain_text("RG")
    assert ("user", "转人工") in shown(page) and "/request_human" not in str(shown(page))
    page.screenshot(path=str(tmp_path / "webchat-desktop-queued.png"))

    # An agent accepts and replies; the page shows who is serving and what they wrote.
    agent = httpx.Client(base_url=system.service_url, timeout=30)
    assert agent.post("/desk/api/login", json={"username": "zuoxi1", "password": system.desk_password}).status_code == 200
    assert agent.post("/desk/api/state", json={"state": "online"}).status_code == 200
    [case] = [c for c in agent.get("/desk/api/cases").json()["items"] if c["conversation_id"] == f"web-{session}"]
    assert agent.post(f"/desk/api/cases/{case['id']}/accept").status_code == 200
    expect(page.get_by_test_id("handoff-text")).to_contain_text("李坐席")
    expect(page.get_by_role("button", name="取消排队")).to_be_hidden()
    assert agent.post(f"/desk/api/cases/{case['id']}/messages",
                      json={"text": "您好，我是人工客服李坐席，<b>请问</b>还有什么问题？"}).status_code == 201
    reply = page.locator('[data-testid="message"][data-kind="agent"]').last
    expect(reply).to_contain_text("人工客服 李坐席")
    expect(reply.get_by_test_id("bubble")).to_have_text("您好，我是人工客服李坐席，<b>请问</b>还有什么问题？")
    expect(reply.locator("b")).to_have_count(0)  # text, never markup
    ask(page, "没有了，谢谢")
    expect(page.get_by_test_id("typing")).to_be_hidden()

    # The agent closes: the banner goes, the rating comes as buttons.
    assert agent.post(f"/desk/api/cases/{case['id']}/close", json={"disposition": "resolved"}).status_code == 200
    expect(banner).to_be_hidden()
    expect(bot.last).to_contain_text("评价")
    page.get_by_test_id("quick-reply").filter(has_text="满意").first.click()
    expect(page.get_by_test_id("message").last).to_contain_text("感谢您的评价")
    assert ("user", "满意") in shown(page)
    page.screenshot(path=str(tmp_path / "webchat-desktop.png"))

    # The same visitor on a phone-sized screen: the history is there, and the page fits.
    phone_context, phone = new_page(browser, errors, viewport=PHONE, is_mobile=True, has_touch=True,
                                    storage_state=context.storage_state())
    phone.goto(system.service_url)
    expect(phone.get_by_test_id("connection")).to_have_text("已连接")
    expect(phone.get_by_test_id("message").filter(has_text="感谢您的评价")).to_have_count(1)
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=str(tmp_path / "webchat-phone.png"))
    phone_context.close()
    context.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture
def other_site(system: System) -> Iterator[str]:
    """Another site's page with the widget's one script tag, served from its own origin (localhost, not the
    service's 127.0.0.1: a cross-site embed, as on a tax bureau's portal)."""
    page = (f'<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"><title>某市税务局</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
            f'<body><h1>某市税务局</h1><p>办税指南、政策法规、纳税服务。</p>'
            f'<script src="{system.service_url}/widget.js" async></script></body></html>').encode()

    class Site(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_widget_opens_the_chat_on_another_site(system: System, browser: Any, other_site: str, tmp_path: Path,
                                                   viewport: dict[str, int]) -> None:
    errors: list[str] = []
    context, page = new_page(browser, errors, viewport=viewport, is_mobile=viewport is PHONE)
    page.goto(other_site)
    launcher = page.get_by_test_id("taxchat-launcher")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    launcher.click()
    expect(launcher).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("dialog", name="12366 在线咨询")).to_be_visible()
    chat = page.frame_locator('[data-testid="taxchat-frame"]')
    expect(chat.get_by_test_id("connection")).to_have_text("已连接")
    expect(chat.get_by_role("textbox", name="输入您的问题")).to_be_focused()

    page.keyboard.type("转人工")
    page.keyboard.press("Enter")
    expect(chat.get_by_test_id("handoff-text")).to_contain_text("正在为您转接人工客服")
    page.screenshot(path=str(tmp_path / f"widget-{'phone' if viewport is PHONE else 'desktop'}.png"))
    chat.get_by_role("button", name="取消排队").click()
    expect(chat.get_by_test_id("handoff")).to_be_hidden()

    page.keyboard.press("Escape")
    expect(page.get_by_test_id("taxchat-panel")).to_be_hidden()
    expect(launcher).to_be_focused()
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def test_a_fresh_visitor_gets_their_own_conversation(system: System, browser: Any) -> None:
    """Two browsers never share a conversation: each gets its own anonymous session."""
    errors: list[str] = []
    sessions = []
    for _ in range(2):
        context, page = new_page(browser, errors, viewport=DESKTOP)
        page.goto(system.service_url)
        expect(page.get_by_test_id("connection")).to_have_text("已连接")
        sessions.append(page.evaluate("localStorage.getItem('taxbot.webchat.session')"))
        expect(page.get_by_test_id("message")).to_have_count(0)
        context.close()
    assert len(set(sessions)) == 2 and all(len(s) >= 16 for s in sessions), sessions
    assert not errors
