"""``taxbot chat``: talk to the running assistant in the terminal through the service's chat gateway, so that
what a person at the desk writes shows up here too (a background thread waits for new messages)."""
from __future__ import annotations

import re
import sys
import threading
import uuid
from typing import Any, TextIO

import httpx

from cli.config import RuntimeConfig

SPEAKERS = {"bot": "助手", "agent": "客服", "system": "系统"}
SESSION = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class Screen:
    """Prints each message once (the reply to a send and the waiting thread may both see it) and numbers the
    buttons of the latest message that has any."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.lock = out, threading.Lock()
        self.seen: set[int] = set()
        self.payloads: list[str] = []
        self.last_id = 0

    def show(self, messages: list[dict[str, Any]]) -> None:
        with self.lock:
            for message in messages:
                if message["id"] in self.seen:
                    continue
                self.seen.add(message["id"])
                self.last_id = max(self.last_id, message["id"])
                if message["kind"] not in SPEAKERS:
                    continue
                if message.get("text"):
                    self.out.write(f"{SPEAKERS[message['kind']]}：{message['text']}\n")
                buttons = (message.get("payload") or {}).get("buttons") or []
                if buttons:
                    self.payloads = []
                for button in buttons:
                    self.payloads.append(button.get("payload") or button.get("title", ""))
                    self.out.write(f"      [{len(self.payloads)}] {button.get('title', '')}\n")
            self.out.flush()


def _wait_for_messages(url: str, session: str, screen: Screen, stop: threading.Event) -> None:
    with httpx.Client(timeout=40) as client:
        while not stop.is_set():
            try:
                reply = client.get(f"{url}/chat/api/messages",
                                   params={"session": session, "after": screen.last_id, "wait": 20})
                if reply.status_code == 200:
                    screen.show(reply.json()["items"])
                    continue
            except httpx.HTTPError:
                pass
            stop.wait(2)


def chat(config: RuntimeConfig, sender: str | None = None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    session = sender or f"cli-{uuid.uuid4().hex}"
    if not SESSION.match(session):
        out.write("--sender 须为 16–64 个字母、数字、- 或 _。\n")
        return 2
    url = config.service_url
    interactive = stdin.isatty()
    out.write(f"已连接 {url}（会话 {session}）。输入消息后回车；输入按钮编号可点按钮；Ctrl-D 或 /exit 退出。\n")
    screen = Screen(out)
    stop = threading.Event()
    waiter = threading.Thread(target=_wait_for_messages, args=(url, session, screen, stop), daemon=True)
    started = False
    try:
        with httpx.Client(timeout=60) as client:
            while True:
                if interactive:
                    out.write("您：")
                    out.flush()
                line = stdin.readline()
                if not line:
                    break
                text = line.strip()
                if text in {"/exit", "/quit"}:
                    break
                if not text:
                    continue
                if text.isdigit() and 1 <= int(text) <= len(screen.payloads):
                    text = screen.payloads[int(text) - 1]
                body = {"session": session, "text": text, "id": uuid.uuid4().hex, "channel": "rest"}
                try:
                    reply = client.post(f"{url}/chat/api/send", json=body)
                except httpx.ConnectError:
                    out.write(f"无法连接 {url}。请先在另一个终端运行 ./taxbot run。\n")
                    return 2
                if reply.status_code != 200:
                    out.write(f"（服务器返回 {reply.status_code}：{reply.text[:200]}）\n")
                    continue
                screen.show(reply.json()["replies"])
                if not started:  # from the first answer on, also show what arrives later (a person's replies)
                    waiter.start()
                    started = True
    finally:
        stop.set()
    out.write("再见。\n")
    return 0
