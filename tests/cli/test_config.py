import pytest
from pydantic import ValidationError

from cli.config import RuntimeConfig


def config(**values) -> RuntimeConfig:
    return RuntimeConfig(_env_file=None, **values)


def test_default_tracker_store_is_sqlite_in_the_data_dir(tmp_path):
    store = config(data_dir=tmp_path).tracker_store()
    assert store == {"type": "SQL", "dialect": "sqlite", "db": str(tmp_path / "rasa_tracker.db")}


def test_postgresql_url_becomes_rasa_fields():
    store = config(tracker_store_url="postgresql://rasa:p%40ss@db.internal:5433/tracker").tracker_store()
    assert store == {
        "type": "SQL", "dialect": "postgresql", "url": "db.internal", "port": 5433,
        "db": "tracker", "username": "rasa", "password": "p@ss",
    }


def test_unknown_tracker_store_is_refused():
    with pytest.raises(ValueError):
        config(tracker_store_url="mongodb://x/y").tracker_store()


@pytest.mark.parametrize("token", ["changeme", "secret", "short"])
def test_placeholder_or_short_tokens_are_refused(token):
    with pytest.raises(ValidationError):
        config(service_token=token)


def test_tokens_are_generated_once_per_run_when_unset():
    cfg = config()
    assert cfg.service_token_value == cfg.service_token_value
    assert len(cfg.service_token_value) >= 24
    assert config(service_token="k3J9-qLw8Zt2vBn5").service_token_value == "k3J9-qLw8Zt2vBn5"


def test_environment_variables_use_the_prefix(monkeypatch):
    monkeypatch.setenv("TAXBOT_RASA_PORT", "6005")
    monkeypatch.setenv("TAXBOT_HOST", "127.0.0.2")
    cfg = RuntimeConfig(_env_file=None)
    assert cfg.rest_webhook_url == "http://127.0.0.2:6005/webhooks/rest/webhook"


def test_fallback_turns_must_leave_room_for_the_offer():
    with pytest.raises(ValidationError):
        config(fallback_handoff_turns=1)
