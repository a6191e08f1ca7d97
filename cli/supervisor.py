"""``taxbot run``: start every process on loopback under honcho, health-check them, stop them together.

honcho (a well-kept Procfile runner) multiplexes the output with a prefix per process, stops
all processes on Ctrl-C (SIGTERM, then SIGKILL after 5 s) and, when one process dies, reports
it and stops the others: a half-running assistant is worse than a stopped one. A health thread
prints the URLs once every process answers, then keeps checking and reports a process that
stops answering.
"""
from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from honcho.manager import Manager
from honcho.printer import Printer

from cli import paths
from cli.bootstrap import ROOT
from cli.config import RuntimeConfig
from cli.runtime import fail, process_env


@dataclass(frozen=True)
class Component:
    name: str
    label: str
    port: int
    command: list[str]
    health_url: str


def render_endpoints(config: RuntimeConfig) -> Path:
    """Rasa's endpoints.yml for this run (JSON is valid YAML); it may hold a password: mode 0600."""
    run_dir = config.data_path / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / "endpoints.yml"
    endpoints = {
        "action_endpoint": {"url": f"{config.actions_url}/webhook"},
        "tracker_store": config.tracker_store(),
    }
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(endpoints, handle, indent=2)
    return target


def components(config: RuntimeConfig, model: Path) -> list[Component]:
    endpoints = render_endpoints(config)
    return [
        Component(
            "service", "服务应用", config.service_port,
            [str(paths.SERVICE_PYTHON), "-m", "uvicorn", "--factory", "service.app:create_app",
             "--host", config.host, "--port", str(config.service_port), "--log-level", config.log_level.lower()],
            f"{config.service_url}/health",
        ),
        Component(
            "actions", "动作服务器", config.actions_port,
            [str(paths.RASA_PYTHON), "-m", "rasa_sdk", "--actions", "actions", "--port", str(config.actions_port)],
            f"{config.actions_url}/health",
        ),
        Component(
            "rasa", "Rasa 服务器", config.rasa_port,
            # cli/rasa_server.py adds --auth-token from TAXBOT_RASA_TOKEN, out of sight of `ps`
            [str(paths.RASA_PYTHON), "-m", "cli.rasa_server", "--model", str(model), "--endpoints", str(endpoints),
             "--credentials", str(paths.CREDENTIALS), "--enable-api",
             "--interface", config.host, "--port", str(config.rasa_port)],
            # Rasa's --auth-token is checked as a query parameter (a Bearer header means JWT)
            f"{config.rasa_url}/status?token={config.rasa_token_value}",
        ),
    ]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def healthy(component: Component) -> bool:
    try:
        return httpx.get(component.health_url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


class HealthMonitor(threading.Thread):
    """Waits for every component, prints the URLs, then reports components that stop answering."""

    def __init__(self, config: RuntimeConfig, parts: list[Component], stop: threading.Event, interval: float = 10.0):
        super().__init__(daemon=True, name="health")
        self.config, self.parts, self.stop, self.interval = config, parts, stop, interval

    def say(self, message: str) -> None:
        print(f"taxbot    | {message}", flush=True)

    def run(self) -> None:
        started = time.monotonic()
        waiting = {c.name for c in self.parts}
        while waiting and not self.stop.wait(1.0):
            for c in self.parts:
                if c.name in waiting and healthy(c):
                    waiting.discard(c.name)
                    self.say(f"✔ {c.label}就绪（{time.monotonic() - started:.0f} 秒）")
        if self.stop.is_set():
            return
        cfg = self.config
        self.say(
            f"全部就绪，用时 {time.monotonic() - started:.0f} 秒：\n"
            f"    Rasa 服务器   {cfg.rasa_url}    REST 渠道 {cfg.rest_webhook_url}\n"
            f"    动作服务器   {cfg.actions_url}\n"
            f"    服务应用     {cfg.service_url}    /health  /version  /docs\n"
            f"    坐席工作台   {cfg.service_url}/desk    演示账号 zuoxi1、zuoxi2（坐席）、banzhang（班长）、admin、bianji（编辑），"
            f"密码在 {cfg.desk_demo_password_file}\n"
            f"    网页聊天接口 {cfg.service_url}/chat/api/send\n"
            f"    数据目录     {cfg.data_path}\n"
            "    在另一个终端运行 ./taxbot chat 和助手对话；按 Ctrl-C 停止全部进程。"
        )
        failing: set[str] = set()
        while not self.stop.wait(self.interval):
            for c in self.parts:
                ok = healthy(c)
                if not ok and c.name not in failing:
                    failing.add(c.name)
                    self.say(f"✗ {c.label}没有响应健康检查（端口 {c.port}）")
                elif ok and c.name in failing:
                    failing.discard(c.name)
                    self.say(f"✔ {c.label}恢复响应")


def run_all(config: RuntimeConfig, model: Path) -> int:
    parts = components(config, model)
    busy = [c for c in parts if port_in_use(config.host, c.port)]
    if busy:
        fail(
            "端口已被占用：" + "、".join(f"{c.label} {c.port}" for c in busy)
            + "。可能已经有一个 taxbot 在运行；或用 TAXBOT_RASA_PORT / TAXBOT_ACTIONS_PORT / TAXBOT_SERVICE_PORT 换端口。",
            code=2,
        )
    config.data_path.mkdir(parents=True, exist_ok=True)
    env = process_env(config)
    manager = Manager(Printer(sys.stdout, colour=sys.stdout.isatty()))
    for c in parts:
        own_env = dict(env, TAXBOT_RASA_TOKEN=config.rasa_token_value) if c.name in ("rasa", "service") else env
        if c.name == "service" and "TAXBOT_DESK_DEMO_PASSWORD" not in env:
            own_env["TAXBOT_DESK_DEMO_PASSWORD"] = config.desk_demo_password()
        manager.add_process(c.name, shlex.join(c.command), env=own_env, cwd=str(ROOT))
    stop = threading.Event()
    HealthMonitor(config, parts, stop).start()
    manager.loop()
    stop.set()
    # A process that ended by itself (not after our SIGTERM) is what stopped the system.
    died = [
        name for name, proc in manager._processes.items()  # honcho keeps no public accessor
        if proc.get("returncode") not in (None, 0, -15, 143)
    ]
    if died:
        print(f"taxbot    | ✗ 进程意外退出：{'、'.join(died)}；其余进程已停止。上面是它的输出。", flush=True)
    else:
        print("taxbot    | 全部进程已停止。", flush=True)
    return manager.returncode or 0
