"""Starts the whole system with ``./taxbot run`` on spare loopback ports, once per test session.

Real processes: the Rasa server with the trained model, the rasa-sdk action server and the
service app, on a temporary data directory (SQLite tracker store and records database).
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class System:
    process: subprocess.Popen
    log: Path
    data_dir: Path
    env: dict[str, str]
    rasa_url: str
    actions_url: str
    service_url: str
    service_token: str
    rasa_token: str

    @property
    def webhook(self) -> str:
        return f"{self.rasa_url}/webhooks/rest/webhook"

    def say(self, sender: str, text: str, channel: str | None = None) -> list[dict]:
        body = {"sender": sender, "message": text}
        if channel:
            body["input_channel"] = channel
        reply = httpx.post(self.webhook, json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def texts(self, sender: str, text: str, channel: str | None = None) -> str:
        return "\n".join(m.get("text", "") for m in self.say(sender, text, channel))

    def service_get(self, path: str, **params) -> dict:
        reply = httpx.get(
            f"{self.service_url}{path}", params=params, headers={"Authorization": f"Bearer {self.service_token}"}, timeout=10
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    @property
    def desk_password(self) -> str:
        """The demo desk users' password, which ``taxbot run`` generated into the data directory."""
        return (self.data_dir / "desk-demo-password").read_text().strip()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def sms_code(self, masked_phone: str, after: int = 0) -> str:
        """The one-time code the demo SMS sender logged for ``masked_phone`` (after log offset ``after``)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = re.findall(rf"{re.escape(masked_phone)}.*?验证码为(\d{{6}})", self.log_text()[after:])
            if found:
                return found[-1]
            time.sleep(0.2)
        raise AssertionError(f"no demo SMS for {masked_phone} in the log")


def start_system(tmp_root: Path, **overrides: str) -> System:
    ports = {name: free_port() for name in ("RASA", "ACTIONS", "SERVICE")}
    data_dir = tmp_root / "data"
    tokens = {"service": uuid.uuid4().hex + "s", "rasa": uuid.uuid4().hex + "r"}
    env = dict(os.environ)
    env.update(
        TAXBOT_DATA_DIR=str(data_dir),
        TAXBOT_RASA_PORT=str(ports["RASA"]),
        TAXBOT_ACTIONS_PORT=str(ports["ACTIONS"]),
        TAXBOT_SERVICE_PORT=str(ports["SERVICE"]),
        TAXBOT_SERVICE_TOKEN=tokens["service"],
        TAXBOT_RASA_TOKEN=tokens["rasa"],
        # One knowledge index for every start: built once, not re-encoded per test.
        TAXBOT_KB_INDEX_DIR=str(ROOT / "data" / "kb"),
        **overrides,
    )
    log = tmp_root / "run.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        [str(ROOT / "taxbot"), "run"], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    system = System(
        process, log, data_dir, env,
        f"http://127.0.0.1:{ports['RASA']}", f"http://127.0.0.1:{ports['ACTIONS']}", f"http://127.0.0.1:{ports['SERVICE']}",
        tokens["service"], tokens["rasa"],
    )
    deadline = time.monotonic() + START_TIMEOUT
    while "全部就绪" not in system.log_text():
        if process.poll() is not None:
            raise AssertionError(f"taxbot run exited with {process.returncode}:\n{system.log_text()[-4000:]}")
        if time.monotonic() > deadline:
            stop_system(system)
            raise AssertionError(f"not ready after {START_TIMEOUT} s:\n{system.log_text()[-4000:]}")
        time.sleep(1)
    return system


def stop_system(system: System) -> int:
    """Ctrl-C, as a person would; returns the exit code."""
    if system.process.poll() is None:
        os.killpg(system.process.pid, signal.SIGINT)
        try:
            system.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(system.process.pid, signal.SIGKILL)
            system.process.wait()
    return system.process.returncode


@pytest.fixture(scope="session")
def system(tmp_path_factory) -> System:
    running = start_system(tmp_path_factory.mktemp("system"))
    yield running
    stop_system(running)


@pytest.fixture
def sender() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"
