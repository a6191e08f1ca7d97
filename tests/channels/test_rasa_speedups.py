"""The cached jsonschema validation behaves exactly like jsonschema.validate."""
import pytest
from jsonschema import ValidationError

from channels import rasa_speedups
from rasa.core.actions.action import RemoteAction

SCHEMA = RemoteAction.action_response_format_spec()


def test_valid_action_responses_pass():
    rasa_speedups.validate({"events": [{"event": "slot", "name": "a", "value": 1}], "responses": []}, SCHEMA)


@pytest.mark.parametrize("bad", [{"events": "not a list"}, {"responses": [1, 2]}, {"events": [{"no_event_key": 1}]}])
def test_invalid_responses_raise_the_same_error_as_jsonschema(bad):
    with pytest.raises(ValidationError) as ours:
        rasa_speedups.validate(bad, SCHEMA)
    with pytest.raises(ValidationError) as theirs:
        rasa_speedups._original_validate(bad, SCHEMA)
    assert ours.value.message == theirs.value.message


def test_an_invalid_schema_is_still_refused():
    from jsonschema import SchemaError

    with pytest.raises(SchemaError):
        rasa_speedups.validate({}, {"type": "no-such-type"})


def test_installed_in_the_rasa_server_by_the_rest_channel():
    import jsonschema

    import channels.rest_input  # noqa: F401  (the import installs it)

    assert jsonschema.validate is rasa_speedups.validate


def test_sqlite_connections_use_write_ahead_logging(tmp_path):
    from sqlalchemy import create_engine, text

    rasa_speedups.sqlite_write_ahead_log()
    rasa_speedups.sqlite_write_ahead_log()  # idempotent
    engine = create_engine(f"sqlite:///{tmp_path / 'tracker.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
