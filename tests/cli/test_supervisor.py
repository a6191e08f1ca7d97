import json
import socket
import stat

import pytest

from cli.config import RuntimeConfig
from cli.supervisor import components, port_in_use, render_endpoints, run_all


def config(tmp_path, **values) -> RuntimeConfig:
    return RuntimeConfig(_env_file=None, data_dir=tmp_path, **values)


def test_endpoints_file_is_private_and_points_at_the_actions(tmp_path):
    path = render_endpoints(config(tmp_path, actions_port=6055, tracker_store_url="postgresql://u:pw@h/db"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    endpoints = json.loads(path.read_text())
    assert endpoints["action_endpoint"]["url"] == "http://127.0.0.1:6055/webhook"
    assert endpoints["tracker_store"]["password"] == "pw"


def test_every_process_listens_on_loopback(tmp_path):
    for part in components(config(tmp_path), tmp_path / "model.tar.gz"):
        assert part.health_url.startswith("http://127.0.0.1:")
        command = " ".join(part.command)
        assert "0.0.0.0" not in command
    cfg = config(tmp_path)
    rasa = components(cfg, tmp_path / "m.tar.gz")[-1]
    assert "--enable-api" in rasa.command and "cli.rasa_server" in rasa.command
    assert cfg.rasa_token_value not in " ".join(rasa.command)  # the token is not on the command line


def test_a_busy_port_stops_the_start_with_a_clear_message(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        with pytest.raises(SystemExit) as exited:
            run_all(config(tmp_path, service_port=port), tmp_path / "m.tar.gz")
    assert exited.value.code == 2
    assert f"服务应用 {port}" in capsys.readouterr().err
