import os
import subprocess
import sys

from cli import bootstrap
from cli.bootstrap import ROOT


def test_missing_pythons_are_named_in_the_error(tmp_path):
    env = {
        "PATH": "/nonexistent",
        "HOME": str(tmp_path),
        "PYENV_ROOT": str(tmp_path / "no-pyenv"),
        "TAXBOT_PYTHON310": str(tmp_path / "no-python3.10"),
        "TAXBOT_CACHE_DIR": str(tmp_path / "cache"),
    }
    result = subprocess.run([sys.executable, "-m", "cli.bootstrap"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert "python3.10" in result.stderr and "Rasa" in result.stderr


def test_override_must_be_the_right_version(monkeypatch):
    monkeypatch.setenv("TAXBOT_PYTHON310", sys.executable)  # a 3.11 interpreter
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("PYENV_ROOT", "/nonexistent")
    if os.path.exists("/usr/bin/python3.10") or os.path.exists("/usr/local/bin/python3.10"):
        return  # this machine has a system 3.10 that would (rightly) be found
    assert bootstrap.find_python("3.10") is None
    assert bootstrap.find_python("3.11") is None or bootstrap.find_python("3.11").endswith("3.11")


def test_venvs_are_keyed_by_lock_file_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("TAXBOT_CACHE_DIR", str(tmp_path))
    spec = bootstrap.SPECS[1]
    first = bootstrap.venv_path(spec, sys.executable)
    assert first.parent == tmp_path / "venvs" and first.name.startswith("service-")
    lock = tmp_path / "other.lock"
    lock.write_text(spec.lock.read_text() + "\nsix==1.16.0\n")
    changed = bootstrap.VenvSpec(spec.name, spec.version, lock, spec.why)
    assert bootstrap.venv_path(changed, sys.executable) != first
