"""The desk's rules: which queue a handoff joins, who gets it, accept, transfer, take-over, close, abandon, the
message-taking flow outside business hours, and the satisfaction rating afterwards.

Every method is one short database transaction and publishes what changed on the bus after it commits. The
invariants that matter under concurrency (across threads and replicas) are kept by conditional UPDATEs, not by
locks in this process: a case is accepted by ``UPDATE … WHERE status='queued'`` (exactly one of two agents gets
it), and an agent's capacity by ``UPDATE … SET active_chats = active_chats + 1 WHERE active_chats < max_chats``.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.desk.bus import Bus
from service.desk.hours import BusinessHours
from service.errors import ServiceError
from service.models import (
    CHINA_TZ, DISPOSITIONS, OPEN_STATUSES, AgentSkill, BlacklistEntry, ChatMessage, DeskUser, FollowUp,
    HandoffRequest, SkillGroup, Taxpayer, Ticket, reference, utcnow,
)
from taxlib.identifiers import PHONE_PATTERN, normalize_phone

logger = logging.getLogger(__name__)

DEFAULT_GROUPS = (("consult", "咨询", "least_busy"), ("invoice", "发票", "least_busy"),
                  ("complaint", "投诉举报", "longest_idle"), ("vip", "VIP", "round_robin"))
VIP_PRIORITY = 10
CANCEL_WORDS = re.compile(r"^(取消(排队|转人工)?|不(用)?等了|算了(吧|不等了)?|不需要(人工)?了|退出排队)[。！!.]*$")
RATINGS = {"1": 1, "2": 2, "3": 3, "0": 0, "１": 1, "２": 2, "３": 3, "０": 0,
           "满意": 1, "非常满意": 1, "一般": 2, "不满意": 3, "很不满意": 3, "投诉": 0}
RATING_WINDOW = timedelta(minutes=30)
BLACKLIST_DURATIONS = {"5m": timedelta(minutes=5), "30m": timedelta(minutes=30), "permanent": None}


class DeskError(ServiceError):
    status_code, code, message = 409, "conflict", "操作冲突"


class CaseNotFound(ServiceError):
    status_code, code, message = 404, "case_not_found", "会话不存在，或您无权查看"


class AlreadyTaken(DeskError):
    code, message = "already_taken", "该会话已被其他坐席接入"


class AtCapacity(DeskError):
    code, message = "at_capacity", "已达到同时接待上限，请先结束一个会话"


class NotOwner(DeskError):
    status_code, code, message = 403, "not_owner", "该会话不属于您"


class NotAvailable(DeskError):
    code, message = "not_available", "请先把状态设为“在线”"


class BadTarget(DeskError):
    status_code, code, message = 422, "bad_target", "转接目标不存在或不可用"


class InvalidChoice(ServiceError):
    status_code, code, message = 422, "invalid_choice", "选项不正确"


@dataclass
class Inbound:
    """What the desk did with a user's message: ``routed`` is agent, queue, follow_up, rating, abandoned or bot
    (not the desk's: the bot should answer it); ``forward`` is what to send the bot instead of the text."""

    routed: str
    replies: list[str] = field(default_factory=list)
    forward: str | None = None
    case_id: int | None = None


@dataclass
class Opened:
    case: HandoffRequest
    position: int | None
    wait_minutes: int | None


def subject_of(channel: str, channel_user_id: str | None, conversation_id: str) -> str:
    return f"{channel}:{channel_user_id or conversation_id}"


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(CHINA_TZ).isoformat() if moment else None


def message_dict(message: ChatMessage, author: str | None = None) -> dict[str, Any]:
    return {"id": message.id, "kind": message.kind, "text": message.text, "payload": message.payload,
            "at": iso(message.created_at), "author": author, "case_id": message.handoff_id}


def case_summary(case: HandoffRequest) -> dict[str, Any]:
    taxpayer = case.taxpayer
    return {
        "id": case.id, "reference": case.reference, "status": case.status, "reason": case.reason,
        "channel": case.channel, "conversation_id": case.conversation_id, "channel_user_id": case.channel_user_id,
        "group": case.group.code if case.group else None, "group_name": case.group.name if case.group else None,
        "group_id": case.group_id, "agent_id": case.agent_id, "agent": case.agent.display_name if case.agent else None,
        "offered_to": case.offered_to, "vip": case.vip, "priority": case.priority, "position": case.position,
        "taxpayer": taxpayer.name if taxpayer else None,
        "preview": (case.last_message or "")[:60], "enqueued_at": iso(case.enqueued_at),
        "assigned_at": iso(case.assigned_at), "closed_at": iso(case.closed_at), "disposition": case.disposition,
        "rating": case.rating,
    }


def agent_summary(user: DeskUser) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "name": user.display_name, "role": user.role,
            "state": user.state, "state_since": iso(user.state_since), "active_chats": user.active_chats,
            "max_chats": user.max_chats, "groups": [g.code for g in user.groups]}


class Desk:
    def __init__(self, sessions: sessionmaker[Session], bus: Bus, hours: BusinessHours, *,
                 offer_seconds: float = 30.0, queue_timeout_seconds: float = 1800.0,
                 first_contact_hours: float = 72.0, default_handle_seconds: float = 300.0,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions, self.bus, self.hours = sessions, bus, hours
        self.offer_timeout = timedelta(seconds=offer_seconds)
        self.queue_timeout = timedelta(seconds=queue_timeout_seconds)
        self.first_contact = timedelta(hours=first_contact_hours)
        self.default_handle_seconds = default_handle_seconds
        self.clock = clock

    # ------------------------------------------------------------------ set-up

    def ensure_groups(self) -> None:
        with self.sessions.begin() as session:
            known = set(session.scalars(select(SkillGroup.code)))
            for code, name, strategy in DEFAULT_GROUPS:
                if code not in known:
                    session.add(SkillGroup(code=code, name=name, strategy=strategy))

    # ------------------------------------------------------------------ the bot hands a conversation over

    def open_case(self, *, conversation_id: str, channel: str, reason: str, last_message: str | None,
                  contact_phone: str | None, channel_user_id: str | None, taxpayer: Taxpayer | None,
                  context: dict[str, Any] | None) -> Opened:
        """Queue a handoff (or take a message outside business hours, or refuse a blacklisted user). A second
        request for a conversation that is already with the desk returns the open case."""
        now = self.clock()
        with self.sessions() as session:
            existing = session.scalar(select(HandoffRequest).where(
                HandoffRequest.conversation_id == conversation_id, HandoffRequest.status.in_(OPEN_STATUSES)))
            if existing is not None and not (existing.status == "after_hours" and self._open(session, existing, now)):
                position, wait = self._estimate(session, existing)
                return Opened(existing, position, wait)
            if existing is not None:  # a message was asked for after hours; now people are here: queue instead
                existing.status, existing.closed_at, existing.disposition = "closed", now, "no_message"
                session.commit()
            vip = taxpayer is not None and taxpayer.category == "VIP"
            group = self._choose_group(session, reason, vip, context or {})
            case = HandoffRequest(
                conversation_id=conversation_id, channel=channel, reason=reason, last_message=last_message,
                contact_phone=contact_phone, channel_user_id=channel_user_id,
                taxpayer_pk=taxpayer.id if taxpayer else None, vip=vip, priority=VIP_PRIORITY if vip else 0,
                group_id=group.id, context=context, created_at=now,
            )
            subject = subject_of(channel, channel_user_id, conversation_id)
            if self._blacklisted(session, subject, now):
                case.status, case.closed_at = "refused", now
            elif not self._open(session, case, now, group):
                case.status = "after_hours"
            else:
                case.status, case.enqueued_at = "queued", now
            session.add(case)
            session.flush()
            case.reference = reference("RG", now, case.id)
            session.commit()
            logger.info("desk.case_opened reference=%s status=%s group=%s vip=%s reason=%s", case.reference,
                        case.status, group.code, vip, reason)
            position, wait = self._estimate(session, case) if case.status == "queued" else (None, None)
            if position is not None:
                case.position = position
                session.commit()
            self.bus.publish({"type": "case", "case": case_summary(case)})
        if case.status == "queued":
            self.dispatch()
        with self.sessions() as session:
            case = session.get_one(HandoffRequest, case.id)
            position, wait = self._estimate(session, case) if case.status == "queued" else (None, None)
            return Opened(case, position, wait)

    def _open(self, session: Session, case: HandoffRequest, now: datetime, group: SkillGroup | None = None) -> bool:
        """People answer now: the group's own hours when it has them, otherwise the desk's."""
        group = group or (session.get(SkillGroup, case.group_id) if case.group_id else None)
        hours = BusinessHours.parse(group.hours) if group is not None and group.hours else self.hours
        return hours.is_open(now) and now.astimezone(CHINA_TZ).date() not in self.hours.closed_dates

    def _choose_group(self, session: Session, reason: str, vip: bool, context: dict[str, Any]) -> SkillGroup:
        groups = {g.code: g for g in session.scalars(select(SkillGroup))}
        staffed = set(session.scalars(select(SkillGroup.code).join(AgentSkill, AgentSkill.group_id == SkillGroup.id)
                                      .join(DeskUser, DeskUser.id == AgentSkill.user_id)
                                      .where(DeskUser.state.in_(("online", "busy")), DeskUser.disabled.is_(False))))
        intent = context.get("intent")
        slots = context.get("slots") or {}
        candidates = context.get("kb_candidates") or []
        top_category = candidates[0].get("category") if candidates and isinstance(candidates[0], dict) else None
        if vip and "vip" in staffed:
            code = "vip"
        elif reason == "complaint_escalation" or intent in ("complaint", "report_violation"):
            code = "complaint"
        elif intent == "invoice" or slots.get("invoice_type") or top_category == "发票":
            code = "invoice"
        else:
            code = "consult"
        return groups.get(code) or groups["consult"]

    def _blacklisted(self, session: Session, subject: str, now: datetime) -> bool:
        return session.scalar(select(BlacklistEntry.id).where(
            BlacklistEntry.subject == subject,
            or_(BlacklistEntry.expires_at.is_(None), BlacklistEntry.expires_at > now)).limit(1)) is not None

    # ------------------------------------------------------------------ queue position and estimated wait

    def _position(self, session: Session, case: HandoffRequest) -> int:
        ahead = session.scalar(select(func.count(HandoffRequest.id)).where(
            HandoffRequest.status == "queued", HandoffRequest.group_id == case.group_id,
            or_(HandoffRequest.priority > case.priority,
                and_(HandoffRequest.priority == case.priority, HandoffRequest.enqueued_at < case.enqueued_at),
                and_(HandoffRequest.priority == case.priority, HandoffRequest.enqueued_at == case.enqueued_at,
                     HandoffRequest.id < case.id))))
        return int(ahead or 0) + 1

    def _estimate(self, session: Session, case: HandoffRequest) -> tuple[int | None, int | None]:
        """Position (1 = next) and an estimated wait in whole minutes."""
        if case.status != "queued":
            return None, None
        position = self._position(session, case)
        return position, self._wait_minutes(position, *self._group_pace(session, case.group_id))

    def _group_pace(self, session: Session, group_id: int | None) -> tuple[float, int]:
        """The group's recent average handling time (seconds) and its agents on duty."""
        recent = session.execute(select(HandoffRequest.assigned_at, HandoffRequest.closed_at).where(
            HandoffRequest.group_id == group_id, HandoffRequest.status == "closed",
            HandoffRequest.assigned_at.is_not(None)).order_by(HandoffRequest.closed_at.desc()).limit(20)).all()
        durations = [(closed - assigned).total_seconds() for assigned, closed in recent if closed and assigned]
        handle = sum(durations) / len(durations) if durations else self.default_handle_seconds
        on_duty = session.scalar(select(func.count(DeskUser.id)).join(AgentSkill, AgentSkill.user_id == DeskUser.id)
                                 .where(AgentSkill.group_id == group_id,
                                        DeskUser.state.in_(("online", "busy")))) or 0
        return handle, on_duty

    @staticmethod
    def _wait_minutes(position: int, handle: float, on_duty: int) -> int:
        """Position × average handling time ÷ agents on duty, in whole minutes (at least one)."""
        return max(1, math.ceil(position * handle / max(1, on_duty) / 60))

    def _tell_positions(self, group_ids: set[int | None]) -> None:
        """Tell waiting users of these groups that they moved up: at every step in the last three places, every
        five places before that."""
        with self.sessions() as session:
            for group_id in filter(None, group_ids):
                waiting = session.scalars(select(HandoffRequest).where(
                    HandoffRequest.status == "queued", HandoffRequest.group_id == group_id)
                    .order_by(HandoffRequest.priority.desc(), HandoffRequest.enqueued_at, HandoffRequest.id)).all()
                pace = self._group_pace(session, group_id) if waiting else None
                for position, case in enumerate(waiting, start=1):
                    told = case.position
                    if pace is None or position == told:
                        continue
                    if told is not None and (position > told or (position > 3 and told - position < 5)):
                        if position > told:
                            case.position = position  # moved back (a VIP came in): not worth a message
                        continue  # near the front every step is news; further back, every five places
                    case.position = position
                    wait = self._wait_minutes(position, *pace)
                    text = f"您前面还有{position - 1}位，预计等待约{wait}分钟，请稍候。" if position > 1 else \
                        "马上就轮到您了，请稍候。"
                    self._add_message(session, case, "system", text)
            session.commit()
            self._flush_publish(session)

    # ------------------------------------------------------------------ routing

    def dispatch(self) -> int:
        """Offer every waiting case that has no live offer to one agent; returns the number of offers made."""
        offers = 0
        now = self.clock()
        with self.sessions() as session:
            room = self._free_agents(session)
            if not room:
                return 0
            waiting = session.scalars(select(HandoffRequest).where(
                HandoffRequest.status == "queued", HandoffRequest.offered_to.is_(None))
                .order_by(HandoffRequest.priority.desc(), HandoffRequest.enqueued_at, HandoffRequest.id)).all()
            for case in waiting:
                agent = self._pick_agent(session, case, now, room)
                if agent is None:
                    continue
                done = session.execute(update(HandoffRequest).where(
                    HandoffRequest.id == case.id, HandoffRequest.status == "queued",
                    HandoffRequest.offered_to.is_(None)).values(offered_to=agent.id, offered_at=now))
                if done.rowcount != 1:  # type: ignore[attr-defined]
                    session.rollback()
                    continue
                if case.group is not None and case.group.strategy == "round_robin":
                    case.group.last_agent_id = agent.id
                session.commit()
                session.refresh(case)
                offers += 1
                room[agent.id] -= 1
                if room[agent.id] <= 0:
                    del room[agent.id]
                logger.info("desk.offered case=%s agent=%s", case.reference, agent.username)
                self.bus.publish({"type": "case", "case": case_summary(case)})
                if not room:
                    break
        return offers

    def _free_agents(self, session: Session) -> dict[int, int]:
        """Agents who can take another conversation now, with how many more: online, and their chats plus the
        offers waiting for them below their maximum."""
        offers = dict(session.execute(select(HandoffRequest.offered_to, func.count(HandoffRequest.id)).where(
            HandoffRequest.status == "queued", HandoffRequest.offered_to.is_not(None))
            .group_by(HandoffRequest.offered_to)).all())
        agents = session.scalars(select(DeskUser).where(DeskUser.state == "online", DeskUser.disabled.is_(False),
                                                        DeskUser.role.in_(("agent", "supervisor"))))
        room = {u.id: u.max_chats - u.active_chats - offers.get(u.id, 0) for u in agents}
        return {user_id: left for user_id, left in room.items() if left > 0}

    def _pick_agent(self, session: Session, case: HandoffRequest, now: datetime,
                    room: dict[int, int]) -> DeskUser | None:
        previous = self._previous_agent(session, case, now)
        if previous is not None and previous.id in room:
            return previous  # 首问负责制: the agent who served this taxpayer recently
        members = [u for u in session.scalars(select(DeskUser).join(AgentSkill, AgentSkill.user_id == DeskUser.id)
                                              .where(AgentSkill.group_id == case.group_id, DeskUser.id.in_(room))
                                              .order_by(DeskUser.id))]
        if not members:
            return None
        strategy = case.group.strategy if case.group else "least_busy"
        if strategy == "round_robin":
            cursor = case.group.last_agent_id or 0 if case.group else 0
            return next((u for u in members if u.id > cursor), members[0])
        load = {u.id: u.max_chats - room[u.id] for u in members}  # chats plus offers
        if strategy == "longest_idle":
            return min(members, key=lambda u: (load[u.id] > 0, u.idle_since, u.id))
        return min(members, key=lambda u: (load[u.id], u.idle_since, u.id))

    def _previous_agent(self, session: Session, case: HandoffRequest, now: datetime) -> DeskUser | None:
        same_person = [HandoffRequest.conversation_id == case.conversation_id]
        if case.taxpayer_pk:
            same_person.append(HandoffRequest.taxpayer_pk == case.taxpayer_pk)
        if case.channel_user_id:
            same_person.append(and_(HandoffRequest.channel == case.channel,
                                    HandoffRequest.channel_user_id == case.channel_user_id))
        agent_id = session.scalar(select(HandoffRequest.agent_id).where(
            or_(*same_person), HandoffRequest.id != case.id, HandoffRequest.status == "closed",
            HandoffRequest.agent_id.is_not(None), HandoffRequest.closed_at > now - self.first_contact)
            .order_by(HandoffRequest.closed_at.desc()).limit(1))
        return session.get(DeskUser, agent_id) if agent_id else None

    # ------------------------------------------------------------------ agents

    def set_state(self, user_id: int, state: str) -> DeskUser:
        if state not in ("online", "away", "offline"):
            raise InvalidChoice(message="状态只能设为在线、离开或离线")
        now = self.clock()
        with self.sessions() as session:
            user = session.get_one(DeskUser, user_id)
            if state == "online" and user.active_chats >= user.max_chats:
                state = "busy"
            if user.state != state:
                user.state, user.state_since = state, now
                if state == "online" and user.active_chats == 0:
                    user.idle_since = now
            if state != "online":  # offers waiting for this agent go back to the queue
                self._withdraw_offers(session, user_id)
            session.commit()
            self._flush_publish(session)
            logger.info("desk.agent_state agent=%s state=%s", user.username, state)
            self.bus.publish({"type": "agent", "agent": agent_summary(user)})
        self.dispatch()
        with self.sessions() as session:
            return session.get_one(DeskUser, user_id)

    def _visible(self, user: DeskUser, case: HandoffRequest) -> bool:
        """Supervisors see every case; an agent sees cases routed to them: waiting in one of their groups or
        offered to them, or owned by them."""
        if user.role == "supervisor":
            return True
        if user.role != "agent":
            return False
        if case.agent_id == user.id or case.offered_to == user.id:
            return True
        return case.status == "queued" and case.group_id in {g.id for g in user.groups}

    def get_case(self, user: DeskUser, case_id: int) -> HandoffRequest:
        with self.sessions() as session:
            case = session.get(HandoffRequest, case_id)
            if case is None or not self._visible(user, case):
                raise CaseNotFound
            return case

    def cases_for(self, user: DeskUser, include_closed: bool = False) -> list[HandoffRequest]:
        with self.sessions() as session:
            query = select(HandoffRequest).where(HandoffRequest.status.in_(
                OPEN_STATUSES if not include_closed else (*OPEN_STATUSES, "closed", "abandoned")))
            if user.role != "supervisor":
                groups = [g.id for g in user.groups]
                query = query.where(or_(HandoffRequest.agent_id == user.id, HandoffRequest.offered_to == user.id,
                                        and_(HandoffRequest.status == "queued", HandoffRequest.group_id.in_(groups))))
            query = query.order_by(HandoffRequest.priority.desc(), HandoffRequest.enqueued_at, HandoffRequest.id)
            return list(session.scalars(query.limit(500)))

    def accept(self, user: DeskUser, case_id: int) -> HandoffRequest:
        now = self.clock()
        with self.sessions() as session:
            case = session.get(HandoffRequest, case_id)
            routed_here = case is not None and (case.group_id in {g.id for g in user.groups} or self._visible(user, case))
            if case is None or not routed_here:
                raise CaseNotFound
            if user.role not in ("agent", "supervisor"):
                raise NotOwner(message="只有坐席和班长可以接入会话")
            if case.status != "queued":
                raise AlreadyTaken if case.status == "assigned" else DeskError(message="该会话已经结束")
            room = session.execute(update(DeskUser).where(
                DeskUser.id == user.id, DeskUser.state.in_(("online", "busy")),
                DeskUser.active_chats < DeskUser.max_chats).values(active_chats=DeskUser.active_chats + 1))
            if room.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                fresh = session.get_one(DeskUser, user.id)
                raise AtCapacity if fresh.state in ("online", "busy") else NotAvailable
            taken = session.execute(update(HandoffRequest).where(
                HandoffRequest.id == case_id, HandoffRequest.status == "queued")
                .values(status="assigned", agent_id=user.id, assigned_at=now, offered_to=None, offered_at=None,
                        position=None))
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                raise AlreadyTaken
            self._after_assignment(session, user.id, now)
            session.commit()
            session.refresh(case)
            self._add_message(session, case, "system", f"坐席{user.display_name}已接入，正在为您服务。")
            session.commit()
            self._flush_publish(session)
            logger.info("desk.accepted case=%s agent=%s", case.reference, user.username)
            self.bus.publish({"type": "case", "case": case_summary(case)})
            group_id = case.group_id
        self._tell_positions({group_id})
        self.dispatch()  # offers this agent can no longer take go to someone else
        return self.get_case(user, case_id)

    def _after_assignment(self, session: Session, user_id: int, now: datetime) -> None:
        agent = session.get_one(DeskUser, user_id)
        session.refresh(agent)
        agent.idle_since = now
        if agent.active_chats >= agent.max_chats:
            if agent.state == "online":
                agent.state, agent.state_since = "busy", now
            self._withdraw_offers(session, user_id)  # they could not take them now
        self._emit(session, {"type": "agent", "agent": agent_summary(agent)})

    def _withdraw_offers(self, session: Session, user_id: int) -> None:
        """Offers waiting for this agent go back to the queue (consoles are told after the commit)."""
        offered = session.scalars(select(HandoffRequest).where(
            HandoffRequest.offered_to == user_id, HandoffRequest.status == "queued")).all()
        for case in offered:
            case.offered_to = case.offered_at = None
        session.flush()
        session.info.setdefault("desk_withdrawn", []).extend(case.id for case in offered)

    def _release(self, session: Session, user_id: int | None, now: datetime) -> None:
        if user_id is None:
            return
        session.execute(update(DeskUser).where(DeskUser.id == user_id, DeskUser.active_chats > 0)
                        .values(active_chats=DeskUser.active_chats - 1, idle_since=now))
        agent = session.get_one(DeskUser, user_id)
        session.refresh(agent)
        if agent.state == "busy" and agent.active_chats < agent.max_chats:
            agent.state, agent.state_since = "online", now
        self._emit(session, {"type": "agent", "agent": agent_summary(agent)})

    def _owned(self, session: Session, user: DeskUser, case_id: int, supervisor_may: bool = False) -> HandoffRequest:
        """The case, when ``user`` owns it (or, with ``supervisor_may``, is a supervisor). A supervisor who wants
        to write to another agent's user takes the conversation over first."""
        case = session.get(HandoffRequest, case_id)
        if case is None or not self._visible(user, case):
            raise CaseNotFound
        mine = case.agent_id == user.id or (supervisor_may and user.role == "supervisor")
        if case.status != "assigned" or not mine:
            raise NotOwner
        return case

    def _move(self, session: Session, case: HandoffRequest, previous: int | None, **values: Any) -> None:
        """Change an assigned case only if it is still with ``previous`` (a close, transfer or take-over by
        someone else in the meantime wins), then release ``previous``'s chat."""
        done = session.execute(update(HandoffRequest).where(
            HandoffRequest.id == case.id, HandoffRequest.status == "assigned",
            HandoffRequest.agent_id == previous).values(**values))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            session.rollback()
            raise AlreadyTaken(message="会话刚被结束、转接或接管")
        self._release(session, previous, values.get("closed_at") or values.get("assigned_at") or self.clock())

    def send(self, user: DeskUser, case_id: int, text: str, note: bool = False) -> dict[str, Any]:
        """An agent's reply to the user (or an internal note, which the user never sees)."""
        with self.sessions() as session:
            case = session.get(HandoffRequest, case_id)
            if case is None or not self._visible(user, case):
                raise CaseNotFound
            if not note:
                self._owned(session, user, case_id)
            message = self._add_message(session, case, "note" if note else "agent", text, author=user)
            session.commit()
            self._flush_publish(session)
            return message_dict(message, user.display_name)

    def transfer(self, user: DeskUser, case_id: int, *, to_agent: int | None = None, to_group: str | None = None,
                 note: str | None = None) -> HandoffRequest:
        now = self.clock()
        with self.sessions() as session:
            case = self._owned(session, user, case_id, supervisor_may=True)
            previous = case.agent_id
            if to_agent is not None:
                target = session.get(DeskUser, to_agent)
                if target is None or target.id == previous or target.role not in ("agent", "supervisor") \
                        or target.disabled:
                    raise BadTarget
                room = session.execute(update(DeskUser).where(
                    DeskUser.id == to_agent, DeskUser.state.in_(("online", "busy")), DeskUser.disabled.is_(False),
                    DeskUser.active_chats < DeskUser.max_chats).values(active_chats=DeskUser.active_chats + 1))
                if room.rowcount != 1:  # type: ignore[attr-defined]
                    session.rollback()
                    raise BadTarget(message="目标坐席不在线或已满")
                self._move(session, case, previous, agent_id=to_agent, assigned_at=now)
                self._after_assignment(session, to_agent, now)
                where = target.display_name
            elif to_group is not None:
                group = session.scalar(select(SkillGroup).where(SkillGroup.code == to_group))
                if group is None:
                    raise BadTarget
                # back in a queue: it waits from now (the queue timeout counts from here), ahead of nobody
                self._move(session, case, previous, status="queued", agent_id=None, group_id=group.id, position=None,
                           offered_to=None, offered_at=None, enqueued_at=now, assigned_at=None)
                where = f"{group.name}组"
            else:
                raise BadTarget
            session.commit()
            session.refresh(case)
            self._add_message(session, case, "note", f"{user.display_name}将会话转给{where}" +
                              (f"：{note}" if note else ""), author=user)
            self._add_message(session, case, "system", "正在为您转接其他客服，请稍候。")
            session.commit()
            self._flush_publish(session)
            logger.info("desk.transferred case=%s to=%s", case.reference, to_agent or to_group)
            self.bus.publish({"type": "case", "case": case_summary(case)})
            group_id = case.group_id
        if to_group is not None:
            self.dispatch()
            self._tell_positions({group_id})
        with self.sessions() as session:
            return session.get_one(HandoffRequest, case_id)

    def take_over(self, supervisor: DeskUser, case_id: int) -> HandoffRequest:
        now = self.clock()
        with self.sessions() as session:
            case = session.get(HandoffRequest, case_id)
            if case is None:
                raise CaseNotFound
            if supervisor.role not in ("supervisor",):
                raise NotOwner(message="只有班长可以接管会话")
            if case.status not in ("queued", "assigned") or case.agent_id == supervisor.id:
                raise DeskError(message="该会话不能接管")
            previous = case.agent_id if case.status == "assigned" else None
            taken = session.execute(update(HandoffRequest).where(
                HandoffRequest.id == case_id, HandoffRequest.status == case.status,
                HandoffRequest.agent_id.is_(previous) if previous is None else HandoffRequest.agent_id == previous)
                .values(status="assigned", agent_id=supervisor.id, assigned_at=now, offered_to=None, position=None))
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                raise AlreadyTaken
            session.execute(update(DeskUser).where(DeskUser.id == supervisor.id)
                            .values(active_chats=DeskUser.active_chats + 1))
            self._after_assignment(session, supervisor.id, now)
            self._release(session, previous, now)
            session.commit()
            session.refresh(case)
            self._add_message(session, case, "note", f"班长{supervisor.display_name}接管了会话", author=supervisor)
            session.commit()
            self._flush_publish(session)
            self.bus.publish({"type": "case", "case": case_summary(case)})
            return case

    def close(self, user: DeskUser, case_id: int, disposition: str) -> HandoffRequest:
        if disposition not in DISPOSITIONS:
            raise InvalidChoice(message="请选择结束原因")
        now = self.clock()
        with self.sessions() as session:
            case = self._owned(session, user, case_id)
            self._move(session, case, case.agent_id, status="closed", closed_at=now, disposition=disposition,
                       resume_pending=True)
            session.commit()
            self._flush_publish(session)
            session.refresh(case)
            logger.info("desk.closed case=%s disposition=%s", case.reference, disposition)
            self.bus.publish({"type": "case", "case": case_summary(case)})
            return case

    # ------------------------------------------------------------------ the user's side

    def open_case_for(self, conversation_id: str) -> HandoffRequest | None:
        with self.sessions() as session:
            return session.scalar(select(HandoffRequest).where(
                HandoffRequest.conversation_id == conversation_id, HandoffRequest.status.in_(OPEN_STATUSES))
                .order_by(HandoffRequest.id.desc()).limit(1))

    def inbound(self, conversation_id: str, text: str, metadata: dict[str, Any] | None = None,
                stored: int | None = None) -> Inbound:
        """A user's message: to the agent or the queue when people own the conversation, taken as the message
        outside business hours, read as the satisfaction rating right after a close, otherwise the bot's.
        ``stored`` is the id of the message when the gateway has stored it already."""
        now = self.clock()
        with self.sessions() as session:
            case = session.scalar(select(HandoffRequest).where(
                HandoffRequest.conversation_id == conversation_id, HandoffRequest.status.in_(OPEN_STATUSES))
                .order_by(HandoffRequest.id.desc()).limit(1))
            if case is None:
                return self._maybe_rating(session, conversation_id, text, now, stored)
            payload = {"asr_confidence": metadata["asr_confidence"]} if metadata and "asr_confidence" in metadata \
                else None
            self._user_message(session, case, text, payload, stored)
            case_id = case.id
            if case.status == "after_hours":
                reply = self._take_message(session, case, text, now)
                session.commit()
                self._flush_publish(session)
                return Inbound("follow_up", [reply], case_id=case_id)
            if case.status == "queued" and CANCEL_WORDS.match(text.strip()):
                session.commit()
                self._flush_publish(session)
                self.abandon(case_id, "user_cancelled")
                return Inbound("abandoned", ["好的，已为您取消排队。您可以继续向智能助手提问。"], case_id=case_id)
            session.commit()
            self._flush_publish(session)
            return Inbound("agent" if case.status == "assigned" else "queue", case_id=case_id)

    def _take_message(self, session: Session, case: HandoffRequest, text: str, now: datetime) -> str:
        match = PHONE_PATTERN.search(text)
        phone = normalize_phone(match.group(1)) if match else None
        follow_up = FollowUp(handoff_id=case.id, conversation_id=case.conversation_id, channel=case.channel,
                             message=text[:4000], contact_phone=phone or case.contact_phone, created_at=now)
        session.add(follow_up)
        session.flush()
        follow_up.reference = reference("LY", now, follow_up.id)
        case.status, case.closed_at, case.disposition, case.resume_pending = "closed", now, "callback", True
        self._emit(session, {"type": "follow_up", "reference": follow_up.reference})
        logger.info("desk.follow_up reference=%s case=%s", follow_up.reference, case.reference)
        contact = "我们会按您留的电话联系您" if follow_up.contact_phone else "您没有留电话，回复会发到这个对话里"
        return f"已收到您的留言，编号{follow_up.reference}。工作人员会在工作时间处理，{contact}。"

    def _user_message(self, session: Session, case: HandoffRequest, text: str, payload: dict[str, Any] | None,
                      stored: int | None) -> None:
        """Attach the user's message to the case: the gateway's stored row, or a new one."""
        if stored is None:
            self._add_message(session, case, "user", text, payload=payload)
            return
        message = session.get_one(ChatMessage, stored)
        message.handoff_id = case.id
        session.flush()
        self._queue_event(session, case, message, None)

    def _maybe_rating(self, session: Session, conversation_id: str, text: str, now: datetime,
                      stored: int | None) -> Inbound:
        rating = RATINGS.get(text.strip().rstrip("。.！!"))
        if rating is None:
            return Inbound("bot")
        case = session.scalar(select(HandoffRequest).where(
            HandoffRequest.conversation_id == conversation_id, HandoffRequest.status == "closed",
            HandoffRequest.rating_asked_at > now - RATING_WINDOW, HandoffRequest.rating.is_(None))
            .order_by(HandoffRequest.id.desc()).limit(1))
        if case is None:
            return Inbound("bot")
        later = session.scalar(select(ChatMessage.id).where(
            ChatMessage.conversation_id == conversation_id, ChatMessage.kind == "user",
            ChatMessage.created_at > case.rating_asked_at, ChatMessage.id != (stored or 0)).limit(1))
        if later is not None:  # the user has moved on: a digit now means something else
            return Inbound("bot")
        case.rating = rating
        self._user_message(session, case, text, None, stored)
        session.commit()
        self._flush_publish(session)
        logger.info("desk.rated case=%s rating=%s", case.reference, rating)
        self.bus.publish({"type": "case", "case": case_summary(case)})
        if rating == 0:
            return Inbound("rating", forward="/complaint", case_id=case.id)
        return Inbound("rating", ["感谢您的评价！还有其他问题可以随时问我。"], case_id=case.id)

    def cancel_wait(self, conversation_id: str) -> bool:
        """The user stops waiting for a person (取消排队): True when this ended a wait."""
        case = self.open_case_for(conversation_id)
        return case is not None and case.status == "queued" and self.abandon(case.id, "user_cancelled")

    def abandon(self, case_id: int, why: str, notice: str | None = None, status: str = "queued") -> bool:
        """End a wait that nobody answered (or a message nobody left): back to the bot, and ``notice`` to the user,
        in the same transaction, so it is said only if this call is the one that ended it."""
        now = self.clock()
        with self.sessions() as session:
            done = session.execute(update(HandoffRequest).where(
                HandoffRequest.id == case_id, HandoffRequest.status == status)
                .values(status="abandoned" if status == "queued" else "closed", closed_at=now, disposition=why,
                        offered_to=None, resume_pending=True))
            if done.rowcount != 1:  # type: ignore[attr-defined]
                session.rollback()
                return False
            case = session.get_one(HandoffRequest, case_id)
            if notice:
                self._add_message(session, case, "system", notice)
            session.commit()
            self._flush_publish(session)
            session.refresh(case)
            logger.info("desk.ended case=%s why=%s", case.reference, why)
            self.bus.publish({"type": "case", "case": case_summary(case)})
            group_id = case.group_id
        self._tell_positions({group_id})
        return True

    # ------------------------------------------------------------------ timers (run every second or so)

    def tick(self) -> None:
        """Offers nobody answered go back to the queue (the agent is set to away); users who waited too long
        are told and their handoff recorded as abandoned; waiting cases are offered again."""
        now = self.clock()
        with self.sessions() as session:
            missed = session.execute(select(HandoffRequest.id, HandoffRequest.offered_to).where(
                HandoffRequest.status == "queued", HandoffRequest.offered_to.is_not(None),
                HandoffRequest.offered_at < now - self.offer_timeout)).all()
            expired = session.scalars(select(HandoffRequest.id).where(
                HandoffRequest.status == "queued", HandoffRequest.enqueued_at < now - self.queue_timeout)).all()
            silent = session.scalars(select(HandoffRequest.id).where(
                HandoffRequest.status == "after_hours", HandoffRequest.created_at < now - self.queue_timeout)).all()
        for case_id, agent_id in missed:
            with self.sessions() as session:
                cleared = session.execute(update(HandoffRequest).where(
                    HandoffRequest.id == case_id, HandoffRequest.offered_to == agent_id,
                    HandoffRequest.status == "queued").values(offered_to=None, offered_at=None))
                session.commit()
            if cleared.rowcount == 1:  # type: ignore[attr-defined]
                logger.info("desk.offer_missed case=%s agent=%s", case_id, agent_id)
                with self.sessions() as session:
                    self.bus.publish({"type": "case", "case": case_summary(session.get_one(HandoffRequest, case_id))})
                    state = session.scalar(select(DeskUser.state).where(DeskUser.id == agent_id))
                if state == "online":  # not answering though free: presumably away from the desk
                    self.set_state(agent_id, "away")
        for case_id in expired:
            self.abandon(case_id, "queue_timeout",
                         "很抱歉，现在咨询的人较多，暂时没能为您接通人工。您可以继续向智能助手提问，或稍后再转人工。")
        for case_id in silent:  # asked to leave a message after hours and did not: the bot answers again
            self.abandon(case_id, "no_message", status="after_hours")
        self.dispatch()

    RESUME_LEASE = timedelta(minutes=2)

    def pending_resumes(self) -> list[tuple[int, str, bool]]:
        """Cases the bot still has to be given back: (id, conversation_id, ask for a rating?)."""
        stale = self.clock() - self.RESUME_LEASE
        with self.sessions() as session:
            rows = session.execute(select(HandoffRequest.id, HandoffRequest.conversation_id, HandoffRequest.status,
                                          HandoffRequest.disposition).where(
                HandoffRequest.resume_pending,
                or_(HandoffRequest.resume_claimed_at.is_(None), HandoffRequest.resume_claimed_at < stale))).all()
        return [(row.id, row.conversation_id, row.status == "closed" and row.disposition not in ("callback", "no_message"))
                for row in rows]

    def claim_resume(self, case_id: int) -> bool:
        """Take the hand-back of this case (one replica does it); a claim older than the lease is taken over."""
        now = self.clock()
        with self.sessions() as session:
            done = session.execute(update(HandoffRequest).where(
                HandoffRequest.id == case_id, HandoffRequest.resume_pending,
                or_(HandoffRequest.resume_claimed_at.is_(None),
                    HandoffRequest.resume_claimed_at < now - self.RESUME_LEASE))
                .values(resume_claimed_at=now))
            session.commit()
            return done.rowcount == 1  # type: ignore[attr-defined]

    def release_resume(self, case_id: int) -> None:
        with self.sessions() as session:
            session.execute(update(HandoffRequest).where(HandoffRequest.id == case_id)
                            .values(resume_claimed_at=None))
            session.commit()

    def resumed(self, case_id: int, bot_messages: list[dict[str, Any]], asked_rating: bool) -> None:
        with self.sessions() as session:
            case = session.get_one(HandoffRequest, case_id)
            case.resume_pending, case.resume_claimed_at = False, None
            for reply in bot_messages:
                text = reply.get("text") or ""
                if text:
                    buttons = reply.get("buttons")
                    self._add_message(session, case, "bot", text, payload={"buttons": buttons} if buttons else None)
            if asked_rating:
                case.rating_asked_at = self.clock()
            session.commit()
            self._flush_publish(session)

    # ------------------------------------------------------------------ supervisors

    def blacklist(self, by: DeskUser, case_id: int, duration: str, reason: str | None) -> BlacklistEntry:
        if duration not in BLACKLIST_DURATIONS:
            raise InvalidChoice(message="时长只能是 5m、30m 或 permanent")
        now = self.clock()
        with self.sessions() as session:
            case = session.get(HandoffRequest, case_id)
            if case is None:
                raise CaseNotFound
            span = BLACKLIST_DURATIONS[duration]
            entry = BlacklistEntry(subject=subject_of(case.channel, case.channel_user_id, case.conversation_id),
                                   reason=reason, expires_at=now + span if span else None, created_by=by.id)
            session.add(entry)
            session.commit()
            logger.info("desk.blacklisted case=%s duration=%s", case.reference, duration)
            return entry

    def overview(self) -> dict[str, Any]:
        with self.sessions() as session:
            agents = session.scalars(select(DeskUser).where(DeskUser.role.in_(("agent", "supervisor")))
                                     .order_by(DeskUser.id)).all()
            groups = session.scalars(select(SkillGroup).order_by(SkillGroup.id)).all()
            waiting = dict(session.execute(select(HandoffRequest.group_id, func.count(HandoffRequest.id)).where(
                HandoffRequest.status == "queued").group_by(HandoffRequest.group_id)).all())
            oldest = dict(session.execute(select(HandoffRequest.group_id, func.min(HandoffRequest.enqueued_at)).where(
                HandoffRequest.status == "queued").group_by(HandoffRequest.group_id)).all())
            return {
                "agents": [agent_summary(a) for a in agents],
                "groups": [{"code": g.code, "name": g.name, "strategy": g.strategy, "waiting": waiting.get(g.id, 0),
                            "oldest": iso(oldest.get(g.id))} for g in groups],
            }

    def history(self, case: HandoffRequest) -> dict[str, Any]:
        """The context package: what happened before the handoff (from the bot), the messages since, the
        taxpayer's profile, and their earlier handoffs and tickets."""
        with self.sessions() as session:
            case = session.get_one(HandoffRequest, case.id)
            messages = session.scalars(select(ChatMessage).where(ChatMessage.handoff_id == case.id)
                                       .order_by(ChatMessage.id)).all()
            authors = {u.id: u.display_name for u in session.scalars(select(DeskUser).where(
                DeskUser.id.in_({m.author_id for m in messages if m.author_id})))}
            same_person = [HandoffRequest.conversation_id == case.conversation_id]
            if case.taxpayer_pk:
                same_person.append(HandoffRequest.taxpayer_pk == case.taxpayer_pk)
            if case.channel_user_id:
                same_person.append(and_(HandoffRequest.channel == case.channel,
                                        HandoffRequest.channel_user_id == case.channel_user_id))
            earlier = session.scalars(select(HandoffRequest).where(or_(*same_person), HandoffRequest.id != case.id)
                                      .order_by(HandoffRequest.id.desc()).limit(10)).all()
            conversations = {case.conversation_id, *(c.conversation_id for c in earlier)}
            tickets = session.scalars(select(Ticket).where(Ticket.conversation_id.in_(conversations))
                                      .order_by(Ticket.id.desc()).limit(10)).all()
            taxpayer = case.taxpayer
            return {
                "case": case_summary(case),
                "context": case.context or {},
                "messages": [message_dict(m, authors.get(m.author_id or 0)) for m in messages],
                "taxpayer": None if taxpayer is None else {
                    "name": taxpayer.name, "kind": taxpayer.kind, "category": taxpayer.category,
                    "identifier": taxpayer.identifier, "phone": taxpayer.phone, "tax_office": taxpayer.tax_office},
                "contact_phone": case.contact_phone,
                "earlier": [case_summary(c) for c in earlier],
                "tickets": [{"reference": t.reference, "kind": t.kind, "subject": t.subject, "status": t.status,
                             "created_at": iso(t.created_at)} for t in tickets],
            }

    # ------------------------------------------------------------------ messages

    def _add_message(self, session: Session, case: HandoffRequest, kind: str, text: str, *,
                     author: DeskUser | None = None, payload: dict[str, Any] | None = None) -> ChatMessage:
        message = ChatMessage(conversation_id=case.conversation_id, handoff_id=case.id, kind=kind, text=text,
                              channel=case.channel,
                              author_id=author.id if author else None, payload=payload, created_at=self.clock())
        session.add(message)
        session.flush()
        self._queue_event(session, case, message, author.display_name if author else None)
        return message

    def _queue_event(self, session: Session, case: HandoffRequest, message: ChatMessage, author: str | None) -> None:
        self._emit(session, {"type": "message", "conversation_id": case.conversation_id, "case_id": case.id,
                             "agent_id": case.agent_id, "group_id": case.group_id,
                             "message": message_dict(message, author)})

    @staticmethod
    def _emit(session: Session, event: dict[str, Any]) -> None:
        """An event to publish once this session's transaction has committed (dropped with it otherwise)."""
        session.info.setdefault("desk_events", []).append(event)

    def _flush_publish(self, session: Session) -> None:
        """Publish what this session's committed transaction changed."""
        for event in session.info.pop("desk_events", []):
            self.bus.publish(event)
        withdrawn = session.info.pop("desk_withdrawn", [])
        if withdrawn:
            with self.sessions() as session:
                for case in session.scalars(select(HandoffRequest).where(HandoffRequest.id.in_(withdrawn))):
                    self.bus.publish({"type": "case", "case": case_summary(case)})
