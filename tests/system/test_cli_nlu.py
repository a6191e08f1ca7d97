"""`./taxbot nlu parse` with the trained model: one JSON object per input line, whatever the input."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_nlu_parse_writes_one_json_object_per_line():
    lines = "你好\n我的身份证号110101198704020880，帮我查下退税\n\n246810\n".encode() + b"\xff\xfe bad bytes\n"
    result = subprocess.run([str(ROOT / "taxbot"), "nlu", "parse"], cwd=ROOT, input=lines, capture_output=True, timeout=600)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert len(records) == 5
    for record in records:
        assert set(record) == {"text", "intent", "confidence", "intent_ranking", "entities"}
    assert records[0]["intent"] == "greet" and records[0]["confidence"] > 0.5
    assert records[0]["intent_ranking"][0]["name"] == "greet"
    assert records[1]["intent"] == "query_refund"
    (entity,) = [e for e in records[1]["entities"] if e["entity"] == "id_number"]
    assert (entity["value"], entity["valid"]) == ("110101198704020880", True)
    assert records[2] == {"text": "", "intent": None, "confidence": 0.0, "intent_ranking": [], "entities": []}
    assert records[3]["intent"] == "nlu_fallback"  # a bare code means nothing without context
    assert "\ufffd" in records[4]["text"]  # invalid UTF-8 is replaced, not fatal
