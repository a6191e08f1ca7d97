"""The beam's hypotheses on the ASR development set, for choosing the rescoring weights (``asr/rescoring.py``).

    .venvs/service/bin/python -m asr.dev.nbest_dev            # decode the dev audio, keep every hypothesis
    .venvs/service/bin/python -m asr.dev.nbest_dev --score    # only score asr/dev/nbest.json

Decoding goes through the engine's own path (prompt, thresholds, fallback), with a rescorer that records the beam
and keeps its first hypothesis; the hypotheses and their log-probabilities are kept in ``asr/dev/nbest.json`` (the
audio is ``build_dev``'s). Scoring prints the CER of the first hypothesis, of the best one (what a perfect chooser
would get), and of the rescorer's choice over a grid of weights, with a lexicon and a character model that have not
read the development questions (the honest numbers: the evaluation questions are not in the knowledge base).
"""
from __future__ import annotations

import json
import logging
import sys
from functools import lru_cache
from pathlib import Path

from asr.dev.build_dev import CONDITIONS, held_out_corrector, kept_or_decoded, load_audio

logger = logging.getLogger(__name__)

NBEST = Path(__file__).resolve().parent / "nbest.json"
LM_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
LENGTH_BONUSES = (0.0, 0.5, 1.0, 1.5, 2.0)


class _Recorder:
    """A rescorer that keeps the first hypothesis and remembers the beam."""

    def __init__(self) -> None:
        self.last: list = []

    def choose(self, hypotheses) -> int:  # noqa: ANN001
        self.last = [(h.text, round(h.logprob, 4)) for h in hypotheses]
        return 0


def decode(items: list[dict[str, str]]) -> dict:
    from asr.config import speech_settings
    from asr.whisper import WhisperEngine

    settings = speech_settings()
    engine = WhisperEngine(settings.asr_whisper_model, beam_size=settings.asr_whisper_beam_size,
                           compute_type=settings.asr_whisper_compute_type, normalizer=lambda text: text)
    engine.model  # noqa: B018 - load, so the recorder replaces the rescorer the engine built
    recorder = _Recorder()
    engine._rescorer = recorder  # noqa: SLF001 - the dev tool looks inside the engine on purpose
    out = []
    for number, item in enumerate(items, 1):
        record = {"id": item["id"], "text": item["text"], "hypotheses": {}}
        for condition in CONDITIONS:
            recorder.last = []
            engine.transcribe(load_audio(item["id"], condition))
            record["hypotheses"][condition] = recorder.last
        out.append(record)
        if number % 25 == 0:
            logger.info("dev.nbest %d/%d", number, len(items))
    data = {"beam_size": settings.asr_whisper_beam_size, "items": out}
    NBEST.write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return data


def score(data: dict) -> dict:
    from asr import lexicon as lx
    from asr.metrics import comparable, edit_distance
    from asr.normalize import normalize
    from asr.rescoring import LENGTH_BONUS, LM_WEIGHT, CharacterModel, Hypothesis, Rescorer, domain_texts

    items = data["items"]
    questions = frozenset(item["text"] for item in items)
    held_out = held_out_corrector(questions)
    model = CharacterModel(domain_texts(exclude=questions))
    rows = []  # (reference, [(hypothesis, normalised)])
    with lx.use_corrector(held_out):
        normalized = lru_cache(maxsize=None)(normalize)  # the grid below normalises the same hypotheses again
        for item in items:
            for condition in CONDITIONS:
                beam = [Hypothesis(text, logprob) for text, logprob in item["hypotheses"][condition]]
                rows.append((comparable(item["text"]), [(h, comparable(normalized(h.text))) for h in beam]))
        chars = sum(len(ref) for ref, _ in rows)

        def cer(pick) -> float:  # noqa: ANN001
            return round(sum(edit_distance(ref, pick(beam)) if beam else len(ref) for ref, beam in rows) / chars, 4)

        report = {"items": len(items), "beam_size": data.get("beam_size"), "first": cer(lambda beam: beam[0][1]),
                  "best_possible": round(sum(min(edit_distance(ref, b[1]) for b in beam) if beam else len(ref)
                                             for ref, beam in rows) / chars, 4),
                  "grid": {}}
        for weight in LM_WEIGHTS:
            for bonus in LENGTH_BONUSES:
                rescorer = Rescorer(normalized, model, lm_weight=weight, length_bonus=bonus)
                chosen = cer(lambda beam: beam[rescorer.choose([b[0] for b in beam])][1])
                report["grid"][f"{weight:g}/{bonus:g}"] = chosen
        report["configured"] = {f"{LM_WEIGHT:g}/{LENGTH_BONUS:g}": report["grid"].get(f"{LM_WEIGHT:g}/{LENGTH_BONUS:g}")}
    return report


def main(argv: list[str] | None = None) -> int:
    data = kept_or_decoded(argv, prog="python -m asr.dev.nbest_dev", doc=__doc__, kept=NBEST, decode=decode,
                           what="hypotheses")
    print(json.dumps(score(data), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
