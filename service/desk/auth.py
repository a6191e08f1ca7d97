"""Desk users: scrypt password hashes, cookie sessions (only the token's SHA-256 is stored) and role checks."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.models import DESK_ROLES, DeskSession, DeskUser, SkillGroup, utcnow

COOKIE = "taxdesk_session"
# scrypt cost: n=2**14, r=8, p=1 (16 MB, ~50 ms here): the parameters are stored with each hash.
_N, _R, _P = 2**14, 8, 1
MIN_PASSWORD_CHARS = 10
# Who may do what; every desk endpoint names one of these.
CAN_HANDLE_CHATS = ("agent", "supervisor")
CAN_SUPERVISE = ("supervisor", "admin")
CAN_ADMINISTER = ("admin",)
CAN_EDIT_KNOWLEDGE = ("editor", "admin")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                                  dklen=len(digest) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed.hex(), digest)


# Compared against when the user does not exist, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_CHARS:
        return f"密码至少 {MIN_PASSWORD_CHARS} 个字符"
    if password.isdigit() or password.isalpha():
        return "密码需同时包含字母和数字"
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(session: Session, username: str, password: str) -> DeskUser | None:
    user = session.scalar(select(DeskUser).where(DeskUser.username == username))
    ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    return user if ok and user is not None and not user.disabled else None


def open_session(session: Session, user: DeskUser, hours: float) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(DeskSession).where(DeskSession.expires_at < now))
    session.add(DeskSession(token_hash=token_hash(token), user_id=user.id, expires_at=now + timedelta(hours=hours)))
    session.commit()
    return token


def session_user(session: Session, token: str | None) -> DeskUser | None:
    if not token:
        return None
    row = session.scalar(select(DeskSession).where(DeskSession.token_hash == token_hash(token),
                                                   DeskSession.expires_at > utcnow()))
    if row is None or row.user.disabled:
        return None
    return row.user


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(DeskSession).where(DeskSession.token_hash == token_hash(token)))
        session.commit()


def create_user(session: Session, username: str, password: str, role: str, display_name: str | None = None,
                groups: list[str] | tuple[str, ...] = (), max_chats: int = 3) -> DeskUser:
    """A new desk user; raises ValueError with a Chinese reason for a bad role, password or group."""
    if role not in DESK_ROLES:
        raise ValueError(f"角色必须是 {', '.join(DESK_ROLES)} 之一")
    problem = password_problem(password)
    if problem:
        raise ValueError(problem)
    if session.scalar(select(DeskUser.id).where(DeskUser.username == username)) is not None:
        raise ValueError(f"用户名 {username} 已存在")
    found = session.scalars(select(SkillGroup).where(SkillGroup.code.in_(groups))).all() if groups else []
    missing = set(groups) - {group.code for group in found}
    if missing:
        raise ValueError(f"没有这些技能组：{', '.join(sorted(missing))}")
    user = DeskUser(username=username, display_name=display_name or username, password_hash=hash_password(password),
                    role=role, max_chats=max_chats, groups=list(found))
    session.add(user)
    session.commit()
    return user
