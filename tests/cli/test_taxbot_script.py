import subprocess

from cli.bootstrap import ROOT


def taxbot(*args):
    return subprocess.run([str(ROOT / "taxbot"), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_help_lists_every_command():
    result = taxbot("help")
    assert result.returncode == 0
    for command in ("setup", "run", "train", "chat", "nlu parse", "test", "records import"):
        assert command in result.stdout


def test_unknown_command_is_an_error_with_the_usage():
    result = taxbot("frobnicate")
    assert result.returncode == 2
    assert "未知命令" in result.stderr and "用法" in result.stderr
