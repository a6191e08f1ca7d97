"""What similarity cannot see (signals.py): the tax a question names, the rate it states, a question about the
future; and that the hybrid model, as fitted by `kb calibrate`, holds them against an entry."""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from knowledge_index import signals
from knowledge_index.index import KnowledgeIndex
from knowledge_index.scoring import FEATURES, UNCALIBRATED, Calibration, load_calibration, rank

TODAY = date(2026, 11, 23)


def test_the_longest_tax_name_wins_and_homophones_count() -> None:
    assert signals.taxes_named("个人卖住房要交土地增值税吗") == {"土地增值税"}
    assert signals.taxes_named("卖房子交增值税还是土地增值税") == {"增值税", "土地增值税"}
    assert signals.taxes_named("各税起征点多少") == {"个人所得税"}  # ASR homophone
    assert signals.taxes_named("增直税税率有几档") == {"增值税"}
    assert signals.taxes_named("城镇土地使用税怎么算") == {"城镇土地使用税"}
    assert signals.taxes_named("附加税怎么交") == {"附加税费"}
    # 关税 inside 相关税费 / 有关税收 is not the customs duty; a question naming no tax names none
    assert signals.taxes_named("卖房的相关税费和有关税收优惠") == frozenset()
    assert signals.taxes_named("进口汽车的关税是多少") == {"关税"}


def test_a_tax_mismatch_needs_an_entry_about_another_tax() -> None:
    vat, land = frozenset({"增值税"}), frozenset({"土地增值税"})
    assert signals.tax_mismatch(land, vat) == 1.0
    assert signals.tax_mismatch(vat, vat) == 0.0
    assert signals.tax_mismatch(vat | land, vat) == 0.5
    assert signals.tax_mismatch(frozenset(), vat) == 0.0  # the question names no tax
    assert signals.tax_mismatch(land, frozenset()) == 0.0  # a procedure entry that names no tax may hold for any
    # a group is covered by its members and the members by the group
    assert signals.tax_mismatch(frozenset({"附加税费"}), frozenset({"城市维护建设税"})) == 0.0
    assert signals.tax_mismatch(frozenset({"教育费附加"}), frozenset({"附加税费"})) == 0.0


def test_rates_are_read_in_their_usual_spellings() -> None:
    assert signals.rates("是不是按4%交，还是3个点，百分之12.5，千分之五写成0.5‰") == {4.0, 3.0, 12.5, 0.05}
    assert signals.rates("月销售额10万元以下") == frozenset()
    assert signals.rate_mismatch(frozenset({4.0}), frozenset({12.0, 4.0})) == 0.0
    assert signals.rate_mismatch(frozenset({4.0}), frozenset({12.0})) == 1.0
    assert signals.rate_mismatch(frozenset(), frozenset({12.0})) == 0.0


def test_a_prediction_or_a_coming_year_is_the_future() -> None:
    assert signals.future("你觉得印花税税率明年会下调吗", TODAY)
    assert signals.future("契税优惠会不会取消", TODAY)
    assert signals.future("2029年的个税汇算什么时候办", TODAY)
    assert not signals.future("2026年的个税汇算什么时候办", TODAY)
    assert not signals.future("今年没扣完的房贷利息明年还能接着扣吗", TODAY)
    assert not signals.future("晚报了会不会罚款", TODAY)


def test_candidates_carry_the_signals(small_index: KnowledgeIndex) -> None:
    def candidate(question: str, entry_id: str):  # noqa: ANN202
        return next(c for c in small_index.candidates(question, TODAY) if c.entry.id == entry_id)

    right = candidate("小规模纳税人月销售额不到10万免增值税吗", "fx-small-scale-exemption")
    wrong = candidate("小规模纳税人月销售额不到10万免消费税吗", "fx-small-scale-exemption")
    assert right.tax_mismatch == 0.0 and wrong.tax_mismatch == 1.0
    assert candidate("个税起征点是多少", "fx-basic-deduction").tax_mismatch == 0.0
    assert candidate("小规模纳税人是不是按3%交增值税", "fx-small-scale-exemption").rate_mismatch == 1.0
    assert candidate("2028年个税起征点会不会提高", "fx-basic-deduction").future == 1.0
    unknown = candidate("个税起征点是多少呢嘎嘎哇咿", "fx-basic-deduction").unknown
    assert 0.0 < unknown < 1.0 and candidate("个税起征点是多少", "fx-basic-deduction").unknown == 0.0


def test_a_question_naming_another_tax_is_less_likely_answered_by_the_entry(small_index: KnowledgeIndex) -> None:
    calibration = Calibration(encoder=small_index.meta.encoder, modes=dict(UNCALIBRATED))
    right, wrong = "小规模纳税人月销售额不到10万免增值税吗", "小规模纳税人月销售额不到10万免消费税吗"
    p = {q: next(s.probability for s in rank(small_index.candidates(q, TODAY), calibration)
                 if s.entry_id == "fx-small-scale-exemption") for q in (right, wrong)}
    assert p[wrong] < p[right]


def test_the_fitted_model_holds_a_mismatch_against_the_entry(small_index: KnowledgeIndex) -> None:
    """The committed calibration (fitted on dev) gives the same candidate a lower probability when the question
    names a tax, or states a rate, the entry does not, or asks about the future."""
    calibration = load_calibration(small_index.meta.encoder)
    assert calibration.fitted_on.startswith("eval/dev_"), "calibration.json has no fit for this encoder"
    hybrid = calibration.for_mode("hybrid")
    base = next(c for c in small_index.candidates("小规模纳税人月销售额不到10万免增值税吗", TODAY)
                if c.entry.id == "fx-small-scale-exemption")
    for signal in ("tax_mismatch", "rate_mismatch", "future"):
        assert hybrid.probability(replace(base, **{signal: 1.0}), "hybrid") < hybrid.probability(base, "hybrid"), signal


def test_a_calibration_fitted_for_other_features_is_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stale = {"modes": {"hybrid": {"bias": -1.0, "weights": [1.0] * (len(FEATURES["hybrid"]) - 4), "threshold": 0.5},
                       "dense": {"bias": -1.0, "weights": [1.0], "threshold": 0.5},
                       "bm25": {"bias": -1.0, "weights": [1.0], "threshold": 0.5}},
             "fitted_on": "eval/dev_*.yml"}
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"some-encoder": stale}), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        calibration = load_calibration("some-encoder", path)
    assert calibration.modes == UNCALIBRATED and "stale fit for hybrid" in caplog.text
