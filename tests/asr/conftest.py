"""Fixtures shared by the speech tests."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

NEW_ENTRY = """
- id: disability-fund
  title: 残保金怎么申报缴纳
  questions: [残保金怎么交, 残保金什么时候申报, 残保金的缴纳标准是多少, 小微企业免征残保金吗]
  answer: 残保金即残疾人就业保障金，用人单位安排残疾人就业未达到规定比例的，按年申报缴纳残保金。
  spoken: 残保金按年申报缴纳。
"""


@pytest.fixture
def editable_kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """The speech side reads a copy of the knowledge base's entries; the returned function adds, as an editor would,
    an entry about a word the real knowledge base lacks (残保金, the disability employment security fund)."""
    from asr import lexicon

    entries = tmp_path / "entries"
    entries.mkdir()
    for path in lexicon.KB_ENTRIES.glob("*.yml"):
        (entries / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(lexicon, "KB_ENTRIES", entries)
    monkeypatch.setenv("TAXBOT_CACHE_DIR", str(tmp_path / "cache"))

    def add_entry() -> None:
        (entries / "disability_fund.yml").write_text(NEW_ENTRY, encoding="utf-8")

    return add_entry
