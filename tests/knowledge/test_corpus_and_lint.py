from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from knowledge_index.corpus import CorpusError, load_corpus
from knowledge_index.lint import lint


def _edit(entries_dir: Path, entry_id: str, **changes: object) -> None:
    path = entries_dir / "entries.yml"
    items = yaml.safe_load(path.read_text(encoding="utf-8"))
    for item in items:
        if item["id"] == entry_id:
            item.update(changes)
    path.write_text(yaml.safe_dump(items, allow_unicode=True), encoding="utf-8")


def _messages(entries_dir: Path, level: str = "error") -> list[str]:
    return [f"{f.entry} {f.message}" for f in lint(load_corpus(entries_dir), today=date(2026, 11, 23)) if f.level == level]


def test_the_fixture_corpus_is_clean(entries_dir: Path) -> None:
    assert _messages(entries_dir) == []
    warnings = _messages(entries_dir, "warning")
    assert any(w.startswith("fx-child-education-2022 已过期") for w in warnings)
    assert any(w.startswith("fx-hotline-hours 待复核") for w in warnings)


def test_schema_errors_name_the_file_and_the_entry(entries_dir: Path) -> None:
    _edit(entries_dir, "fx-child-education", questions=["只有一个问法"], category="不存在的分类")
    with pytest.raises(CorpusError) as raised:
        load_corpus(entries_dir)
    message = str(raised.value)
    assert "entries.yml fx-child-education" in message and "questions" in message and "category" in message


def test_needs_review_requires_a_note(entries_dir: Path) -> None:
    _edit(entries_dir, "fx-hotline-hours", review_note=None)
    with pytest.raises(CorpusError, match="review_note"):
        load_corpus(entries_dir)


def test_an_unreadable_file_is_reported(entries_dir: Path) -> None:
    (entries_dir / "broken.yml").write_text("- id: [unclosed\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="broken.yml"):
        load_corpus(entries_dir)


def test_missing_citation(entries_dir: Path) -> None:
    _edit(entries_dir, "fx-basic-deduction", source={"title": "中华人民共和国个人所得税法"})
    assert any("fx-basic-deduction 缺少引用" in m for m in _messages(entries_dir))


def test_one_question_in_two_entries_is_a_conflict(entries_dir: Path) -> None:
    _edit(entries_dir, "fx-child-education", questions=["个税起征点是多少", "子女教育扣除标准是多少", "小孩读书每月能抵多少个税"])
    assert any("个税起征点是多少" in m and "fx-basic-deduction" in m for m in _messages(entries_dir))


def test_near_identical_questions_are_a_conflict(entries_dir: Path) -> None:
    _edit(entries_dir, "fx-child-education", questions=["请问个税的起征点是多少呀", "子女教育扣除标准是多少", "小孩读书每月能抵多少个税"])
    assert any("几乎相同" in m for m in _messages(entries_dir))


def test_spoken_answers_must_suit_the_phone(entries_dir: Path) -> None:
    _edit(entries_dir, "fx-basic-deduction", spoken="详见 https://etax.chinatax.gov.cn 的说明。")
    _edit(entries_dir, "fx-child-education", spoken="每月扣除" * 30)
    errors = _messages(entries_dir)
    assert any(m.startswith("fx-basic-deduction 语音答复含有") for m in errors)
    assert any(m.startswith("fx-child-education 语音答复 120 字") for m in errors)


def test_corpus_digest_follows_content_not_layout(entries_dir: Path) -> None:
    before = load_corpus(entries_dir).digest()
    text = (entries_dir / "entries.yml").read_text(encoding="utf-8")
    (entries_dir / "entries.yml").write_text("# a comment\n" + text, encoding="utf-8")
    assert load_corpus(entries_dir).digest() == before
    _edit(entries_dir, "fx-basic-deduction", answer="居民个人每月减除费用5000元。这是改过的答复。")
    assert load_corpus(entries_dir).digest() != before


def test_the_real_knowledge_base_passes_lint() -> None:
    corpus = load_corpus()
    errors = [str(f) for f in lint(corpus) if f.level == "error"]
    assert errors == []
    assert len(corpus.entries) >= 200
