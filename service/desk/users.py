"""Desk users from the command line (``./taxbot desk user add|list|disable``): how an operator creates the first
administrator. The password is read from TAXBOT_DESK_PASSWORD or asked for twice; it is never an argument."""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence

from sqlalchemy import select

from service.db import configured_engine, make_sessionmaker
from service.desk import auth
from service.desk.bus import Bus
from service.desk.core import Desk
from service.desk.hours import BusinessHours
from service.models import DESK_ROLES, DeskUser


def _password() -> str:
    given = os.environ.get("TAXBOT_DESK_PASSWORD")
    if given:
        return given
    if not sys.stdin.isatty():
        raise SystemExit("没有终端可以输入密码：请用环境变量 TAXBOT_DESK_PASSWORD 提供")
    first = getpass.getpass("密码：")
    if getpass.getpass("再输一次：") != first:
        raise SystemExit("两次输入的密码不一致")
    return first


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taxbot desk user", description="坐席工作台用户")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="新建用户")
    add.add_argument("username")
    add.add_argument("--role", choices=DESK_ROLES, required=True)
    add.add_argument("--name", help="显示名（默认同用户名）")
    add.add_argument("--groups", default="", help="技能组，逗号分隔：consult,invoice,complaint,vip")
    add.add_argument("--max-chats", type=int, default=3)
    commands.add_parser("list", help="列出用户")
    disable = commands.add_parser("disable", help="停用用户（保留记录）")
    disable.add_argument("username")
    args = parser.parse_args(argv)
    engine = configured_engine()
    if engine is None:
        return 2
    sessions = make_sessionmaker(engine)
    Desk(sessions, Bus(), BusinessHours.parse("always")).ensure_groups()
    try:
        with sessions() as session:
            if args.command == "list":
                for user in session.scalars(select(DeskUser).order_by(DeskUser.id)):
                    groups = ",".join(g.code for g in user.groups) or "-"
                    print(f"{user.username}\t{user.display_name}\t{user.role}\t{groups}\t"
                          f"{'停用' if user.disabled else user.state}")
                return 0
            if args.command == "disable":
                user = session.scalar(select(DeskUser).where(DeskUser.username == args.username))
                if user is None:
                    print(f"没有用户 {args.username}", file=sys.stderr)
                    return 1
                user.disabled = True
                session.commit()
                print(f"已停用 {args.username}")
                return 0
            groups = [g.strip() for g in args.groups.split(",") if g.strip()]
            try:
                user = auth.create_user(session, args.username, _password(), args.role, args.name, groups,
                                        args.max_chats)
            except ValueError as exc:
                print(f"未创建：{exc}", file=sys.stderr)
                return 1
            print(f"已创建 {user.username}（{user.role}）")
            return 0
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
