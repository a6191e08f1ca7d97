"""Environment and commands shared by the processes the CLI starts."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from cli.bootstrap import ROOT
from cli.config import RuntimeConfig


def process_env(config: RuntimeConfig, **extra: str) -> dict[str, str]:
    """The environment every child process gets: project on the path, telemetry off, tokens."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        RASA_TELEMETRY_ENABLED="false",
        TF_CPP_MIN_LOG_LEVEL="2",
        TF_ENABLE_ONEDNN_OPTS="0",
        SANIC_HOST=config.host,  # rasa-sdk binds 0.0.0.0 unless told otherwise
        TAXBOT_DATA_DIR=str(config.data_path),
        TAXBOT_KB_INDEX_DIR=str(config.kb_index_path),
        TAXBOT_KB_ENCODER=config.kb_encoder,
        TAXBOT_SERVICE_URL=config.service_url,
        TAXBOT_RASA_URL=config.rasa_url,
        TAXBOT_SERVICE_TOKEN=config.service_token_value,
        TAXBOT_FALLBACK_HANDOFF_TURNS=str(config.fallback_handoff_turns),
    )
    env.update(extra)
    return env


def run(cmd: Sequence[str | Path], config: RuntimeConfig, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command in the project root with the process environment, streaming its output."""
    env = kwargs.pop("env", None) or process_env(config)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, check=check, **kwargs)


def fail(message: str, code: int = 1) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
    print(f"taxbot: {message}", file=sys.stderr)
    raise SystemExit(code)
