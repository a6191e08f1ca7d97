"""``taxbot chat``: talk to the running assistant in the terminal through the REST channel."""
from __future__ import annotations

import sys
import uuid
from typing import Any, TextIO

import httpx

from cli.config import RuntimeConfig


def render(messages: list[dict[str, Any]], out: TextIO) -> list[str]:
    """Print the bot's messages; return the payloads of its buttons, numbered from 1."""
    payloads: list[str] = []
    for message in messages:
        if message.get("text"):
            out.write(f"助手：{message['text']}\n")
        for button in message.get("buttons") or []:
            payloads.append(button.get("payload") or button.get("title", ""))
            out.write(f"      [{len(payloads)}] {button.get('title', '')}\n")
    out.flush()
    return payloads


def chat(config: RuntimeConfig, sender: str | None = None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    sender = sender or f"cli-{uuid.uuid4().hex[:12]}"
    url = config.rest_webhook_url
    interactive = stdin.isatty()
    out.write(f"已连接 {url}（会话 {sender}）。输入消息后回车；输入按钮编号可点按钮；Ctrl-D 或 /exit 退出。\n")
    payloads: list[str] = []
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
            if text.isdigit() and 1 <= int(text) <= len(payloads):
                text = payloads[int(text) - 1]
            try:
                reply = client.post(url, json={"sender": sender, "message": text})
            except httpx.ConnectError:
                out.write(f"无法连接 {url}。请先在另一个终端运行 ./taxbot run。\n")
                return 2
            if reply.status_code != 200:
                out.write(f"（服务器返回 {reply.status_code}：{reply.text[:200]}）\n")
                continue
            payloads = render(reply.json(), out)
    out.write("再见。\n")
    return 0
