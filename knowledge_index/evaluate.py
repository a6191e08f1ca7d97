"""Evaluation and calibration on labelled question sets.

A set is YAML::

    answerable:
      - {q: 工资五千块要不要交个税, id: iit-basic-deduction}
      - {q: 出租厂房增值税几个点, id: vat-rate-9-percent, also: [vat-rates-overview]}
    unanswerable:
      - 上海的房产税试点对第二套房怎么收

``eval/dev_*.yml`` fit the calibration (``kb calibrate``); ``eval/test_*.yml`` and ``eval/fresh_*.yml`` are only
ever measured (``kb eval``).
They were written separately from each other and from the entries' own question lists. ``also`` names entries
whose answers state the asked fact just as fully (found when a reviewer checked, blind to which was the label, the
questions whose top entry was not the labelled one); any of them at rank 1 is a hit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from knowledge_index.index import Candidate, KnowledgeIndex
from knowledge_index.scoring import (MODES, RERANK, Calibration, Mode, ModeCalibration, features, fit_logistic,
                                     proposed_by, rank, rerank)

EVAL_DIR = Path(__file__).resolve().parent / "eval"
DEV_SET = "dev_*.yml"
TEST_SET = "test_*.yml"
FRESH_SET = "fresh_*.yml"  # harder questions, measured and never fitted (knowledge_index/README.md)
# A question's candidates with the entries that answer it (None: the knowledge base does not answer it).
Labelled = tuple[frozenset[str] | None, list[Candidate]]


@dataclass(frozen=True)
class LabelledSet:
    answerable: list[tuple[str, str]]  # (question, entry id)
    unanswerable: list[str]
    also: dict[str, tuple[str, ...]] = field(default_factory=dict)  # question → other entries that answer it fully

    def accepted(self) -> list[frozenset[str]]:
        """Per answerable question, every entry whose answer is right for it."""
        return [frozenset((gold, *self.also.get(q, ()))) for q, gold in self.answerable]


def set_files(pattern: str | Path) -> list[Path]:
    """A file, or a glob under ``eval/`` (``test_*.yml``)."""
    path = Path(pattern)
    if path.is_file():
        return [path]
    files = sorted(EVAL_DIR.glob(str(pattern)))
    if not files:
        raise FileNotFoundError(f"no evaluation set matches {pattern}")
    return files


def load_set(pattern: str | Path, known_ids: set[str] | None = None) -> LabelledSet:
    answerable: list[tuple[str, str]] = []
    unanswerable: list[str] = []
    also: dict[str, tuple[str, ...]] = {}
    for path in set_files(pattern):
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        items = raw.get("answerable") or []
        labelled = [(str(item["q"]).strip(), str(item["id"]).strip()) for item in items]
        alternatives = {str(item["q"]).strip(): tuple(str(i).strip() for i in item["also"])
                        for item in items if item.get("also")}
        if known_ids is not None:
            named = {i for _, i in labelled} | {i for ids in alternatives.values() for i in ids}
            unknown = sorted(named - known_ids)
            if unknown:
                raise ValueError(f"{path.name} labels entries that do not exist: {', '.join(unknown)}")
        answerable += labelled
        also.update(alternatives)
        unanswerable += [str(q).strip() for q in raw.get("unanswerable") or []]
    return LabelledSet(answerable, unanswerable, also)


def gather(index: KnowledgeIndex, questions: list[str]) -> list[list[Candidate]]:
    return [index.candidates(q) for q in questions]


def reread(index: KnowledgeIndex, questions: list[str], gathered: list[list[Candidate]],
           calibration: Calibration) -> list[list[Candidate]]:
    """The gathered candidates with the hybrid ranking's top few scored by the index's reranker."""
    assert index.reranker is not None
    return [rerank(c, calibration, index.reranker, q) for q, c in zip(questions, gathered)]


def metrics(
    accepted: list[frozenset[str]],
    answerable_candidates: list[list[Candidate]],
    unanswerable_candidates: list[list[Candidate]],
    calibration: Calibration,
    mode: Mode,
) -> dict[str, float]:
    """``accepted``: per answerable question, the entries that answer it (:meth:`LabelledSet.accepted`)."""
    model = calibration.for_mode(mode)
    threshold, suggestion = model.threshold, model.suggestion
    hits1 = hits5 = reciprocal = refused_answerable = wrong_answers = unsuggested_answerable = 0.0
    for golds, candidates in zip(accepted, answerable_candidates):
        ranked = rank(candidates, calibration, mode)
        ids = [s.entry_id for s in ranked]
        position = next((at for at, entry_id in enumerate(ids, start=1) if entry_id in golds), None)
        hits1 += position == 1
        hits5 += bool(position and position <= 5)
        reciprocal += 1.0 / position if position else 0.0
        top = ranked[0].probability if ranked else 0.0
        if top < threshold:
            refused_answerable += 1
        elif position != 1:
            wrong_answers += 1
        unsuggested_answerable += top < suggestion
    unanswerable_tops = [(r[0].probability if (r := rank(c, calibration, mode)) else 0.0) for c in unanswerable_candidates]
    refused_unanswerable = sum(top < threshold for top in unanswerable_tops)
    unsuggested_unanswerable = sum(top < suggestion for top in unanswerable_tops)
    n, m = max(1, len(accepted)), max(1, len(unanswerable_candidates))
    return {
        "recall@1": round(hits1 / n, 4),
        "recall@5": round(hits5 / n, 4),
        "mrr": round(reciprocal / n, 4),
        "unanswerable_refused": round(refused_unanswerable / m, 4),
        "answerable_refused": round(refused_answerable / n, 4),
        "answered_wrong": round(wrong_answers / n, 4),
        "threshold": round(threshold, 4),
        # the suggestion band: what is not even suggested (the assistant goes straight to a person)
        "unanswerable_not_suggested": round(unsuggested_unanswerable / m, 4),
        "answerable_not_suggested": round(unsuggested_answerable / n, 4),
        "suggest_threshold": round(suggestion, 4),
    }


def evaluate(index: KnowledgeIndex, calibration: Calibration, labelled: LabelledSet) -> dict[str, dict[str, float]]:
    """Metrics per mode; ``hybrid+rerank`` too when the index has a reranker and the calibration a fit for it."""
    questions = [q for q, _ in labelled.answerable]
    answerable = gather(index, questions)
    unanswerable = gather(index, labelled.unanswerable)
    accepted = labelled.accepted()
    results = {mode: metrics(accepted, answerable, unanswerable, calibration, mode) for mode in MODES}
    if index.reranker is not None and RERANK in calibration.modes:
        results[RERANK] = metrics(accepted, reread(index, questions, answerable, calibration),
                                  reread(index, labelled.unanswerable, unanswerable, calibration), calibration, RERANK)
    return results


# The answer threshold must refuse at least this share of the development set's unanswerable questions (held out,
# see _fit_mode): a taxpayer given a confident answer to a question the knowledge base does not answer is misled,
# so this comes before the cost below. The target for the hybrid model.
REFUSE_UNANSWERABLE = 0.90


def _choose_threshold(
    top_probabilities: np.ndarray, top_correct: np.ndarray, is_answerable: np.ndarray, unanswerable_cost: float = 2.0,
    refuse_unanswerable: float | None = None,
) -> float:
    """The threshold with the lowest cost on the development set. An answer from the wrong entry costs 2 (a
    taxpayer misled); a refusal costs 1 (a person takes over); an entry given for a question the knowledge base
    does not answer costs ``unanswerable_cost``: 2 for a plain answer, 1 for a suggestion, which says it may not
    be what was asked and offers a person. With ``refuse_unanswerable``, only thresholds that refuse at least that
    share of the unanswerable questions are considered (if any does). Ties go to the higher threshold (the more
    careful)."""
    candidates = np.round(np.arange(0.05, 0.96, 0.01), 2)
    unanswerable = top_probabilities[~is_answerable]
    if refuse_unanswerable is not None and len(unanswerable):
        feasible = [t for t in candidates if np.mean(unanswerable < t) >= refuse_unanswerable]
        candidates = np.array(feasible) if feasible else candidates
    best, best_cost = 0.5, float("inf")
    for threshold in candidates:
        accepted = top_probabilities >= threshold
        cost = (
            2 * np.sum(accepted & is_answerable & ~top_correct)
            + np.sum(~accepted & is_answerable)
            + unanswerable_cost * np.sum(accepted & ~is_answerable)
        )
        if cost <= best_cost:
            best, best_cost = float(threshold), float(cost)
    return best


def calibrate(index: KnowledgeIndex, labelled: LabelledSet, fitted_on: str, ambiguity_margin: float = 0.15) -> Calibration:
    """Fit every mode on ``labelled``; ``hybrid+rerank`` after ``hybrid`` (it reranks the hybrid fit's top few)
    when the index has a reranker."""
    questions = [q for q, _ in labelled.answerable]
    answerable = gather(index, questions)
    unanswerable = gather(index, labelled.unanswerable)
    accepted = labelled.accepted()
    golds: list[frozenset[str] | None] = [*accepted, *[None] * len(unanswerable)]
    modes: dict[str, ModeCalibration] = {}
    for mode in MODES:
        modes[mode] = _fit_mode(index, mode, list(zip(golds, answerable + unanswerable)))
    reranked: tuple[list[list[Candidate]], list[list[Candidate]]] | None = None
    if index.reranker is not None:
        hybrid_only = Calibration(encoder=index.meta.encoder, modes=dict(modes))
        reranked = (reread(index, questions, answerable, hybrid_only),
                    reread(index, labelled.unanswerable, unanswerable, hybrid_only))
        modes[RERANK] = _fit_mode(index, RERANK, list(zip(golds, reranked[0] + reranked[1])), modes)
    calibration = Calibration(encoder=index.meta.encoder, modes=modes, ambiguity_margin=ambiguity_margin,
                              fitted_on=fitted_on)
    for mode in MODES:  # what the fit achieves on the data it was fitted on, kept beside it
        calibration.metrics[mode] = metrics(accepted, answerable, unanswerable, calibration, mode)
    if reranked is not None:
        calibration.metrics[RERANK] = metrics(accepted, *reranked, calibration, RERANK)
    return calibration


def _fit_mode(index: KnowledgeIndex, mode: Mode, labelled_candidates: list[Labelled],
              fitted: dict[str, ModeCalibration] | None = None) -> ModeCalibration:
    """Logistic weights on every candidate the mode ranks, then the answer and suggestion thresholds on the top
    ones. ``fitted``: the modes already fitted (``hybrid+rerank`` ranks what it did not rerank by ``hybrid``).

    The thresholds are chosen on held-out probabilities (:func:`_held_out_tops`), not on the probabilities the fit
    gives the very questions it was fitted on: those are optimistic, and on them the cost curve had two nearly
    equal minima (0.50 and 0.79), so one feature more or less flipped the threshold between them."""
    bias, weights = _fit_weights(mode, labelled_candidates)
    threshold_data = _held_out_tops(index, mode, labelled_candidates, fitted)
    threshold = _choose_threshold(*threshold_data, refuse_unanswerable=REFUSE_UNANSWERABLE)
    suggest = _choose_threshold(*threshold_data, unanswerable_cost=1.0)
    return ModeCalibration(bias=round(bias, 5), weights=tuple(round(float(w), 5) for w in weights),
                           threshold=threshold, suggest_threshold=min(suggest, threshold))


def _fit_weights(mode: Mode, labelled_candidates: list[Labelled]) -> tuple[float, np.ndarray]:
    rows, labels = [], []
    for gold, candidates in labelled_candidates:
        for c in candidates:
            if proposed_by(c, mode):
                rows.append(features(c, mode))
                labels.append(1.0 if gold is not None and c.entry.id in gold else 0.0)
    return fit_logistic(np.asarray(rows, dtype=np.float64), np.asarray(labels, dtype=np.float64))


def _held_out_tops(index: KnowledgeIndex, mode: Mode, labelled_candidates: list[Labelled],
                   fitted: dict[str, ModeCalibration] | None, folds: int = 5, repeats: int = 5,
                   seed: int = 20261124) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top probability, top is right, answerable) per question, each question scored by a model fitted without
    it: ``folds``-fold cross-validation, ``repeats`` times with other splits (seeded), pooled."""
    rng = np.random.default_rng(seed)
    tops, correct, answerable = [], [], []
    for _ in range(repeats):
        order = rng.permutation(len(labelled_candidates))
        for fold in range(folds):
            held = set(order[fold::folds].tolist())
            bias, weights = _fit_weights(mode, [lc for i, lc in enumerate(labelled_candidates) if i not in held])
            model = ModeCalibration(bias=bias, weights=tuple(float(w) for w in weights), threshold=0.5)
            probe = Calibration(encoder=index.meta.encoder, modes={**(fitted or {}), mode: model})
            for i in sorted(held):
                gold, candidates = labelled_candidates[i]
                ranked = rank(candidates, probe, mode)
                tops.append(ranked[0].probability if ranked else 0.0)
                correct.append(bool(ranked) and gold is not None and ranked[0].entry_id in gold)
                answerable.append(gold is not None)
    return np.array(tops), np.array(correct), np.array(answerable)
