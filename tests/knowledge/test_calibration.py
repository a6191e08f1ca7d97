"""How `kb calibrate` picks the answer threshold: on held-out probabilities, refusing enough unanswerable questions
first, then at the lowest cost."""
from __future__ import annotations

import numpy as np
import pytest

from knowledge_index.evaluate import LabelledSet, _choose_threshold, _held_out_tops, calibrate, load_set, metrics
from knowledge_index.index import KnowledgeIndex
from knowledge_index.scoring import load_calibration, rank


def test_the_refusal_target_comes_before_the_cost() -> None:
    # ten answerable questions answered right at 0.6, five unanswerable ones scoring 0.3 … 0.7
    tops = np.array([0.6] * 10 + [0.3, 0.4, 0.5, 0.65, 0.7])
    correct = np.array([True] * 10 + [False] * 5)
    answerable = np.array([True] * 10 + [False] * 5)
    cheapest = _choose_threshold(tops, correct, answerable)
    assert cheapest <= 0.6  # answering all ten costs less than refusing them
    careful = _choose_threshold(tops, correct, answerable, refuse_unanswerable=0.9)
    assert 0.7 < careful  # only above 0.7 are nine tenths of the unanswerable ones (all five) refused
    # three of the five refused from 0.51 up; 0.51 … 0.60 still answer all ten and cost the same: ties go higher
    assert _choose_threshold(tops, correct, answerable, refuse_unanswerable=0.6) == 0.6


def test_an_unreachable_refusal_target_falls_back_to_the_cost() -> None:
    tops = np.array([0.6, 0.6, 0.99])
    correct = np.array([True, True, False])
    answerable = np.array([True, True, False])
    assert _choose_threshold(tops, correct, answerable, refuse_unanswerable=0.9) == \
        _choose_threshold(tops, correct, answerable)


def test_every_question_is_scored_by_a_fit_that_did_not_see_it(small_index: KnowledgeIndex) -> None:
    labelled = [(frozenset({"fx-basic-deduction"}), small_index.candidates("工资五千块要交个税吗")),
                (frozenset({"fx-small-scale-exemption"}), small_index.candidates("小规模每个月卖十万以内免不免增值税")),
                (frozenset({"fx-hotline-hours"}), small_index.candidates("12366几点下班")),
                (frozenset({"fx-child-education"}), small_index.candidates("孩子上小学每月扣多少")),
                (None, small_index.candidates("护照过期了怎么换")),
                (None, small_index.candidates("车船税怎么交"))]
    tops, correct, answerable = _held_out_tops(small_index, "hybrid", labelled, None, folds=3, repeats=2)
    assert len(tops) == len(correct) == len(answerable) == 2 * len(labelled)
    assert answerable.sum() == 2 * 4
    again = _held_out_tops(small_index, "hybrid", labelled, None, folds=3, repeats=2)
    assert np.array_equal(tops, again[0])  # seeded: the same calibration from the same data


def test_calibrate_stores_thresholds_it_can_explain(small_index: KnowledgeIndex) -> None:
    labelled = LabelledSet(
        answerable=[("工资五千块要交个税吗", "fx-basic-deduction"), ("小规模每个月卖十万以内免不免增值税", "fx-small-scale-exemption"),
                    ("12366几点下班", "fx-hotline-hours"), ("孩子上小学每月扣多少", "fx-child-education"),
                    ("起征点是多少", "fx-basic-deduction"), ("热线电话什么时候有人接", "fx-hotline-hours")],
        unanswerable=["护照过期了怎么换", "车船税怎么交", "股票分红怎么交税"],
    )
    calibration = calibrate(small_index, labelled, fitted_on="test")
    hybrid = calibration.for_mode("hybrid")
    assert 0.05 <= hybrid.suggestion <= hybrid.threshold <= 0.95


def test_an_entry_named_in_also_counts_as_a_hit(small_index: KnowledgeIndex, tmp_path) -> None:  # noqa: ANN001
    """A question two entries answer equally is a hit whichever of them comes first; any other entry is not."""
    question = "工资五千块要交个税吗"
    top = rank(small_index.candidates(question), load_calibration(small_index.meta.encoder))[0].entry_id
    other = next(e.id for e in small_index.entries if e.id != top)
    path = tmp_path / "set.yml"
    path.write_text(f"answerable:\n  - {{id: {other}, also: [{top}], q: {question}}}\n  - {{id: {other}, q: {question}。}}\n"
                    "unanswerable:\n  - 护照过期了怎么换\n", encoding="utf-8")
    labelled = load_set(path, set(small_index.by_id))
    assert labelled.accepted() == [frozenset({other, top}), frozenset({other})]
    candidates = [small_index.candidates(q) for q, _ in labelled.answerable]
    result = metrics(labelled.accepted(), candidates, [small_index.candidates("护照过期了怎么换")],
                     load_calibration(small_index.meta.encoder), "hybrid")
    assert result["recall@1"] == 0.5
    with pytest.raises(ValueError, match="no-such-entry"):
        path.write_text(f"answerable:\n  - {{id: {other}, also: [no-such-entry], q: {question}}}\n", encoding="utf-8")
        load_set(path, set(small_index.by_id))
