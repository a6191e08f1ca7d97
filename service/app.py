"""Application factory: ``uvicorn --factory service.app:create_app``."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import __version__
from service.api import api_v1, system
from service.db import make_engine, make_sessionmaker, migrate
from service.errors import ServiceError
from service.knowledge import KnowledgeBase
from service.models import Taxpayer
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
        return _error(exc.status_code, exc.code, exc.message, **exc.extra)

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

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(kb.refresh)
        watcher = asyncio.create_task(kb.watch(settings.kb_reload_seconds))
        yield
        watcher.cancel()
        engine.dispose()

    app = FastAPI(title="taxbot-service", version=__version__, lifespan=lifespan)
    app.state.settings, app.state.engine, app.state.sessionmaker = settings, engine, sessions
    app.state.sms_sender = make_sms_sender(settings)
    app.state.kb = kb
    app.add_middleware(RequestGuard)
    _install_error_handlers(app)
    app.include_router(system.router)
    app.include_router(api_v1)
    logger.info("app.ready version=%s sms_sender=%s", __version__, settings.sms_sender)
    return app
