"""Choosing among Whisper's best hypotheses with a language model of the domain.

Whisper base hears tax terms as homophones (享受 → 想胜利, 契税 → 汽水), and its beam search often holds the right
text a few places down: on the development set (``asr/dev``: knowledge-base questions, 16 kHz and 8 kHz G.711), the
best of the beam's ten hypotheses has a CER of 11.4 % where the first has 17.1 %. So the engine asks CTranslate2
for the whole beam (``num_hypotheses``) and takes the hypothesis with the best

    acoustic log-probability (summed over its tokens) + LM_WEIGHT × domain log-probability + LENGTH_BONUS × characters

where the domain log-probability is that of the *normalised* text (numbers, tax terms: what the caller is taken to
have said) under a character 4-gram model of the domain's own text: the knowledge base (titles, questions, answers,
spoken variants) and the NLU examples, the NLU data's deliberate misspellings replaced by their right spelling (the
same sources as the correction lexicon, ``asr/lexicon.py``). Characters rather than words: a homophone that is a
word of its own (汽水) is unlikely after 免 or before 怎么交 only at the character level.

The weights were chosen on the development set with a lexicon and model that had not read its questions
(``python -m asr.dev.nbest_dev``: CER 17.1 % → 12.5 %, both conditions, ten hypotheses; eight: 17.0 → 12.8 %), on a
plateau (LM_WEIGHT 0.4–0.8 with LENGTH_BONUS 0–1.5 all within 12.4–12.6 %); the evaluation set (``asr/eval``) was
only measured, afterwards: 12.8 / 16.1 % → 6.7 / 11.9 % at 16 kHz / 8 kHz G.711 (``./taxbot bench --only speech``).

The model is about 145,000 counts (25 MB), built in one to two seconds when the engine first loads, beside the
Whisper model; scoring a hypothesis takes about 0.05 ms, normalising it (which the choice needs) about 0.4 ms.
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from asr.lexicon import SourceWatch

logger = logging.getLogger(__name__)

LM_WEIGHT = 0.4
LENGTH_BONUS = 1.0
ORDER = 4
DISCOUNT = 0.75
# The model's floor: a character it never saw is one of this many (the common Hanzi and then some).
CHARACTER_SET = 8000
_START, _END = "\x02", "\x03"


class CharacterModel:
    """Interpolated absolute-discounting character n-gram model (the lower orders as the back-off)."""

    def __init__(self, texts: Iterable[str], order: int = ORDER, discount: float = DISCOUNT) -> None:
        self.order = order
        self.discount = discount
        counts: dict[str, int] = defaultdict(int)  # history + next character → count
        history_total: dict[str, int] = defaultdict(int)  # history → count of what followed it
        history_types: dict[str, int] = defaultdict(int)  # history → how many different characters followed it
        for text in texts:
            padded = _START * (order - 1) + text + _END
            for i in range(order - 1, len(padded)):
                for n in range(order):
                    history = padded[i - n:i]
                    key = history + padded[i]
                    if key not in counts:
                        history_types[history] += 1
                    counts[key] += 1
                    history_total[history] += 1
        self._counts = dict(counts)
        self._total = dict(history_total)
        self._types = dict(history_types)
        self._floor = 1.0 / (CHARACTER_SET + self._types.get("", 0))

    def probability(self, history: str, char: str) -> float:
        p = self._floor
        for n in range(self.order):
            context = history[len(history) - n:] if n else ""
            total = self._total.get(context)
            if not total:
                break
            p = (max(self._counts.get(context + char, 0) - self.discount, 0.0) / total
                 + self.discount * self._types[context] / total * p)
        return p

    def logprob(self, text: str) -> float:
        padded = _START * (self.order - 1) + text + _END
        return sum(math.log(self.probability(padded[i - self.order + 1:i], padded[i]))
                   for i in range(self.order - 1, len(padded)))

    def __len__(self) -> int:
        return len(self._counts)


def domain_texts(*, exclude: frozenset[str] = frozenset()) -> list[str]:
    """The knowledge base's and the NLU examples' text, misspellings fixed, as compared (no punctuation, digits as
    digits: the form normalised recognition output takes). ``exclude``: knowledge-base questions left out (the
    development set is scored with a model that has not read its questions)."""
    from asr.lexicon import kb_texts, misspelling_fixer, misspelling_map, nlu_texts
    from asr.metrics import comparable

    fix = misspelling_fixer(misspelling_map())
    texts = []
    for text in kb_texts(exclude=exclude) + nlu_texts():
        texts += [part for part in map(comparable, re.split(r"[。；;！!？?\n]", fix(text))) if part]
    return texts


def _build_domain_model() -> CharacterModel:
    started = time.monotonic()
    model = CharacterModel(domain_texts())
    logger.info("asr.domain_lm_built counts=%d seconds=%.2f", len(model), time.monotonic() - started)
    return model


_project = SourceWatch(_build_domain_model, name="domain-lm")


def domain_model() -> CharacterModel:
    """The project's character model as it is now (built on first use, built again when the sources change)."""
    return _project.get()


@dataclass(frozen=True)
class Hypothesis:
    text: str  # as the recogniser wrote it
    logprob: float  # summed over its tokens


class Rescorer:
    """Picks the hypothesis whose normalised text the domain makes likeliest, with the recogniser's own score."""

    def __init__(self, normalize: Callable[[str], str], model: CharacterModel | None = None, *,
                 lm_weight: float = LM_WEIGHT, length_bonus: float = LENGTH_BONUS) -> None:
        from asr.metrics import comparable

        self._comparable = comparable
        self.normalize = normalize
        self._model = model
        self.lm_weight = lm_weight
        self.length_bonus = length_bonus

    @property
    def model(self) -> CharacterModel:
        """The model given, else the project's as it is now (an editor's new entry counts without a restart)."""
        return self._model if self._model is not None else domain_model()

    def score(self, hypothesis: Hypothesis, model: CharacterModel | None = None) -> float:
        text = self._comparable(self.normalize(hypothesis.text)) if hypothesis.text.strip() else ""
        model = self.model if model is None else model
        return hypothesis.logprob + self.lm_weight * model.logprob(text) + self.length_bonus * len(text)

    def choose(self, hypotheses: Sequence[Hypothesis]) -> int:
        """The index of the best hypothesis (the first when there is one, or on a tie)."""
        if len(hypotheses) < 2:
            return 0
        model = self.model  # one model for the whole beam, should a refresh swap it meanwhile
        scores = [self.score(h, model) for h in hypotheses]
        return max(range(len(scores)), key=lambda i: (scores[i], -i))
