"""Speech benchmark: accuracy and speed of the recognition engines on the evaluation set (asr/eval).

    .venvs/service/bin/python bench/speech.py [--engine whisper] [--limit N] [--skip-concurrency] [--skip-e2e]

Per engine and condition (16 kHz, 8 kHz G.711 μ-law telephone audio, 16 kHz with noise): CER (edits / reference
characters, punctuation ignored) overall and per kind, and the real-time factor on ONE core (one decode at a time,
one CPU thread); menu mode (the phone menus' answers as a grammar) right answers and false accepts. Then, on the 16 kHz set streamed in 20 ms chunks: end-pointing latency (the caller stops talking →
the end-pointer closes the utterance, stream time) and final-result latency (→ the decoded text is there). Then four
callers streaming at once in real time on the machine's cores (the recognition pool): how far behind real time the
finals are. Finally "spoken question → right knowledge entry": for the policy questions, the entry retrieval picks
for the transcript vs for the reference text. The last line is the JSON of the numbers (bench/run.py reads it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asr import audio as audio_io  # noqa: E402
from asr.metrics import comparable, edit_distance  # noqa: E402
from bench.nlu_parse import percentile  # noqa: E402

EVAL = ROOT / "asr" / "eval"
CONDITIONS = {"16k": ("16k", ".flac"), "8k_g711": ("8k", ".wav"), "16k_noise": ("16k_noise", ".flac")}


def load_items(limit: int | None) -> list[dict]:
    items = json.loads((EVAL / "manifest.json").read_text())["items"]
    return items[:limit] if limit else items


def recording(item: dict, condition: str) -> Path | None:
    folder, suffix = CONDITIONS[condition]
    path = EVAL / "audio" / folder / f"{item['id']}{suffix}"
    return path if path.exists() else None


def make_engine(name: str, workers: int = 1):
    from asr.config import speech_settings
    from asr.engines import make_asr

    settings = speech_settings().model_copy(update={"asr_workers": workers})
    return make_asr(name, settings)


def accuracy(engine, items: list[dict], condition: str, raw: list[str] | None = None) -> tuple[dict, dict[str, str]]:
    """CER and real-time factor on one condition; the recogniser's raw texts are appended to ``raw``."""
    edits = chars = 0
    per_kind: dict[str, list[int]] = {}
    audio_seconds = compute_seconds = wall_seconds = 0.0
    heard: dict[str, str] = {}
    for item in items:
        path = recording(item, condition)
        if path is None:
            continue
        audio = audio_io.load(path)
        started, wall = time.process_time(), time.perf_counter()
        result = engine.transcribe(audio)
        compute_seconds += time.process_time() - started  # CPU time of this process: one thread → one core
        wall_seconds += time.perf_counter() - wall
        audio_seconds += audio.seconds
        ref, hyp = comparable(item["text"]), comparable(result.text)
        distance = edit_distance(ref, hyp)
        edits, chars = edits + distance, chars + len(ref)
        kind = per_kind.setdefault(item["kind"], [0, 0])
        kind[0] += distance
        kind[1] += len(ref)
        heard[item["id"]] = result.text
        if raw is not None:
            raw.append(result.raw_text or result.text)
    return ({"cer": round(edits / max(1, chars), 4), "rtf_one_core": round(compute_seconds / max(audio_seconds, 1e-9), 3),
             "rtf_wall": round(wall_seconds / max(audio_seconds, 1e-9), 3),
             "files": len(heard), "audio_s": round(audio_seconds, 1),
             "cer_by_kind": {k: round(e / max(1, c), 4) for k, (e, c) in sorted(per_kind.items())}}, heard)


def postprocessing_latency(raw_texts: list[str]) -> dict:
    """Milliseconds of ``asr.normalize.normalize`` (the text pass after every decode: Traditional → Simplified,
    numbers, tax terms, domain phrases) per recognised utterance, p50 / p95. Each text is made new (a character
    appended) so no cache of a whole utterance helps."""
    from asr.normalize import normalize

    normalize("预热")  # the lexicon and the corrector load outside the measurement
    timings = []
    for number, text in enumerate(t for t in raw_texts if t):
        fresh = f"{text}{'的了吗呢吧啊哦嗯呀啦么嘛'[number % 12]}"
        started = time.perf_counter()
        normalize(fresh)
        timings.append(1000 * (time.perf_counter() - started))
    if not timings:
        return {"texts": 0}
    return {"texts": len(timings), "p50_ms": round(percentile(timings, 50), 3), "p95_ms": round(percentile(timings, 95), 3)}


def menu_accuracy(engine, items: list[dict]) -> dict:
    """Menu mode (``with_grammar``, the phone menus' answers): right answers on the menu recordings, and anything
    at all accepted from the other recordings (a false accept)."""
    from asr.menus import IVR_ANSWERS

    menu = engine.with_grammar(IVR_ANSWERS)
    right = asked = false = other = 0
    for item in items:
        for condition in ("16k", "8k_g711"):
            path = recording(item, condition)
            if path is None:
                continue
            text = menu.transcribe(audio_io.load(path)).text
            if item["kind"] == "menu":
                asked += 1
                right += text == item["text"]
            else:
                other += 1
                false += bool(text)
    return {"menu_right": round(right / max(1, asked), 3), "menu_recordings": asked,
            "false_accepts": round(false / max(1, other), 3), "other_recordings": other}


def endpointing(engine, items: list[dict], paced_seconds: float = 1.0) -> dict:
    """Stream each recording (plus 1.5 s of silence) in 20 ms chunks; when does the end-pointer fire, and when is the
    decoded text there, counted from the end of the speech.

    The last ``paced_seconds`` of speech and the silence after it are fed in real time, and the text's arrival is
    read off the clock, so a decode that starts while the end-pointer still waits (speculative decoding,
    ``asr/streaming.py``) counts as it would on a call, and so does one started for a pause in those last moments
    and then dropped. What comes before is fed at once and its decodes are let finish first: on a call they would
    have had that time."""
    from asr.streaming import SegmentingStream

    detect, final = [], []
    for item in items:
        path = recording(item, "16k")
        if path is None:
            continue
        audio = audio_io.resample(audio_io.load(path), 16000)
        end = 0.5 + audio_io.speech_extent(audio)[1]  # stream time, after the leading silence
        pcm = np.concatenate([np.zeros(8000, np.int16), audio.samples, np.zeros(24000, np.int16)]).astype("<i2").tobytes()
        stream = SegmentingStream(engine, 16000, partial_interval_ms=0)
        chunk = 640
        paced_from = max(0, int((end - paced_seconds) * 16000) * 2 // chunk * chunk)
        stream.feed(pcm[:paced_from])
        stream.settle()
        began = time.monotonic() - paced_from / 2 / 16000  # wall time of stream time 0
        for offset in range(paced_from, len(pcm), chunk):
            pause = began + offset / 2 / 16000 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            decodes = len(stream.decode_seconds)
            stream.feed(pcm[offset:offset + chunk])
            if len(stream.decode_seconds) > decodes:  # an utterance closed in this chunk, and its text is there
                detect.append(((offset + chunk) / 2 / 16000 - end) * 1000)  # stream time: when the end-pointer fired
                final.append((time.monotonic() - (began + end)) * 1000)  # the clock: when the text was there
                break
        stream.finish()
    return {"endpoint_detect_ms_p50": round(percentile(detect, 50)), "endpoint_detect_ms_p95": round(percentile(detect, 95)),
            "final_after_speech_end_ms_p50": round(percentile(final, 50)),
            "final_after_speech_end_ms_p95": round(percentile(final, 95)), "utterances": len(detect)}


def concurrent_streams(name: str, items: list[dict], callers: int = 4, seconds: float = 40.0) -> dict:
    """``callers`` threads stream different recordings back to back, paced in real time, through one shared model
    with one worker per core. Lag = wall time from the end of an utterance's audio to its final result."""
    engine = make_engine(name, workers=os.cpu_count() or 1)
    engine.transcribe(audio_io.load(recording(items[0], "16k")))  # load the model before the clock starts
    clips = [audio_io.resample(audio_io.load(recording(i, "16k")), 16000).samples for i in items if recording(i, "16k")]
    lags: list[float] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        from asr.streaming import SegmentingStream

        stream = SegmentingStream(engine, 16000, partial_interval_ms=0)
        gap = np.zeros(12000, np.int16)  # 0.75 s between questions
        parts, k = [], n * 7
        while sum(len(p) for p in parts) < seconds * 16000:
            parts += [clips[k % len(clips)], gap]
            k += 1
        pcm = np.concatenate(parts).astype("<i2").tobytes()
        chunk = 640  # 20 ms
        began = time.monotonic()
        for offset in range(0, len(pcm), chunk):
            due = began + offset / 2 / 16000
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            decodes = len(stream.decode_seconds)
            stream.feed(pcm[offset:offset + chunk])
            if len(stream.decode_seconds) > decodes:
                with lock:
                    lags.append(time.monotonic() - (began + (offset + chunk) / 2 / 16000))
        with lock:
            lags.append(time.monotonic() - (began + len(pcm) / 2 / 16000))  # finished in time?

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    return {"callers": callers, "cores": os.cpu_count(), "audio_s_each": seconds,
            "wall_s": round(wall, 1), "finals": len(lags) - callers,
            "lag_s_p50": round(percentile(lags, 50), 2), "lag_s_p95": round(percentile(lags, 95), 2),
            "lag_s_max": round(max(lags), 2), "real_time": wall <= seconds * 1.1 + 2}


def spoken_to_entry(items: list[dict], heard: dict[str, str]) -> dict:
    from cli.config import RuntimeConfig
    from service.knowledge import KnowledgeBase

    config = RuntimeConfig()
    kb = KnowledgeBase(config.kb_index_path, config.kb_encoder, 1, False)
    if not kb.refresh():
        return {"error": kb.problem}
    same = total = answered_same = answered_reference = 0
    for item in items:
        if item["kind"] != "policy" or item["id"] not in heard:
            continue
        expected, _ = kb.search(item["text"], 1)
        got, _ = kb.search(heard[item["id"]], 1)
        total += 1
        same += bool(expected and got and expected[0].entry_id == got[0].entry_id)
        # what the caller would get: an answer from the same entry as for the words really said
        reference, _ = kb.answer(item["text"], None, "phone")
        spoken, _ = kb.answer(heard[item["id"]], None, "phone")
        if reference.status == "answered" and reference.chosen is not None:
            answered_reference += 1
            answered_same += spoken.status == "answered" and spoken.chosen is not None and \
                spoken.chosen.id == reference.chosen.id
    return {"policy_questions": total, "same_top_entry_as_reference": round(same / max(1, total), 3),
            "answered_from_reference_text": answered_reference,
            "of_those_answered_same_from_speech": round(answered_same / max(1, answered_reference), 3)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", action="append", help="whisper (default), vosk, vosk-server")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--skip-concurrency", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()
    items = load_items(args.limit)
    results: dict = {}
    for name in args.engine or ["whisper"]:
        engine = make_engine(name)
        engine.transcribe(audio_io.load(recording(items[0], "16k")))  # load and warm up outside the measurement
        heard16: dict[str, str] = {}
        raw: list[str] = []
        for condition in CONDITIONS:
            numbers, heard = accuracy(engine, items, condition, raw)
            if condition == "16k":
                heard16 = heard
            results[f"asr_{name}_{condition}"] = numbers
            print(f"[speech] {name} {condition}: {numbers}", flush=True)
        results[f"asr_{name}_postprocessing"] = postprocessing_latency(raw)
        print(f"[speech] {name} text post-processing: {results[f'asr_{name}_postprocessing']}", flush=True)
        if hasattr(engine, "with_grammar"):
            results[f"asr_{name}_menus"] = menu_accuracy(engine, items)
            print(f"[speech] {name} menus: {results[f'asr_{name}_menus']}", flush=True)
        if hasattr(engine, "stream") and name == "whisper":
            results[f"asr_{name}_endpointing"] = endpointing(engine, items)
            print(f"[speech] {name} endpointing: {results[f'asr_{name}_endpointing']}", flush=True)
        if not args.skip_concurrency and name == "whisper":
            results[f"asr_{name}_4_callers"] = concurrent_streams(name, items)
            print(f"[speech] {name} four callers: {results[f'asr_{name}_4_callers']}", flush=True)
        if not args.skip_e2e:
            results[f"asr_{name}_spoken_to_entry"] = spoken_to_entry(items, heard16)
            print(f"[speech] {name} spoken question → entry: {results[f'asr_{name}_spoken_to_entry']}", flush=True)
    print(json.dumps(results, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
