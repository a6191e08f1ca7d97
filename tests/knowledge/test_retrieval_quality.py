"""Recall floors on the held-out evaluation set (knowledge_index/eval/test_*.yml), with the committed calibration.
The floors sit a little under the measured numbers (see `./taxbot kb eval`), so a change that makes retrieval
worse fails the build."""
from __future__ import annotations

import pytest

from cli.bootstrap import cache_dir
from knowledge_index.corpus import load_corpus
from knowledge_index.evaluate import DEV_SET, FRESH_SET, TEST_SET, evaluate, load_set
from knowledge_index.index import KnowledgeIndex, build
from knowledge_index.scoring import load_calibration

# Measured 2026-12-07 on test_*.yml after the label audit (knowledge_index/README.md; 1,085 answerable, 223
# unanswerable): 0.957 / 1.000 / 0.870, 0.193 / 0.011. A third of test_e..h is long-winded questions, which are
# refused most (about 40 % of those over 25 characters).
FLOORS = {"recall@1": 0.94, "recall@5": 0.98, "unanswerable_refused": 0.85}
CEILINGS = {"answerable_refused": 0.21, "answered_wrong": 0.02}


@pytest.fixture(scope="module")
def real_index(tmp_path_factory: pytest.TempPathFactory, encoder) -> KnowledgeIndex:  # noqa: ANN001
    # the vectors `./taxbot kb build` already computed are reused; the index itself is built fresh
    directory, _ = build(load_corpus(), encoder, tmp_path_factory.mktemp("kb-real"),
                         cache=cache_dir() / "kb" / "embeddings.sqlite3")
    return KnowledgeIndex(directory, encoder)


def test_the_evaluation_sets_are_big_enough_and_label_real_entries(real_index: KnowledgeIndex) -> None:
    test = load_set(TEST_SET, set(real_index.by_id))
    dev = load_set(DEV_SET, set(real_index.by_id))
    assert len(test.answerable) >= 300 and len(test.unanswerable) >= 50
    fresh = load_set(FRESH_SET, set(real_index.by_id))
    questions = {name: {q for q, _ in labelled.answerable} | set(labelled.unanswerable)
                 for name, labelled in (("test", test), ("dev", dev), ("fresh", fresh))}
    assert not questions["test"] & questions["dev"], "dev and test share questions"
    assert not questions["fresh"] & (questions["test"] | questions["dev"]), "the fresh set repeats a question"
    own = {q for e in real_index.entries for q in e.questions}
    assert not own & {q for q, _ in test.answerable}, "test questions copied from the entries"


def test_hybrid_retrieval_holds_its_floors(real_index: KnowledgeIndex) -> None:
    calibration = load_calibration(real_index.meta.encoder)
    assert calibration.fitted_on.startswith("eval/dev_"), "calibration.json has no fit for this encoder: ./taxbot kb calibrate"
    results = evaluate(real_index, calibration, load_set(TEST_SET, set(real_index.by_id)))
    hybrid = results["hybrid"]
    print({mode: values for mode, values in results.items()})
    for name, floor in FLOORS.items():
        assert hybrid[name] >= floor, f"hybrid {name} {hybrid[name]} < {floor}"
    for name, ceiling in CEILINGS.items():
        assert hybrid[name] <= ceiling, f"hybrid {name} {hybrid[name]} > {ceiling}"
    assert hybrid["recall@1"] >= max(results["bm25"]["recall@1"], results["dense"]["recall@1"])
