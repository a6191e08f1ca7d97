"""``./taxbot desk user``: the operator's way to create the first administrator (runs the module as the CLI does)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.service.service_support import TOKEN

ROOT = Path(__file__).resolve().parents[2]


def desk_user(tmp_path: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TAXBOT_SERVICE_TOKEN=TOKEN, TAXBOT_DATA_DIR=str(tmp_path))
    env.pop("TAXBOT_DATABASE_URL", None)
    env.pop("TAXBOT_DESK_PASSWORD", None)
    if password is not None:
        env["TAXBOT_DESK_PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "service.desk.users", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=120)


def test_add_list_disable(tmp_path: Path) -> None:
    made = desk_user(tmp_path, "add", "wang", "--role", "admin", "--name", "王管理", password="first-admin-42")
    assert made.returncode == 0 and "已创建 wang（admin）" in made.stdout
    assert "first-admin-42" not in made.stdout + made.stderr
    agent = desk_user(tmp_path, "add", "li", "--role", "agent", "--groups", "consult,vip", password="agent-pass-42")
    assert agent.returncode == 0
    listed = desk_user(tmp_path, "list").stdout.splitlines()
    assert listed == ["wang\t王管理\tadmin\t-\toffline", "li\tli\tagent\tconsult,vip\toffline"]
    assert desk_user(tmp_path, "disable", "li").returncode == 0
    assert desk_user(tmp_path, "list").stdout.splitlines()[1].endswith("停用")


def test_refusals(tmp_path: Path) -> None:
    no_tty = desk_user(tmp_path, "add", "zhao", "--role", "agent")
    assert no_tty.returncode != 0 and "TAXBOT_DESK_PASSWORD" in no_tty.stderr
    weak = desk_user(tmp_path, "add", "zhao", "--role", "agent", password="short")
    assert weak.returncode == 1 and "至少 10 个字符" in weak.stderr
    group = desk_user(tmp_path, "add", "zhao", "--role", "agent", "--groups", "nope", password="agent-pass-42")
    assert group.returncode == 1 and "没有这些技能组：nope" in group.stderr
    assert desk_user(tmp_path, "list").stdout == ""
