"""Web chat channel (service venv): the chat page at ``/``, the embeddable widget ``/widget.js`` and the WebSocket
``/chat/ws`` with resume, so a flaky mobile connection loses and duplicates nothing.

Protocol (JSON text frames)::

    client → server  {"type": "hello", "session": S | null, "last_seen": N}      first frame, within 10 s
                     {"type": "message", "id": CLIENT_ID, "text": "…"}          CLIENT_ID: [A-Za-z0-9_-]{1,64}
                     {"type": "cancel"}                                          stop waiting for a person
                     {"type": "ping"}
    server → client  {"type": "welcome", "session": S, "max_chars": 2000}
                     {"type": "message", "message": {id, kind, text, buttons, at, author, client_id}}
                     {"type": "ack", "id": CLIENT_ID, "message_id": N}          stored and answered
                     {"type": "typing", "on": true | false}                     the bot is working on an answer
                     {"type": "state", "handoff": {status, position, agent, reference} | null}
                     {"type": "cancelled", "ok": bool}
                     {"type": "pong"}
                     {"type": "error", "code": "…", "message": "…", "id"?: CLIENT_ID, "retry_after"?: seconds}

Every user-visible message of the conversation (the user's own too, so other tabs see it) goes to the client once
per connection, in id order; on reconnect the client says the last id it has and gets what came after. A message
the client re-sends with the same id is stored and answered once (the gateway deduplicates on it); the ack tells the
client it can forget its copy. Live updates come from the desk's bus (agent replies, queue notices, the rating
question after a close, handoff state changes): an event for this conversation makes the connection read what is
new from the database, so the bus carries no message content to the user and internal notes never leave the
gateway's ``history``.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from sqlalchemy import select
from starlette.websockets import WebSocketState

from channels.gateway import Envelope, Gateway
from service.api.chat import MAX_TEXT, SESSION, conversation_of
from service.models import OPEN_STATUSES, ChatMessage, DeskUser, HandoffRequest
from taxlib.text import strip_control

logger = logging.getLogger(__name__)

router = APIRouter(tags=["web chat"])

STATIC = Path(__file__).resolve().parent / "static" / "webchat"
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SESSION_RE = re.compile(SESSION)
MAX_FRAME = 16 * 1024  # characters of one client frame: 2000 characters of text JSON-escaped fit easily
HELLO_TIMEOUT = 10.0
PAGE_SIZE = 200
LATE_COMMIT_SECONDS = 5.0  # a message committed out of id order this much later is still found and sent
WINDOW = 60.0
HOST_RE = re.compile(r"^[A-Za-z0-9.\[\]:-]{1,255}$")
NO_CACHE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

ERRORS = {
    "bad_request": "消息格式不正确",
    "bad_session": "会话标识无效，请刷新页面",
    "empty": "消息不能为空",
    "too_long": f"消息太长了，请控制在{MAX_TEXT}字以内",
    "rate_limited": "发送太频繁了，请稍后再试",
    "unavailable": "服务暂时不可用，正在重试",
}


# ---------------------------------------------------------------------------------------------- pages and assets


def _page_headers(request: Request) -> dict[str, str]:
    host = request.headers.get("host", "")
    sockets = f" ws://{host} wss://{host}" if HOST_RE.match(host) else ""
    # Scripts, styles and the socket from this origin only; the page may be framed by any site (the widget).
    policy = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'none'; frame-ancestors *")
    return NO_CACHE | {"Content-Security-Policy": policy, "Referrer-Policy": "no-referrer"}


@router.get("/", include_in_schema=False)
def chat_page(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=_page_headers(request))


@router.get("/widget.js", include_in_schema=False)
def widget_script() -> FileResponse:
    """One script tag on any site: ``<script src="https://…/widget.js" async></script>``."""
    return FileResponse(STATIC / "widget.js", media_type="text/javascript; charset=utf-8",
                        headers=NO_CACHE | {"Cross-Origin-Resource-Policy": "cross-origin"})


@router.get("/webchat/{name}", include_in_schema=False)
def chat_asset(name: Literal["chat.js", "chat.css"]) -> FileResponse:
    media = "text/javascript; charset=utf-8" if name.endswith(".js") else "text/css; charset=utf-8"
    return FileResponse(STATIC / name, media_type=media, headers=NO_CACHE)


# ---------------------------------------------------------------------------------------------- rate limits


class RateLimiter:
    """Sliding one-minute windows in this process, per browser session and per client address. A message the
    client re-sends with an id already counted is not counted again (a reconnect is not a flood)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._hits: dict[str, collections.deque[float]] = {}
        self._counted: dict[str, collections.OrderedDict[str, float]] = {}

    def allow(self, limits: Iterable[tuple[str, int]], message_id: str | None = None) -> float:
        """0 when the message may go (and it is counted under every key), else the seconds until it may."""
        now = self.clock()
        limits = list(limits)
        first = limits[0][0] if limits else ""
        counted = self._counted.get(first)
        if message_id and counted is not None and message_id in counted and now - counted[message_id] < WINDOW:
            return 0.0
        wait = 0.0
        for key, limit in limits:
            hits = self._window(key, now)
            if len(hits) >= limit:
                wait = max(wait, hits[0] + WINDOW - now)
        if wait > 0:
            return wait
        for key, _limit in limits:
            self._hits.setdefault(key, collections.deque()).append(now)
        if message_id:
            counted = self._counted.setdefault(first, collections.OrderedDict())
            counted[message_id] = now
            while len(counted) > 200:
                counted.popitem(last=False)
        if len(self._hits) > 10_000:
            self._sweep(now)
        return 0.0

    def _window(self, key: str, now: float) -> collections.deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            return collections.deque()
        while hits and hits[0] <= now - WINDOW:
            hits.popleft()
        return hits

    def _sweep(self, now: float) -> None:
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - WINDOW]:
            self._hits.pop(key, None)
            self._counted.pop(key, None)


# Check every window and count the message under every key in one step, on Redis's clock, so replicas cannot both
# let through the message that fills a window. KEYS: the windows, then the key of the counted message id (always
# last; unused when ARGV[2] is "0"). ARGV: window seconds, "1"/"0" (a message id), a unique member, the limits.
_REDIS_ALLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local windows = #KEYS - 1
local counted = KEYS[#KEYS]
if ARGV[2] == '1' and redis.call('EXISTS', counted) == 1 then return '0' end
local wait = 0
for i = 1, windows do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i]) then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then return tostring(wait) end
for i = 1, windows do
  redis.call('ZADD', KEYS[i], now, ARGV[3])
  redis.call('EXPIRE', KEYS[i], math.ceil(window))
end
if ARGV[2] == '1' then redis.call('SET', counted, '1', 'EX', math.ceil(window)) end
return '0'
"""


class RedisRateLimiter:
    """The same limits as ``RateLimiter``, kept in Redis (``TAXBOT_REDIS_URL``), so several service replicas share
    them instead of each allowing the full rate. When Redis cannot be reached the message goes (a limit is
    protection; the chat itself does not depend on Redis) and the failure is logged."""

    def __init__(self, url: str, prefix: str = "taxbot:webchat:rate:") -> None:
        import redis  # imported here: only scale-out deployments need it

        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=2)
        self._allow = self._client.register_script(_REDIS_ALLOW)

    def allow(self, limits: Iterable[tuple[str, int]], message_id: str | None = None) -> float:
        limits = list(limits)
        first = limits[0][0] if limits else ""
        keys = [self.prefix + key for key, _limit in limits]
        keys.append(f"{self.prefix}counted:{first}:{message_id or ''}")
        member = uuid.uuid4().hex
        try:
            wait = self._allow(keys=keys, args=[WINDOW, "1" if message_id else "0", member,
                                                *(limit for _key, limit in limits)])
        except Exception as exc:
            logger.warning("webchat.rate_limit_unavailable %s", type(exc).__name__)
            return 0.0
        return float(wait)


class Hub:
    """What the web chat keeps per app: the rate limiter, one lock per conversation (a conversation's messages
    reach the bot one at a time, in order, whichever of its connections they arrive on), and the tasks still
    answering a message whose connection has gone."""

    def __init__(self, redis_url: str | None = None) -> None:
        self.limiter: RateLimiter | RedisRateLimiter = RedisRateLimiter(redis_url) if redis_url else RateLimiter()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.background: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def conversation_lock(self, conversation_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(conversation_id, (asyncio.Lock(), 0))
        self._locks[conversation_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[conversation_id]
            if users <= 1:
                del self._locks[conversation_id]
            else:
                self._locks[conversation_id] = (lock, users - 1)


def hub_of(app: FastAPI) -> Hub:
    hub = getattr(app.state, "webchat", None)
    if hub is None:
        hub = app.state.webchat = Hub(app.state.settings.redis_url)
    return hub


def rate_limit(app: FastAPI, session: str, address: str, message_id: str | None = None) -> float:
    """Count one message of ``session`` from ``address``: 0 when allowed, else seconds to wait. (For the HTTP
    side too: ``service/api/chat.py`` can call it with the same limits.)"""
    settings = app.state.settings
    return hub_of(app).limiter.allow([(f"session:{session}", settings.webchat_messages_per_minute),
                                      (f"ip:{address}", settings.webchat_ip_messages_per_minute)], message_id)


# ---------------------------------------------------------------------------------------------- reading the store


def _buttons(payload: Any) -> list[dict[str, str]]:
    buttons = payload.get("buttons") if isinstance(payload, dict) else None
    return [{"title": str(b.get("title") or b.get("payload") or ""), "payload": str(b.get("payload") or "")}
            for b in buttons or [] if isinstance(b, dict) and (b.get("title") or b.get("payload"))]


def _for_client(item: dict[str, Any], client_id: str | None, author: str | None) -> dict[str, Any]:
    return {"id": item["id"], "kind": item["kind"], "text": item["text"], "buttons": _buttons(item.get("payload")),
            "at": item["at"], "author": author if item["kind"] == "agent" else None,
            "client_id": client_id if item["kind"] == "user" else None}


def handoff_state(app: FastAPI, conversation_id: str) -> dict[str, Any] | None:
    """The conversation's open handoff as the user may see it, or None when the bot has it."""
    with app.state.sessionmaker() as session:
        case = session.scalar(select(HandoffRequest).where(
            HandoffRequest.conversation_id == conversation_id, HandoffRequest.status.in_(OPEN_STATUSES))
            .order_by(HandoffRequest.id.desc()).limit(1))
        if case is None:
            return None
        return {"status": case.status, "position": case.position if case.status == "queued" else None,
                "agent": case.agent.display_name if case.agent and case.status == "assigned" else None,
                "reference": case.reference}


class Connection:
    """One browser tab's socket after its hello: a reader (this coroutine), a writer (one task, so frames never
    interleave), a pusher (bus events → what is new in the store) and a worker (the tab's messages in order)."""

    def __init__(self, websocket: WebSocket, session: str, last_seen: int) -> None:
        self.websocket = websocket
        self.app: FastAPI = websocket.app
        self.hub = hub_of(self.app)
        self.gateway: Gateway = self.app.state.gateway
        self.session = session
        self.conversation = conversation_of(session)
        self.address = websocket.client.host if websocket.client else "unknown"
        self.outgoing: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.inbox: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        self.queued: set[str] = set()  # client ids received on this socket and not yet answered
        self.sent: set[int] = set()
        self.cursor = last_seen
        self.marks: collections.deque[tuple[float, int]] = collections.deque([(float("-inf"), last_seen)])
        self.state: dict[str, Any] | None = None
        self.state_sent = False
        self.refreshing = asyncio.Lock()
        self.closed = False

    def send(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            self.outgoing.put_nowait(frame)

    def error(self, code: str, **extra: Any) -> None:
        self.send({"type": "error", "code": code, "message": ERRORS[code], **extra})

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        worker = asyncio.create_task(self._work())
        self.hub.background.add(worker)
        worker.add_done_callback(self.hub.background.discard)
        pusher: asyncio.Task[None] | None = None
        try:
            async with self.app.state.bus.subscribe() as events:  # before the replay: nothing falls in between
                self.send({"type": "welcome", "session": self.session, "max_chars": MAX_TEXT})
                await self.refresh()
                pusher = asyncio.create_task(self._push(events))
                await self._read()
        finally:
            self.closed = True
            if pusher is not None:
                pusher.cancel()
            writer.cancel()
            # Messages not started yet are dropped (never acknowledged, the client sends them again); the one
            # being answered is finished, so the bot's answer is stored for the client's next connection.
            while not self.inbox.empty():
                self.inbox.get_nowait()
            self.inbox.put_nowait(None)
            for task in (pusher, writer):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _write(self) -> None:
        while (frame := await self.outgoing.get()) is not None:
            try:
                await self.websocket.send_json(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closed = True
                return

    async def _read(self) -> None:
        while True:
            raw = await _receive_text(self.websocket)
            if raw is None:
                return
            if len(raw) > MAX_FRAME:
                self.error("too_long")
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "message":
                self._on_message(data)  # type: ignore[arg-type]
            elif kind == "cancel":
                try:
                    await self._cancel()
                except Exception as exc:  # the desk's database: the user may press the button again
                    logger.error("webchat.cancel_failed conversation=%s %s", self.conversation, type(exc).__name__,
                                 exc_info=exc)
                    self.error("unavailable")
            elif kind == "ping":
                self.send({"type": "pong"})
            else:
                self.error("bad_request")

    def _on_message(self, data: dict[str, Any]) -> None:
        client_id, text = data.get("id"), data.get("text")
        if not isinstance(client_id, str) or not CLIENT_ID.match(client_id) or not isinstance(text, str):
            self.error("bad_request", **({"id": client_id} if isinstance(client_id, str) and
                                          CLIENT_ID.match(client_id) else {}))
            return
        if client_id in self.queued:
            return  # already on its way
        if len(text) > MAX_TEXT:
            self.error("too_long", id=client_id)
            return
        text = strip_control(text).strip()
        if not text:
            self.error("empty", id=client_id)
            return
        wait = rate_limit(self.app, self.session, self.address, client_id)
        if wait > 0:
            logger.info("webchat.rate_limited conversation=%s", self.conversation)
            self.error("rate_limited", id=client_id, retry_after=max(1, round(wait)))
            return
        self.queued.add(client_id)
        self.inbox.put_nowait((client_id, text))

    async def _work(self) -> None:
        while (item := await self.inbox.get()) is not None:
            client_id, text = item
            try:
                await self._answer(client_id, text)
            except Exception as exc:  # the message is not acknowledged: the client sends it again later
                logger.error("webchat.message_failed conversation=%s %s", self.conversation, type(exc).__name__,
                             exc_info=exc)
                self.error("unavailable", id=client_id)
            finally:
                self.queued.discard(client_id)

    async def _answer(self, client_id: str, text: str) -> None:
        envelope = Envelope(channel="webchat", channel_user_id=self.session, conversation_id=self.conversation,
                            text=text, message_id=client_id)
        async with self.hub.conversation_lock(self.conversation):
            bot_answers = self.state is None  # nobody at the desk owns the conversation
            if bot_answers:
                self.send({"type": "typing", "on": True})
            try:
                await self.gateway.handle(envelope)
                await self.refresh()  # the answer before the typing indicator goes off
            finally:
                if bot_answers:
                    self.send({"type": "typing", "on": False})
        if self.closed:
            return
        stored = await asyncio.to_thread(self._stored_id, client_id)
        self.send({"type": "ack", "id": client_id, "message_id": stored})

    async def _cancel(self) -> None:
        ok = await asyncio.to_thread(self.app.state.desk.cancel_wait, self.conversation)
        if ok:
            self.app.state.hand_back_soon()
        self.send({"type": "cancelled", "ok": ok})
        await self.refresh()

    async def _push(self, events: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            event = await events.get()
            if not self._concerns(event):
                continue
            while not events.empty():  # one read of the store covers everything queued so far
                events.get_nowait()
            await self.refresh()

    def _concerns(self, event: dict[str, Any]) -> bool:
        if event.get("type") == "message":
            return event.get("conversation_id") == self.conversation
        if event.get("type") == "case":
            return (event.get("case") or {}).get("conversation_id") == self.conversation
        return False

    # ------------------------------------------------------------------ what is new in the store

    async def refresh(self) -> None:
        """Send what the client has not had yet, in id order, and the handoff state when it changed."""
        async with self.refreshing:
            if self.closed:
                return
            now = time.monotonic()
            while len(self.marks) > 1 and self.marks[1][0] <= now - LATE_COMMIT_SECONDS:
                self.marks.popleft()
            floor = self.marks[0][1]
            items, state = await asyncio.to_thread(self._read_store, floor)
            for item in items:
                if item["id"] in self.sent:
                    continue
                self.sent.add(item["id"])
                self.cursor = max(self.cursor, item["id"])
                self.send({"type": "message", "message": item})
            if self.cursor != self.marks[-1][1]:
                self.marks.append((now, self.cursor))
            self.sent = {i for i in self.sent if i > floor}
            if state != self.state or not self.state_sent:
                self.state, self.state_sent = state, True
                self.send({"type": "state", "handoff": state})

    def _read_store(self, after: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.gateway.history(self.conversation, after, PAGE_SIZE)
            found += page
            if len(page) < PAGE_SIZE:
                break
            after = page[-1]["id"]
        extra: dict[int, tuple[str | None, str | None]] = {}
        wanted = [m["id"] for m in found if m["kind"] in ("user", "agent")]
        if wanted:
            with self.app.state.sessionmaker() as session:
                rows = session.execute(select(ChatMessage.id, ChatMessage.client_id, DeskUser.display_name)
                                       .outerjoin(DeskUser, DeskUser.id == ChatMessage.author_id)
                                       .where(ChatMessage.id.in_(wanted))).all()
            extra = {row[0]: (row[1], row[2]) for row in rows}
        items = [_for_client(m, *extra.get(m["id"], (None, None))) for m in found]
        return items, handoff_state(self.app, self.conversation)

    def _stored_id(self, client_id: str) -> int | None:
        with self.app.state.sessionmaker() as session:
            return session.scalar(select(ChatMessage.id).where(ChatMessage.conversation_id == self.conversation,
                                                               ChatMessage.client_id == client_id))


async def _receive_text(websocket: WebSocket) -> str | None:
    """The next text frame (a binary one counts as an empty, hence bad, text); None once the client has gone."""
    try:
        message = await websocket.receive()
    except (WebSocketDisconnect, RuntimeError):
        return None
    if message["type"] == "websocket.disconnect":
        return None
    if message.get("text") is not None:
        return message["text"]
    return ""


async def _hello(websocket: WebSocket) -> tuple[str, int] | None:
    try:
        raw = await asyncio.wait_for(_receive_text(websocket), HELLO_TIMEOUT)
    except TimeoutError:
        raw = ""
    if raw is None:
        return None
    try:
        data = json.loads(raw) if len(raw) <= MAX_FRAME else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("type") != "hello":
        code = "bad_request"
    else:
        session = data.get("session") or secrets.token_urlsafe(24)  # a new visitor: 32 characters
        last_seen = data.get("last_seen") or 0
        if isinstance(session, str) and SESSION_RE.match(session) and isinstance(last_seen, int) \
                and not isinstance(last_seen, bool) and last_seen >= 0:
            return session, last_seen
        code = "bad_session"
    await websocket.send_json({"type": "error", "code": code, "message": ERRORS[code]})
    await websocket.close(code=4400, reason=code)
    return None


@router.websocket("/chat/ws")
async def chat_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    hello = await _hello(websocket)
    if hello is None:
        return
    session, last_seen = hello
    logger.info("webchat.connected conversation=%s last_seen=%s", conversation_of(session), last_seen)
    await Connection(websocket, session, last_seen).run()
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()
