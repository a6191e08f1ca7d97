"""The agent console: its page, its JSON API (cookie session, role-checked) and its WebSocket of live events.

Roles: agents handle the conversations routed to them; supervisors also see every queue and agent, monitor,
transfer, take over and blacklist; editors search the knowledge base; admins manage desk users.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import delete, select

from service.api.deps import SessionDep
from service.desk import auth
from service.desk.core import Desk, agent_summary, case_summary
from service.errors import ServiceError, TooManyRequests
from service.desk.hours import BusinessHours
from service.models import DISPOSITIONS, DeskSession, DeskUser, FollowUp, SkillGroup
from taxlib.text import strip_control

logger = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent.parent / "desk" / "static"
router = APIRouter(prefix="/desk", tags=["desk"])

LOGIN_FAILURES_ALLOWED = 5
_LOGIN_LOCK = threading.Lock()
LOGIN_LOCK_SECONDS = 300.0
CANNED = (
    "您好，我是12366在线客服，请问有什么可以帮您？",
    "请稍等，我帮您查询一下。",
    "为核实身份，请提供纳税人识别号（或身份证号）后四位和预留手机号后四位。",
    "这个问题需要到主管税务机关办理，建议您携带有效证件前往办税服务厅。",
    "您反映的情况已记录，我们会在3个工作日内给您回复。",
    "请问还有其他问题吗？如没有，我将结束本次会话。",
    "感谢您的咨询，祝您生活愉快！",
)


class LoginRequired(ServiceError):
    status_code, code, message = 401, "login_required", "请先登录"


class Forbidden(ServiceError):
    status_code, code, message = 403, "forbidden", "您的角色无权进行此操作"


class NotFound(ServiceError):
    status_code, code, message = 404, "not_found", "不存在"


class Exists(ServiceError):
    status_code, code, message = 409, "exists", "已存在"


class WrongLogin(ServiceError):
    status_code, code, message = 401, "wrong_login", "用户名或密码不正确"


def get_desk(request: Request) -> Desk:
    return request.app.state.desk


DeskDep = Annotated[Desk, Depends(get_desk)]


def current_user(request: Request, session: SessionDep) -> DeskUser:
    same_site_only(request)
    user = auth.session_user(session, request.cookies.get(auth.COOKIE))
    if user is None:
        raise LoginRequired
    return user


def role(*roles: str) -> Callable[..., DeskUser]:
    def check(user: Annotated[DeskUser, Depends(current_user)]) -> DeskUser:
        if user.role not in roles:
            raise Forbidden
        return user
    return check


Anyone = Annotated[DeskUser, Depends(current_user)]
Handler = Annotated[DeskUser, Depends(role(*auth.CAN_HANDLE_CHATS))]
Supervisor = Annotated[DeskUser, Depends(role(*auth.CAN_SUPERVISE))]
Admin = Annotated[DeskUser, Depends(role(*auth.CAN_ADMINISTER))]
KnowledgeUser = Annotated[DeskUser, Depends(role(*auth.CAN_HANDLE_CHATS, *auth.CAN_EDIT_KNOWLEDGE))]


# ---------------------------------------------------------------- page

@router.get("", include_in_schema=False)
def console_page() -> FileResponse:
    return FileResponse(STATIC / "console.html", headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}", include_in_schema=False)
def console_asset(name: Literal["console.js", "console.css"]) -> FileResponse:
    return FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------- login

class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)


@router.post("/api/login")
def login(body: LoginIn, request: Request, response: Response, session: SessionDep) -> dict[str, Any]:
    same_site_only(request)
    failures: dict[str, tuple[int, float]] = request.app.state.login_failures  # per username, this replica
    with _LOGIN_LOCK:  # the attempt is counted before the password is checked: parallel guesses count too
        now = time.monotonic()
        count, since = failures.get(body.username, (0, now))
        if now - since >= LOGIN_LOCK_SECONDS:
            count, since = 0, now
        if count >= LOGIN_FAILURES_ALLOWED:
            raise TooManyRequests(message="登录失败次数过多，请5分钟后再试")
        if len(failures) > 10_000:  # names anyone tried: forget the stale ones
            for name in [n for n, (_, t) in failures.items() if now - t >= LOGIN_LOCK_SECONDS]:
                failures.pop(name, None)
        failures[body.username] = (count + 1, since)
    user = auth.authenticate(session, body.username, body.password)
    if user is None:
        logger.info("desk.login_failed")
        raise WrongLogin
    with _LOGIN_LOCK:
        settings = request.app.state.settings
    token = auth.open_session(session, user, settings.desk_session_hours)
    response.set_cookie(auth.COOKIE, token, httponly=True, samesite="strict", secure=settings.desk_cookie_secure,
                        max_age=int(settings.desk_session_hours * 3600), path="/desk")
    logger.info("desk.login user=%s role=%s", user.username, user.role)
    return agent_summary(user)


@router.post("/api/logout")
def logout(request: Request, response: Response, session: SessionDep, desk: DeskDep) -> dict[str, str]:
    same_site_only(request)
    user = auth.session_user(session, request.cookies.get(auth.COOKIE))
    if user is not None and user.role in auth.CAN_HANDLE_CHATS:
        desk.set_state(user.id, "offline")
    auth.close_session(session, request.cookies.get(auth.COOKIE))
    response.delete_cookie(auth.COOKIE, path="/desk")
    return {"status": "ok"}


@router.get("/api/me")
def me(user: Anyone) -> dict[str, Any]:
    return agent_summary(user)


class StateIn(BaseModel):
    state: Literal["online", "away", "offline"]


@router.post("/api/state")
async def set_state(body: StateIn, user: Handler, desk: DeskDep) -> dict[str, Any]:
    return agent_summary(await asyncio.to_thread(desk.set_state, user.id, body.state))


# ---------------------------------------------------------------- conversations

@router.get("/api/cases")
def list_cases(user: Handler, desk: DeskDep, closed: bool = False) -> dict[str, Any]:
    return {"items": [case_summary(c) for c in desk.cases_for(user, include_closed=closed)]}


@router.get("/api/cases/{case_id}")
def get_case(case_id: int, user: Handler, desk: DeskDep) -> dict[str, Any]:
    return desk.history(desk.get_case(user, case_id))


@router.post("/api/cases/{case_id}/accept")
async def accept(case_id: int, user: Handler, desk: DeskDep) -> dict[str, Any]:
    return case_summary(await asyncio.to_thread(desk.accept, user, case_id))


class MessageIn(BaseModel):
    text: str = Field(min_length=1, max_length=2000)
    note: bool = False


@router.post("/api/cases/{case_id}/messages", status_code=201)
async def send_message(case_id: int, body: MessageIn, user: Handler, desk: DeskDep) -> dict[str, Any]:
    text = strip_control(body.text).strip()
    if not text:
        raise ServiceError(message="消息不能为空")
    return await asyncio.to_thread(desk.send, user, case_id, text, body.note)


class TransferIn(BaseModel):
    agent_id: int | None = None
    group: str | None = Field(default=None, max_length=32)
    note: str | None = Field(default=None, max_length=200)


@router.post("/api/cases/{case_id}/transfer")
async def transfer(case_id: int, body: TransferIn, user: Handler, desk: DeskDep) -> dict[str, Any]:
    case = await asyncio.to_thread(desk.transfer, user, case_id, to_agent=body.agent_id, to_group=body.group,
                                   note=body.note)
    return case_summary(case)


@router.post("/api/cases/{case_id}/takeover")
async def take_over(case_id: int, user: Supervisor, desk: DeskDep) -> dict[str, Any]:
    return case_summary(await asyncio.to_thread(desk.take_over, user, case_id))


class CloseIn(BaseModel):
    disposition: Literal[*DISPOSITIONS]  # type: ignore[valid-type]


@router.post("/api/cases/{case_id}/close")
async def close(case_id: int, body: CloseIn, request: Request, user: Handler, desk: DeskDep) -> dict[str, Any]:
    case = await asyncio.to_thread(desk.close, user, case_id, body.disposition)
    request.app.state.hand_back_soon()
    return case_summary(case)


class BlacklistIn(BaseModel):
    duration: Literal["5m", "30m", "permanent"]
    reason: str | None = Field(default=None, max_length=200)


@router.post("/api/cases/{case_id}/blacklist", status_code=201)
def blacklist(case_id: int, body: BlacklistIn, user: Supervisor, desk: DeskDep) -> dict[str, Any]:
    entry = desk.blacklist(user, case_id, body.duration, body.reason)
    return {"id": entry.id, "expires_at": entry.expires_at.isoformat() if entry.expires_at else None}


@router.get("/api/overview")
def overview(user: Supervisor, desk: DeskDep) -> dict[str, Any]:
    return desk.overview()


@router.get("/api/agents")
def transfer_targets(user: Handler, desk: DeskDep) -> dict[str, Any]:
    """Who a conversation can be transferred to: agents on duty and every group."""
    view = desk.overview()
    return {"agents": [a for a in view["agents"] if a["state"] in ("online", "busy") and a["id"] != user.id],
            "groups": [{"code": g["code"], "name": g["name"]} for g in view["groups"]]}


@router.get("/api/follow-ups")
def follow_ups(user: Supervisor, session: SessionDep) -> dict[str, Any]:
    rows = session.scalars(select(FollowUp).where(FollowUp.status == "open").order_by(FollowUp.id).limit(200))
    return {"items": [{"reference": f.reference, "channel": f.channel, "message": f.message,
                       "contact_phone": f.contact_phone, "created_at": f.created_at.isoformat()} for f in rows]}


@router.get("/api/canned")
def canned(user: Handler) -> dict[str, Any]:
    return {"items": list(CANNED)}


@router.get("/api/kb")
def knowledge_search(request: Request, user: KnowledgeUser,
                     q: Annotated[str, Query(min_length=1, max_length=200)]) -> dict[str, Any]:
    """Agent assist: the same retrieval the bot uses."""
    from service.api.knowledge import search_hits

    return {"items": search_hits(request.app.state.kb, q, 5)}


# ---------------------------------------------------------------- users (admin)

class UserIn(BaseModel):
    username: str = Field(pattern=r"^[A-Za-z0-9_.-]{2,64}$")
    display_name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=200)
    role: Literal["agent", "supervisor", "editor", "admin"]
    groups: list[str] = Field(default_factory=list, max_length=10)
    max_chats: int = Field(default=3, ge=1, le=20)


@router.post("/api/users", status_code=201)
def create_user(body: UserIn, user: Admin, session: SessionDep) -> dict[str, Any]:
    try:
        created = auth.create_user(session, body.username, body.password, body.role, body.display_name,
                                   body.groups, body.max_chats)
    except ValueError as exc:
        raise ServiceError(message=str(exc)) from exc
    logger.info("desk.user_created user=%s role=%s by=%s", created.username, created.role, user.username)
    return agent_summary(created)


@router.get("/api/users")
def list_users(user: Admin, session: SessionDep) -> dict[str, Any]:
    return {"items": [agent_summary(u) | {"disabled": u.disabled}
                      for u in session.scalars(select(DeskUser).order_by(DeskUser.id))]}


class UserChange(BaseModel):
    display_name: str | None = Field(default=None, min_length=1, max_length=64)
    password: str | None = Field(default=None, min_length=1, max_length=200)
    role: Literal["agent", "supervisor", "editor", "admin"] | None = None
    groups: list[str] | None = Field(default=None, max_length=10)
    max_chats: int | None = Field(default=None, ge=1, le=20)
    disabled: bool | None = None


@router.patch("/api/users/{user_id}")
def change_user(user_id: int, body: UserChange, user: Admin, session: SessionDep, desk: DeskDep) -> dict[str, Any]:
    target = session.get(DeskUser, user_id)
    if target is None:
        raise NotFound(message="用户不存在")
    if body.password is not None:
        problem = auth.password_problem(body.password)
        if problem:
            raise ServiceError(message=problem)
        target.password_hash = auth.hash_password(body.password)
        session.execute(delete(DeskSession).where(DeskSession.user_id == user_id))  # log out everywhere
    if body.groups is not None:
        found = list(session.scalars(select(SkillGroup).where(SkillGroup.code.in_(body.groups))))
        missing = set(body.groups) - {g.code for g in found}
        if missing:
            raise ServiceError(message=f"没有这些技能组：{', '.join(sorted(missing))}")
        target.groups = found
    for field in ("display_name", "role", "max_chats", "disabled"):
        value = getattr(body, field)
        if value is not None:
            setattr(target, field, value if field != "display_name" else value.strip())
    if body.disabled:
        session.execute(delete(DeskSession).where(DeskSession.user_id == user_id))
    session.commit()
    if body.disabled and target.role in auth.CAN_HANDLE_CHATS:
        desk.set_state(user_id, "offline")  # no more offers; wait estimates stop counting them
    logger.info("desk.user_changed user=%s by=%s fields=%s", target.username, user.username,
                ",".join(sorted(body.model_dump(exclude_none=True, exclude={"password"}))) +
                (",password" if body.password else ""))
    return agent_summary(target) | {"disabled": target.disabled}


# ---------------------------------------------------------------- skill groups (admin)

class GroupIn(BaseModel):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    name: str = Field(min_length=1, max_length=64)
    strategy: Literal["round_robin", "least_busy", "longest_idle"] = "least_busy"
    hours: str | None = Field(default=None, max_length=200, description="None: the desk's business hours")


class GroupChange(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    strategy: Literal["round_robin", "least_busy", "longest_idle"] | None = None
    hours: str | None = Field(default=None, max_length=200, description="empty string: the desk's business hours")


def _group_out(group: SkillGroup) -> dict[str, Any]:
    return {"code": group.code, "name": group.name, "strategy": group.strategy, "hours": group.hours}


def _readable_hours(hours: str | None) -> str | None:
    if not hours:
        return None
    try:
        BusinessHours.parse(hours)
    except ValueError as exc:
        raise ServiceError(message=f"服务时间格式不正确：{exc}") from exc
    return hours


@router.get("/api/groups")
def list_groups(user: Anyone, session: SessionDep) -> dict[str, Any]:
    return {"items": [_group_out(g) for g in session.scalars(select(SkillGroup).order_by(SkillGroup.id))]}


@router.post("/api/groups", status_code=201)
def create_group(body: GroupIn, user: Admin, session: SessionDep) -> dict[str, Any]:
    if session.scalar(select(SkillGroup.id).where(SkillGroup.code == body.code)) is not None:
        raise Exists(message=f"技能组 {body.code} 已存在")
    group = SkillGroup(code=body.code, name=body.name, strategy=body.strategy, hours=_readable_hours(body.hours))
    session.add(group)
    session.commit()
    return _group_out(group)


@router.patch("/api/groups/{code}")
def change_group(code: str, body: GroupChange, user: Admin, session: SessionDep) -> dict[str, Any]:
    group = session.scalar(select(SkillGroup).where(SkillGroup.code == code))
    if group is None:
        raise NotFound(message="技能组不存在")
    if body.name is not None:
        group.name = body.name
    if body.strategy is not None:
        group.strategy = body.strategy
    if body.hours is not None:
        group.hours = _readable_hours(body.hours)
    session.commit()
    logger.info("desk.group_changed group=%s by=%s", code, user.username)
    return _group_out(group)


# ---------------------------------------------------------------- live events

GONE_FIELDS = ("id", "status", "agent_id", "offered_to", "group_id", "group")  # what a "no longer yours" event keeps


def _for(user: DeskUser, groups: set[int], listed: set[int], event: dict[str, Any]) -> dict[str, Any] | None:
    """The event as this console may see it, or None. An agent gets the cases routed to them (waiting in one of
    their groups, offered to them, or theirs) and the messages of their own conversations; a case that leaves
    their view arrives once more with its ids and status only, so the console can drop it."""
    if user.role == "supervisor":
        return event
    kind = event.get("type")
    if kind == "agent":
        return event if event["agent"]["id"] == user.id else None
    if kind == "case":
        case = event["case"]
        visible = case["agent_id"] == user.id or case["offered_to"] == user.id or \
            (case["status"] == "queued" and case["group_id"] in groups)
        if visible:
            listed.add(case["id"])
            return event
        if case["id"] in listed:
            listed.discard(case["id"])
            return {"type": "case", "case": {k: case.get(k) for k in GONE_FIELDS}}
        return None
    if kind == "message":
        return event if event.get("agent_id") == user.id else None
    return None


def _same_site(headers: Any, host: str | None) -> bool:
    """A browser request from our own pages: Origin (when sent) names this host, and Sec-Fetch-Site (when sent)
    is not cross-site. Requests without either come from tools, not from another site's page."""
    origin = headers.get("origin")
    if origin and (origin == "null" or origin.split("://", 1)[-1] != host):
        return False
    return headers.get("sec-fetch-site") in (None, "same-origin", "none")


def same_site_only(request: Request) -> None:
    """Cookie-authenticated changes must come from the console itself (a defence against cross-site requests
    beyond the SameSite cookie: other ports on this host and sibling subdomains count as same-site)."""
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and not _same_site(request.headers,
                                                                              request.headers.get("host")):
        raise Forbidden(message="请求来源不被允许")


SESSION_RECHECK_SECONDS = 15.0


@router.websocket("/ws")
async def events(websocket: WebSocket) -> None:
    app = websocket.app
    with app.state.sessionmaker() as session:
        user = auth.session_user(session, websocket.cookies.get(auth.COOKIE))
    await websocket.accept()  # closing before accepting would reach the browser as a bare handshake failure
    if user is None or not _same_site(websocket.headers, websocket.headers.get("host")):
        await websocket.close(code=4401 if user is None else 4403, reason="login required" if user is None else "origin")
        return
    desk: Desk = app.state.desk
    groups = {g.id for g in user.groups}
    async with app.state.bus.subscribe() as queue:
        cases = await asyncio.to_thread(desk.cases_for, user) if user.role in auth.CAN_HANDLE_CHATS else []
        listed = {c.id for c in cases}
        await websocket.send_json({"type": "hello", "me": agent_summary(user),
                                   "cases": [case_summary(c) for c in cases]})
        reader = asyncio.create_task(_drain(websocket))
        checked = time.monotonic()
        try:
            while not reader.done():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, reader}, timeout=SESSION_RECHECK_SECONDS,
                                             return_when=asyncio.FIRST_COMPLETED)
                if time.monotonic() - checked >= SESSION_RECHECK_SECONDS:  # logged out, expired or disabled?
                    checked = time.monotonic()
                    if not await asyncio.to_thread(_still_valid, app, websocket.cookies.get(auth.COOKIE)):
                        getter.cancel()
                        await websocket.close(code=4401, reason="login required")
                        break
                if getter not in done:
                    getter.cancel()
                    if reader.done():
                        break
                    continue
                shown = _for(user, groups, listed, getter.result())
                if shown is not None:
                    await websocket.send_json(shown)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


def _still_valid(app: Any, token: str | None) -> bool:
    with app.state.sessionmaker() as session:
        return auth.session_user(session, token) is not None


async def _drain(websocket: WebSocket) -> None:
    """Read (and ignore) what the console sends, so a closed socket is noticed at once."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()

