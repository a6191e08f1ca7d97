"""The agent console in a real browser (Debian chromium driven by Playwright) against the running system.

A taxpayer chats on the web chat's HTTP side (as the page does): a policy question, then 转人工. An agent logs in
at /desk, goes online, accepts the queued conversation, sees what was said before the handoff and what the
knowledge base proposed, and replies; the user receives the reply; while the agent owns the conversation the bot
says nothing (through the web chat and through Rasa's REST webhook) and the agent sees the user's messages; the
agent closes it, the bot asks for a rating, and thanks the user for it.
"""
from __future__ import annotations

import time
import uuid

import httpx
import pytest

from tests.system.browser import launch, playwright_or_skip

sync_api = playwright_or_skip()
POLICY_QUESTION = "个税起征点是多少"
expect = sync_api.expect


class WebUser:
    """The web chat's side of a conversation: POST /chat/api/send, long-poll GET /chat/api/messages."""

    def __init__(self, service_url: str) -> None:
        self.url = service_url
        self.session = uuid.uuid4().hex
        self.seen = 0  # id of the last message read

    @property
    def conversation_id(self) -> str:
        return f"web-{self.session}"

    def send(self, text: str) -> list[dict]:
        reply = httpx.post(f"{self.url}/chat/api/send", json={"session": self.session, "text": text,
                                                                "id": uuid.uuid4().hex[:16]}, timeout=60)
        assert reply.status_code == 200, reply.text
        replies = reply.json()["replies"]
        self.seen = max([self.seen, *(m["id"] for m in replies)])
        return replies

    def wait_for(self, needle: str, timeout: float = 40) -> list[dict]:
        """Messages from the other side until one contains ``needle``."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = httpx.get(f"{self.url}/chat/api/messages",
                              params={"session": self.session, "after": self.seen, "wait": 10}, timeout=30)
            assert reply.status_code == 200, reply.text
            items = reply.json()["items"]
            if items:
                self.seen = items[-1]["id"]
            got += [m for m in items if m["kind"] != "user"]
            if any(needle in m["text"] for m in got):
                return got
        raise AssertionError(f"no message with {needle!r} within {timeout} s; got {[m['text'] for m in got]}")


def texts(messages: list[dict]) -> str:
    return "\n".join(m.get("text") or "" for m in messages)


@pytest.fixture
def page(tmp_path):
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
        context.set_default_timeout(20_000)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        yield page
        page.screenshot(path=str(tmp_path / "desk.png"))  # left for whoever reads a failure
        browser.close()
        assert not errors, f"script errors on the page: {errors}"


def test_an_agent_takes_over_a_web_chat_in_the_console(system, page):
    user = WebUser(system.service_url)
    answer = user.send(POLICY_QUESTION)
    assert "5000" in texts(answer), answer
    assert user.send("转人工"), "the handoff request got no reply"

    password = system.desk_password
    page.goto(f"{system.service_url}/desk")
    page.get_by_test_id("login-username").fill("zuoxi1")
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("me-name")).to_contain_text("李坐席")
    page.get_by_test_id("state-select").select_option("online")
    expect(page.get_by_test_id("connection")).to_contain_text("已连接")

    item = page.locator(f'[data-testid="queue-item"][data-conversation-id="{user.conversation_id}"]')
    expect(item).to_be_visible()
    item.get_by_test_id("accept").click()
    mine = page.locator(f'[data-testid="my-case"][data-conversation-id="{user.conversation_id}"]')
    expect(mine).to_be_visible()
    expect(page.get_by_test_id("transcript")).to_contain_text(POLICY_QUESTION)
    expect(page.get_by_test_id("kb-candidates").locator("li").first).to_contain_text("起征点")
    expect(page.get_by_test_id("context")).to_contain_text("用户要求")

    page.get_by_test_id("reply-box").fill("您好，我是人工客服李坐席，请问您还想了解什么？")
    page.get_by_test_id("send").click()
    assert "人工客服李坐席" in texts(user.wait_for("人工客服李坐席"))

    # While the agent owns the conversation the bot stays quiet, and the agent sees what the user writes.
    assert user.send("那年终奖怎么算税") == []
    expect(page.get_by_test_id("transcript")).to_contain_text("那年终奖怎么算税")
    assert system.say(user.conversation_id, "专项附加扣除有哪些", channel="webchat") == []
    expect(page.get_by_test_id("transcript")).to_contain_text("专项附加扣除有哪些")

    page.get_by_test_id("disposition").select_option("resolved")
    page.get_by_test_id("close").click()
    expect(page.get_by_test_id("conv-status")).to_contain_text("已结束")
    expect(mine).to_have_count(0)
    expect(page.get_by_test_id("composer")).to_be_hidden()

    assert "评价" in texts(user.wait_for("评价"))
    assert "感谢" in texts(user.send("1"))
    expect(page.get_by_test_id("conv-status")).to_contain_text("满意")
