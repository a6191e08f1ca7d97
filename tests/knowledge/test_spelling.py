"""Typos and homophones of domain words in a typed question are corrected before retrieval, but only towards words
the knowledge base uses (knowledge_index/spelling.py)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from knowledge_index import spelling
from knowledge_index.analysis import Analyzer
from knowledge_index.index import KnowledgeIndex
from knowledge_index.scoring import load_calibration, rank

ANALYZER = Analyzer()
VOCABULARY = {"发票", "丢失", "税务局"}


def test_a_correction_is_kept_when_it_gives_a_word_the_knowledge_base_uses() -> None:
    def corrector(text: str) -> str:
        return text.replace("发漂", "发票")

    assert spelling.correct("纸质发漂丢了怎么办", VOCABULARY, ANALYZER.spans, corrector) == "纸质发票丢了怎么办"


def test_a_correction_towards_a_word_no_entry_uses_is_dropped() -> None:
    # the recogniser's corrector would hear 再降点 as 再见点; no entry says 再见, so the question stays as typed
    def corrector(text: str) -> str:
        return text.replace("再降", "再见").replace("发漂", "发票")

    corrected = spelling.correct("等明年契税再降点再买，发漂丢了", VOCABULARY, ANALYZER.spans, corrector)
    assert corrected == "等明年契税再降点再买，发票丢了"


def test_a_one_character_word_does_not_justify_a_correction() -> None:
    def corrector(text: str) -> str:
        return text.replace("能绑", "能帮")

    assert spelling.correct("个税退税能绑境外的银行卡吗", {"帮", "银行卡"}, ANALYZER.spans, corrector) == \
        "个税退税能绑境外的银行卡吗"


def test_a_corrector_that_fails_or_changes_the_length_leaves_the_question_alone(caplog: pytest.LogCaptureFixture) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("lexicon missing")

    with caplog.at_level(logging.ERROR, logger="knowledge_index.spelling"):
        assert spelling.correct("纸质发漂丢了", VOCABULARY, ANALYZER.spans, broken) == "纸质发漂丢了"
    assert "kb.spelling_failed" in caplog.text
    assert spelling.correct("纸质发漂丢了", VOCABULARY, ANALYZER.spans, lambda t: t + "吗") == "纸质发漂丢了"


@pytest.mark.parametrize("asked, searched", [
    ("我想开张发票", "我想开发票"),  # not 开张, a shop's opening
    ("能不能给我开一张专票", "能不能给我开专票"),
    ("帮我开个发票", "帮我开发票"),
    ("开张增值税专用发票要什么", "开增值税专用发票要什么"),
    ("开张营业要交什么税", "开张营业要交什么税"),
    ("开个税票", "开个税票"),  # 个税
    ("给个体户开个体户的发票", "给个体户开个体户的发票"),
    ("开个人发票", "开个人发票"),
])
def test_a_measure_word_between_issuing_and_the_invoice_is_dropped(asked: str, searched: str) -> None:
    assert spelling.drop_measure_words(asked) == searched


def test_the_index_corrects_with_the_speech_corrector_and_its_own_vocabulary(small_index: KnowledgeIndex) -> None:
    assert small_index.corrected("现在增直税的起征点是多少") == "现在增值税的起征点是多少"
    assert small_index.corrected("个人所得税起征点") == "个人所得税起征点"  # right as typed: untouched


def test_a_misspelt_question_finds_what_the_spelt_one_finds(small_index: KnowledgeIndex) -> None:
    calibration = load_calibration(small_index.meta.encoder)
    typed = rank(small_index.candidates("小规摸纳税人每月销售额多少以下免增直税"), calibration)
    spelt = rank(small_index.candidates("小规模纳税人每月销售额多少以下免增值税"), calibration)
    assert typed[0].entry_id == spelt[0].entry_id == "fx-small-scale-exemption"
    assert np.isclose(typed[0].probability, spelt[0].probability)


def test_a_known_vector_means_the_question_is_taken_as_given(small_index: KnowledgeIndex) -> None:
    typed = "小规摸纳税人免增直税"
    vector = small_index.encoder.encode_queries([typed])
    as_given = {c.entry.id: c.lexical for c in small_index.candidates(typed, vector=vector)}
    corrected = {c.entry.id: c.lexical for c in small_index.candidates(typed)}
    assert as_given["fx-small-scale-exemption"] < corrected["fx-small-scale-exemption"]
