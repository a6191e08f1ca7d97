"""Application factory: ``uvicorn --factory service.app:create_app``."""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__
from channels import webchat, wechat
from channels.gateway import Gateway
from channels.outbox import Outbox
from service.api import api_v1, chat, desk as desk_api, system
from service.db import make_engine, make_sessionmaker, migrate
from service.desk import auth
from service.desk.bot import BotClient, BotUnavailable
from service.desk.bus import Bus, make_bus
from service.desk.core import Desk
from service.desk.hours import BusinessHours
from service.errors import ServiceError
from service.knowledge import KnowledgeBase
from service.models import DeskUser, Taxpayer
from service.records import import_records
from service.settings import Settings, get_settings
from service.sms import make_sms_sender
from taxlib.privacy import install_log_masking

logger = logging.getLogger(__name__)

DEMO_DATA = Path(__file__).parent / "demo_data"
MAX_BODY_BYTES = 64 * 1024
_HTTP_CODES = {400: ("invalid_request", "请求格式不正确"), 404: ("not_found", "接口不存在"), 405: ("method_not_allowed", "不支持该请求方法")}


def _error(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": code, "message": message, **extra}, status_code=status)


_TOO_LARGE = _error(413, "payload_too_large", "请求内容过大")  # responses are stateless ASGI apps: built once
_NUL = _error(422, "invalid_request", "请求包含非法字符")


class RequestGuard:
    """Refuses, before any handler runs, bodies over ``limit`` bytes (413, declared or streamed) and NUL
    characters in the URL or a JSON body (422): PostgreSQL cannot store them, so they would end in a 500."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if b"%00" in (scope.get("raw_path") or b"") + scope["query_string"] or "\x00" in scope["path"]:
            return await _NUL(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await _TOO_LARGE(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.limit:
                return await _TOO_LARGE(scope, receive, send)
        body = b"".join(chunks)
        if b"\\u0000" in body:
            return await _NUL(scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        extra = dict(exc.extra)
        message = extra.pop("message", exc.message)  # a raise site may say more precisely what went wrong
        return _error(exc.status_code, exc.code, message, **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # loc and msg only: the rejected input may hold an ID number.
        details = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return _error(422, "invalid_request", "请求格式不正确", details=details)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        code, message = _HTTP_CODES.get(exc.status_code, ("http_error", "请求无法处理"))
        return _error(exc.status_code, code, message)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> JSONResponse:
        logger.error("request.unhandled %s", type(exc).__name__, exc_info=exc)
        return _error(500, "internal_error", "服务暂时不可用，请稍后再试")


async def _every(seconds: float, work: Callable[[], object]) -> None:
    """Run ``work`` in a worker thread every ``seconds``; a failure is logged and the next round runs."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await asyncio.to_thread(work)
        except Exception as exc:
            logger.error("timer.failed %s: %s", getattr(work, "__name__", work), type(exc).__name__, exc_info=exc)


async def _wake_on_messages(bus: Bus, outbox: Outbox) -> None:
    """A new message may be one to deliver through a channel's API: look at once rather than at the next round."""
    async with bus.subscribe() as queue:
        while True:
            if (await queue.get()).get("type") == "message":
                outbox.wake()


class HandBack:
    """Gives conversations people have finished back to the bot (resume, then ask for a rating), at once after
    a close and again every round until the bot has answered: nothing closed is left paused."""

    def __init__(self, desk: Desk, bot: BotClient) -> None:
        self.desk, self.bot = desk, bot
        self._wake = asyncio.Event()
        self._retry_at: dict[int, tuple[float, float]] = {}  # case id -> (next attempt, current backoff)

    def wake(self) -> None:
        self._wake.set()

    async def run(self, seconds: float) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), seconds)
            self._wake.clear()
            try:
                await self.once()
            except Exception as exc:
                logger.error("hand_back.failed %s", type(exc).__name__, exc_info=exc)

    async def once(self) -> int:
        done = 0
        now = time.monotonic()
        for case_id, conversation_id, ask_rating in await asyncio.to_thread(self.desk.pending_resumes):
            if self._retry_at.get(case_id, (0.0, 0.0))[0] > now:
                continue
            if not await asyncio.to_thread(self.desk.claim_resume, case_id):
                continue  # another replica has it
            try:
                messages = await self.bot.resume(conversation_id, ask_rating)
            except BotUnavailable as exc:
                await asyncio.to_thread(self.desk.release_resume, case_id)
                backoff = min(60.0, self._retry_at.get(case_id, (0.0, 1.0))[1] * 2)
                self._retry_at[case_id] = (now + backoff, backoff)
                logger.warning("hand_back.bot_unavailable case=%s retry_in=%.0fs error=%s", case_id, backoff, exc)
                continue
            self._retry_at.pop(case_id, None)
            await asyncio.to_thread(self.desk.resumed, case_id, messages, ask_rating)
            done += 1
        return done


DEMO_DESK_USERS = (
    ("admin", "管理员", "admin", ()),
    ("banzhang", "王班长", "supervisor", ("consult", "invoice", "complaint", "vip")),
    ("zuoxi1", "李坐席", "agent", ("consult", "invoice")),
    ("zuoxi2", "陈坐席", "agent", ("consult", "complaint", "vip")),
    ("bianji", "赵编辑", "editor", ()),
)


def _seed_demo_desk_users(sessions: Callable[[], object], password: str) -> None:
    with sessions() as session:  # type: ignore[attr-defined]
        if session.scalar(select(DeskUser.id).limit(1)) is not None:
            return
        for username, name, role, groups in DEMO_DESK_USERS:
            auth.create_user(session, username, password, role, name, groups)
        logger.info("app.demo_desk_users %s", ", ".join(u for u, *_ in DEMO_DESK_USERS))


def create_app(settings: Settings | None = None) -> FastAPI:
    install_log_masking()
    settings = settings or get_settings()
    assert settings.database_url is not None  # filled in by Settings
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        if settings.seed_demo_data and session.scalar(select(Taxpayer.id).limit(1)) is None:
            logger.info("app.seeding_demo_data %s", import_records(session, DEMO_DATA))
    if settings.otp_fixed_code:
        logger.warning("app.otp_fixed_code_in_use: every verification code is the configured fixed code (demo only)")

    assert settings.kb_index_dir is not None  # filled in by Settings
    kb = KnowledgeBase(settings.kb_index_dir, settings.kb_encoder, settings.kb_threads, settings.kb_serve_unreviewed)

    bus = make_bus(settings.redis_url)
    desk = Desk(sessions, bus, BusinessHours.parse(settings.desk_hours, settings.desk_holidays),
                offer_seconds=settings.desk_offer_seconds, queue_timeout_seconds=settings.desk_queue_timeout_seconds,
                first_contact_hours=settings.desk_first_contact_hours,
                default_handle_seconds=settings.desk_handle_seconds)
    desk.ensure_groups()
    if settings.desk_demo_password:
        _seed_demo_desk_users(sessions, settings.desk_demo_password.get_secret_value())
    bot = BotClient(settings.rasa_url, settings.rasa_token.get_secret_value() if settings.rasa_token else None)
    hand_back = HandBack(desk, bot)
    outbox = Outbox(sessions, settings.delivery_max_attempts)
    wechat_sender = wechat.make_sender(settings)
    if wechat_sender is not None:
        outbox.register("wechat", wechat_sender)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await bus.start()
        await asyncio.to_thread(kb.refresh)
        # What is loaded by now (models, the index, jieba's dictionary: a few hundred thousand objects) lives as
        # long as the process: out of the collector's sight, a full collection no longer walks it. Measured before:
        # one full collection over 212,000 objects took 107 ms and held up fifty WeChat acknowledgements at once.
        gc.collect()
        gc.freeze()
        tasks = [asyncio.create_task(kb.watch(settings.kb_reload_seconds)),
                 asyncio.create_task(_every(settings.desk_tick_seconds, desk.tick)),
                 asyncio.create_task(hand_back.run(settings.desk_tick_seconds)),
                 asyncio.create_task(outbox.run(settings.desk_tick_seconds)),
                 asyncio.create_task(_wake_on_messages(bus, outbox))]
        yield
        for task in tasks:
            task.cancel()
        await asyncio.to_thread(_app.state.gateway.close)  # what was accepted is stored before the engine goes
        await bus.stop()
        engine.dispose()

    app = FastAPI(title="taxbot-service", version=__version__, lifespan=lifespan)
    app.state.settings, app.state.engine, app.state.sessionmaker = settings, engine, sessions
    app.state.sms_sender = make_sms_sender(settings)
    app.state.kb = kb
    app.state.bus, app.state.desk, app.state.bot = bus, desk, bot
    app.state.gateway = Gateway(sessions, desk, bot, bus)
    app.state.outbox = outbox
    app.state.wechat_api = getattr(wechat_sender, "api", None)  # also downloads voice messages' audio
    app.state.speech = None  # the speech recogniser, built when the first voice message needs it
    app.state.hand_back, app.state.hand_back_soon = hand_back, hand_back.wake
    app.state.login_failures = {}
    app.add_middleware(RequestGuard)
    _install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(api_v1)
    app.include_router(desk_api.router)
    app.include_router(chat.router)
    app.include_router(webchat.router)
    app.include_router(wechat.router)
    logger.info("app.ready version=%s sms_sender=%s", __version__, settings.sms_sender)
    return app
