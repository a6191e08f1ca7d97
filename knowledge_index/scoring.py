"""Ranking and confidence: how the two retrievers' scores become one calibrated probability.

Each candidate entry gets features: dense cosine, lexical match share, the reciprocal of its rank in each
retriever (the signal reciprocal-rank fusion uses), and what the similarities cannot see (``signals.py``): a tax
or a rate the question names that the entry does not, words no entry uses, a question about the future. A
logistic model turns them into P(entry answers the query); its weights and the answer threshold are fitted by
``./taxbot kb calibrate`` on the development set (``knowledge_index/eval/dev_*.yml``), never on the evaluation set,
and stored per encoder in ``calibration.json``.
The same module scores "dense only" and "BM25 only" (one feature each) so ``kb eval`` can compare them.

``hybrid+rerank`` (when the index has a reranker, ``reranker.py``): the hybrid ranking's top few candidates are
read again by the cross-encoder, and a second logistic model weighs the hybrid log-odds against the reranker's;
the candidates below them keep their hybrid order, under the reranked ones.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

import numpy as np

from knowledge_index.index import Candidate

if TYPE_CHECKING:
    from knowledge_index.reranker import Reranker

logger = logging.getLogger(__name__)

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"
Mode = Literal["hybrid", "dense", "bm25", "hybrid+rerank"]
MODES: tuple[Mode, ...] = ("bm25", "dense", "hybrid")
RERANK: Mode = "hybrid+rerank"  # measured and calibrated besides MODES when the index has a reranker
FEATURES: dict[str, tuple[str, ...]] = {
    "hybrid": ("dense", "lexical", "dense_rr", "lexical_rr", "coverage", "dense_margin", "answer",
               "tax_mismatch", "rate_mismatch", "unknown", "future"),
    "dense": ("dense",),
    "bm25": ("lexical",),
    RERANK: ("hybrid", "rerank"),
}


def features(candidate: Candidate, mode: Mode) -> list[float]:
    values = {
        "dense": candidate.dense,
        "lexical": candidate.lexical,
        "dense_rr": 1.0 / candidate.dense_rank if candidate.dense_rank else 0.0,
        "lexical_rr": 1.0 / candidate.lexical_rank if candidate.lexical_rank else 0.0,
        "coverage": candidate.coverage,
        "dense_margin": candidate.dense_margin,
        "answer": candidate.answer,
        "tax_mismatch": candidate.tax_mismatch,
        "rate_mismatch": candidate.rate_mismatch,
        "unknown": candidate.unknown,
        "future": candidate.future,
        "hybrid": candidate.hybrid or 0.0,
        "rerank": candidate.rerank or 0.0,
    }
    return [values[name] for name in FEATURES[mode]]


@dataclass(frozen=True)
class ModeCalibration:
    bias: float
    weights: tuple[float, ...]
    threshold: float  # answer when the top entry's probability reaches this
    suggest_threshold: float | None = None  # below `threshold` but at least this: offer the entry as a suggestion

    @property
    def suggestion(self) -> float:
        return self.threshold if self.suggest_threshold is None else min(self.suggest_threshold, self.threshold)

    def log_odds(self, candidate: Candidate, mode: Mode) -> float:
        return self.bias + sum(w * x for w, x in zip(self.weights, features(candidate, mode)))

    def probability(self, candidate: Candidate, mode: Mode) -> float:
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, self.log_odds(candidate, mode)))))


# Hand-set starting points, used only until `kb calibrate` has fitted the configured encoder.
UNCALIBRATED = {
    "hybrid": ModeCalibration(bias=-14.0, weights=(12.0, 6.0, 1.0, 1.0, 1.0, 10.0, 1.0, -2.0, -1.0, -2.0, -2.0),
                              threshold=0.5),
    "dense": ModeCalibration(bias=-17.0, weights=(20.0,), threshold=0.5),
    "bm25": ModeCalibration(bias=-4.0, weights=(8.0,), threshold=0.5),
    RERANK: ModeCalibration(bias=0.0, weights=(0.5, 0.5), threshold=0.5),
}


@dataclass(frozen=True)
class Calibration:
    encoder: str
    modes: dict[str, ModeCalibration]
    ambiguity_margin: float = 0.15
    fitted_on: str = "uncalibrated defaults"
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def for_mode(self, mode: Mode) -> ModeCalibration:
        return self.modes[mode]


def load_calibration(encoder: str, path: Path = CALIBRATION_FILE) -> Calibration:
    """The fitted calibration for ``encoder``; the uncalibrated defaults (with a warning) if there is none."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8")).get(encoder)
    except FileNotFoundError:
        stored = None
    stale = [name for name, m in (stored or {}).get("modes", {}).items()
             if name in FEATURES and len(m["weights"]) != len(FEATURES[name])]
    if not stored or stale:  # fitted for another feature set: its weights would be read against the wrong features
        logger.warning("kb.uncalibrated encoder=%s%s: run ./taxbot kb calibrate", encoder,
                       f" (stale fit for {', '.join(stale)})" if stale else "")
        return Calibration(encoder=encoder, modes=dict(UNCALIBRATED))
    modes = {
        name: ModeCalibration(bias=m["bias"], weights=tuple(m["weights"]), threshold=m["threshold"],
                              suggest_threshold=m.get("suggest_threshold"))
        for name, m in stored["modes"].items()
    }
    return Calibration(
        encoder=encoder,
        modes=modes,
        ambiguity_margin=stored.get("ambiguity_margin", 0.15),
        fitted_on=stored.get("fitted_on", ""),
        metrics=stored.get("metrics", {}),
    )


def save_calibration(calibration: Calibration, path: Path = CALIBRATION_FILE) -> None:
    try:
        everything = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        everything = {}
    everything[calibration.encoder] = {
        "modes": {name: asdict(m) for name, m in calibration.modes.items()},
        "ambiguity_margin": calibration.ambiguity_margin,
        "fitted_on": calibration.fitted_on,
        "metrics": calibration.metrics,
    }
    path.write_text(json.dumps(everything, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    probability: float

    @property
    def entry_id(self) -> str:
        return self.candidate.entry.id


def proposed_by(candidate: Candidate, mode: Mode) -> bool:
    """Whether the retriever(s) of ``mode`` proposed this candidate (a single-retriever mode sees only its own)."""
    if mode == "dense":
        return candidate.dense_rank is not None
    if mode == "bm25":
        return candidate.lexical_rank is not None
    if mode == RERANK:
        return candidate.rerank is not None
    return True


def rank(candidates: Sequence[Candidate], calibration: Calibration, mode: Mode = "hybrid") -> list[Scored]:
    """Candidates best first. Single-retriever modes rank by their own score only. In ``hybrid+rerank`` the
    reranked candidates (see :func:`rerank`) come first; the others follow in hybrid order, their probability
    capped at the lowest reranked one.

    A question asked exactly as one of an entry's own questions (``Candidate.asked``) is that entry's, with
    probability 1: an editor who adds a phrasing expects it answered. The model cannot learn this from the
    evaluation sets, whose questions are never the entries' own, and for a short canonical question with close
    neighbours it gave less than the threshold (个税起征点是多少: 0.78)."""
    model = calibration.for_mode(mode)
    scored = [Scored(c, 1.0 if c.asked else model.probability(c, mode)) for c in candidates if proposed_by(c, mode)]
    scored.sort(key=lambda s: (-s.probability, -s.candidate.dense, s.entry_id))
    if mode == RERANK:
        floor = scored[-1].probability if scored else 1.0
        rest = rank([c for c in candidates if c.rerank is None], calibration, "hybrid")
        scored += [Scored(s.candidate, min(s.probability, floor)) for s in rest]
    return scored


def rerank(candidates: Sequence[Candidate], calibration: Calibration, reranker: Reranker, question: str,
           top: int | None = None) -> list[Candidate]:
    """The candidates, the hybrid ranking's ``top`` best read by the reranker (``hybrid`` and ``rerank`` set)."""
    from knowledge_index.reranker import TOP

    hybrid = calibration.for_mode("hybrid")
    best = rank(candidates, calibration, "hybrid")[: top or TOP]
    scores = reranker.score(question, [s.candidate.entry for s in best])
    reread = {s.entry_id: replace(s.candidate, hybrid=hybrid.log_odds(s.candidate, "hybrid"), rerank=float(r))
              for s, r in zip(best, scores)}
    return [reread.get(c.entry.id, c) for c in candidates]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iterations: int = 50) -> tuple[float, np.ndarray]:
    """Logistic regression by Newton's method (a few features, a few thousand rows): (bias, weights)."""
    design = np.hstack([np.ones((len(x), 1)), x])
    theta = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ theta, -50, 50)))
        gradient = design.T @ (p - y) + l2 * np.r_[0.0, theta[1:]]
        hessian = (design * (p * (1 - p))[:, None]).T @ design + l2 * np.diag(np.r_[0.0, np.ones(len(theta) - 1)])
        step = np.linalg.solve(hessian + 1e-9 * np.eye(len(theta)), gradient)
        theta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(theta[0]), theta[1:]
