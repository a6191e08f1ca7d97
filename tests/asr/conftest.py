"""Fixtures shared by the speech tests."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

NEW_ENTRY = """
- id: iit-restricted-shares
  title: 个人转让限售股怎么交个税
  questions: [限售股转让要交个税吗, 卖限售股怎么交税, 限售股的原值怎么算, 限售股解禁后卖出交多少税]
  answer: 个人转让限售股取得的所得，按财产转让所得适用20%的比例税率征收个人所得税，以转让收入减除股票原值和合理税费后的余额为应纳税所得额。
  spoken: 卖限售股的所得按百分之二十交个税。
"""


@pytest.fixture
def editable_kb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """The speech side reads a copy of the knowledge base's entries; the returned function adds, as an editor would,
    an entry about a word the real knowledge base lacks (限售股, restricted shares)."""
    from asr import lexicon

    entries = tmp_path / "entries"
    entries.mkdir()
    for path in lexicon.KB_ENTRIES.glob("*.yml"):
        (entries / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(lexicon, "KB_ENTRIES", entries)
    monkeypatch.setenv("TAXBOT_CACHE_DIR", str(tmp_path / "cache"))

    def add_entry() -> None:
        (entries / "restricted_shares.yml").write_text(NEW_ENTRY, encoding="utf-8")

    return add_entry
