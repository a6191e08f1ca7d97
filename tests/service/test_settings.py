"""Settings are validated at start-up: secrets required, placeholders refused, combinations checked."""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.app import create_app
from service.settings import Settings, get_settings
from service.sms import HttpSmsSender, LogSmsSender, make_sms_sender

STRONG = "Kq8vZ2pL9xW4mN7rT5aa"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No TAXBOT_* variables and no .env from the developer's shell leak in."""
    for name in [n for n in os.environ if n.startswith("TAXBOT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_missing_token_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValidationError, match="TAXBOT_SERVICE_TOKEN is required"):
        Settings()


def test_app_refuses_to_start_without_a_token() -> None:
    with pytest.raises(ValidationError, match="TAXBOT_SERVICE_TOKEN is required"):
        create_app()


@pytest.mark.parametrize("token", ["", "short-token-1"])
def test_short_token_is_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="TAXBOT_SERVICE_TOKEN"):
        Settings(service_token=token)


@pytest.mark.parametrize("token", ["changeme-changeme-2024", "my-super-secret-value", "your-api-token-goes-here",
                                   "CHANGEME1234567890", "aaaaaaaaaaaaaaaaaaaaaaaa"])
def test_placeholder_token_is_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="looks like a placeholder") as info:
        Settings(service_token=token)
    assert token not in str(info.value)  # the rejected value is not echoed


def test_strong_token_from_env_and_dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text(f"TAXBOT_SERVICE_TOKEN={STRONG}\nTAXBOT_OTP_TTL_SECONDS=120\nUNRELATED=1\n")
    settings = get_settings()
    assert settings.service_token.get_secret_value() == STRONG
    assert STRONG not in repr(settings)
    assert settings.otp_ttl_seconds == 120
    assert get_settings() is settings  # cached
    monkeypatch.setenv("TAXBOT_OTP_TTL_SECONDS", "60")  # the environment wins over .env
    assert Settings().otp_ttl_seconds == 60


def test_defaults_and_database_url_from_data_dir(tmp_path: Path) -> None:
    settings = Settings(service_token=STRONG, data_dir=tmp_path / "state")
    assert settings.database_url == f"sqlite:///{tmp_path / 'state'}/taxbot.db"
    assert (tmp_path / "state").is_dir()
    assert (settings.sms_sender, settings.otp_ttl_seconds, settings.otp_max_attempts, settings.grant_ttl_seconds,
            settings.seed_demo_data, settings.verification_rate_limit, settings.otp_fixed_code) == \
           ("log", 300, 5, 1800, True, 5, None)
    assert Settings(service_token=STRONG, database_url="postgresql://db/x").database_url == "postgresql://db/x"


def test_http_sender_needs_url_and_key() -> None:
    with pytest.raises(ValidationError, match="TAXBOT_SMS_HTTP_URL and TAXBOT_SMS_HTTP_KEY"):
        Settings(service_token=STRONG, sms_sender="http", sms_http_url="https://sms.example/send")
    settings = Settings(service_token=STRONG, sms_sender="http", sms_http_url="https://sms.example/send",
                        sms_http_key="k" * 20)
    assert isinstance(make_sms_sender(settings), HttpSmsSender)
    assert isinstance(make_sms_sender(Settings(service_token=STRONG)), LogSmsSender)


@pytest.mark.parametrize("code", ["12345", "1234567", "12a456"])
def test_fixed_code_must_be_six_digits(code: str) -> None:
    with pytest.raises(ValidationError, match="6 digits"):
        Settings(service_token=STRONG, otp_fixed_code=code)


def test_empty_fixed_code_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXBOT_OTP_FIXED_CODE", "")
    assert Settings(service_token=STRONG).otp_fixed_code is None


def test_fixed_code_is_honoured_only_with_the_log_sender(caplog: pytest.LogCaptureFixture) -> None:
    assert Settings(service_token=STRONG, otp_fixed_code="123456").otp_fixed_code == "123456"
    with caplog.at_level(logging.WARNING):
        settings = Settings(service_token=STRONG, otp_fixed_code="123456", sms_sender="http",
                            sms_http_url="https://sms.example/send", sms_http_key="k" * 20)
    assert settings.otp_fixed_code is None
    assert "otp_fixed_code_ignored" in caplog.text


@pytest.mark.parametrize("field", ["otp_ttl_seconds", "otp_max_attempts", "grant_ttl_seconds", "verification_rate_limit"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValidationError, match="positive"):
        Settings(service_token=STRONG, **{field: 0})


def test_env_booleans_are_parsed_not_truthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAXBOT_SEED_DEMO_DATA", "false")
    assert Settings(service_token=STRONG).seed_demo_data is False
