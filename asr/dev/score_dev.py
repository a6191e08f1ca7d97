"""Score the transcript post-processing on the dev set (``asr/dev/transcripts.json``, see ``build_dev.py``).

    .venvs/service/bin/python -m asr.dev.score_dev [--show]

CER per condition for: the raw text cleaned (script, artefacts, numbers, no correction); the tax-dictionary
correction only (the normaliser before the domain lexicon); and the full normaliser with the domain lexicon, once with
the project's lexicon and once with a *held-out* lexicon built without the dev questions (the honest number: the
evaluation questions are not in the knowledge base). Also how often the correction stage leaves right text alone
(dev references, NLU examples without the synonyms' deliberate misspellings; a
few others, 腿税 and 发飘, remain and count as changed), and how long a sentence takes. ``--show`` prints every changed transcript.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from asr.dev.build_dev import CONDITIONS, TRANSCRIPTS, held_out_corrector
from asr.metrics import comparable, edit_distance


class _NoPhrases:
    """A corrector that corrects nothing: the normaliser as it was before the domain lexicon."""

    def correct(self, run, syllables, *, two_char):
        return run, []


def cer(items: list[dict], condition: str, normalizer) -> float:
    edits = chars = 0
    for item in items:
        ref = comparable(item["text"])
        edits += edit_distance(ref, comparable(normalizer(item["raw"][condition])))
        chars += len(ref)
    return round(edits / max(1, chars), 4)


def unchanged_rate(texts: list[str]) -> tuple[float, list[tuple[str, str]]]:
    from asr.normalize import clean, correct_tax_terms

    changed = []
    for text in texts:
        cleaned = clean(text)
        fixed = correct_tax_terms(cleaned)
        if fixed != cleaned:
            changed.append((cleaned, fixed))
    return round(1 - len(changed) / max(1, len(texts)), 4), changed


def main(argv: list[str] | None = None) -> int:
    from asr import lexicon as lx
    from asr.normalize import clean, normalize, numbers_to_digits, warm_up

    parser = argparse.ArgumentParser(prog="python -m asr.dev.score_dev", description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", action="store_true", help="print the transcripts the lexicon changes")
    args = parser.parse_args(argv)
    items = json.loads(TRANSCRIPTS.read_text(encoding="utf-8"))["items"]
    warm_up()
    questions = frozenset(item["text"] for item in items)
    started = time.perf_counter()
    held_out = held_out_corrector(questions)
    build_seconds = time.perf_counter() - started
    report: dict = {"items": len(items), "held_out_build_s": round(build_seconds, 2)}
    for condition in CONDITIONS:
        row = {"clean_only": cer(items, condition, lambda t: numbers_to_digits(clean(t)))}
        with lx.use_corrector(_NoPhrases()):
            row["tax_terms_only"] = cer(items, condition, normalize)
        row["lexicon_full"] = cer(items, condition, normalize)
        with lx.use_corrector(held_out):
            row["lexicon_held_out"] = cer(items, condition, normalize)
        report[condition] = row

    misspelled = set(lx.misspelling_map())
    nlu = [text for text in lx.nlu_texts() if not any(word in text for word in misspelled)]  # 各税 is meant to change
    with lx.use_corrector(held_out):
        report["refs_unchanged_held_out"], ref_changes = unchanged_rate([item["text"] for item in items])
    report["refs_unchanged_full"], _ = unchanged_rate([item["text"] for item in items])
    report["nlu_unchanged"], nlu_changes = unchanged_rate(nlu)
    report["nlu_examples"] = len(nlu)

    sentences = [item["raw"][c] for item in items for c in CONDITIONS]
    timings = []
    for sentence in sentences:
        begun = time.perf_counter()
        normalize(sentence)
        timings.append((time.perf_counter() - begun) * 1000)
    report["ms_per_sentence"] = {"mean": round(statistics.mean(timings), 3),
                                 "p95": round(sorted(timings)[int(0.95 * len(timings))], 3),
                                 "max": round(max(timings), 3)}
    if args.show:
        with lx.use_corrector(held_out):
            for item in items:
                for condition in CONDITIONS:
                    raw = item["raw"][condition]
                    with lx.use_corrector(_NoPhrases()):
                        before = normalize(raw)
                    after = normalize(raw)
                    if before != after:
                        ref = comparable(item["text"])
                        delta = (edit_distance(ref, comparable(after)) - edit_distance(ref, comparable(before)))
                        mark = "+" if delta < 0 else ("-" if delta > 0 else "=")
                        print(f"{mark} {condition:3} {before} → {after}   [ref {item['text']}]")
        for cleaned, fixed in ref_changes:
            print(f"! ref  {cleaned} → {fixed}")
        for cleaned, fixed in nlu_changes:
            print(f"! nlu  {cleaned} → {fixed}")
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
