"""faster-whisper (CTranslate2) recognition: the offline default.

Whisper decodes whole utterances, so streaming input goes through the end-pointer in ``asr/streaming.py``: the
voice-activity detector cuts the caller's speech into utterances and each one is decoded here. Chinese is forced
(``language="zh"``), a tax-vocabulary prompt steers the decoder towards Simplified characters and tax terms, the
beam's hypotheses are weighed by a character model of the domain's text (``asr/rescoring.py``: 免汽水 → 免契税), and
the output goes through :func:`asr.normalize.normalize` (Traditional → Simplified, numbers → digits, tax terms).

One model per process; CTranslate2 runs ``workers`` decodes in parallel, each on ``cpu_threads`` threads, so the
recognition pool (``asr/pool.py``) can share it between calls.
"""
from __future__ import annotations

import contextvars
import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from asr import audio as audio_io
from asr.engine_base import RecognitionEngine
from asr.metrics import comparable
from asr.types import Audio, EngineUnavailable, Final

if TYPE_CHECKING:
    from asr.rescoring import Rescorer

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# The prompt is text "already said" before the utterance: Simplified characters and the words callers use.
TAX_PROMPT = (
    "以下是纳税人拨打12366纳税服务热线的普通话咨询，内容涉及个人所得税、增值税、企业所得税、专项附加扣除、"
    "汇算清缴、基本减除费用、发票、社保费、电子税务局、纳税人识别号。"
)
# A long prompt makes Whisper drop or invent words in a very short utterance (是, 对, 好的): below this length of
# audio it decodes without one.
SHORT_SECONDS = 1.6
# Whisper invents text on silence and noise; below these it is treated as "no speech".
NO_SPEECH_THRESHOLD = 0.6
MIN_AVG_LOGPROB = -1.2
# Whisper's temperature fallback (taken when the beam's reading scores low) *samples*, and on a short, unclear word
# the samples are worse than the beam: 对 (0.86 s) came back as "19-2012-21191919…" in one run of the evaluation set
# and as 作词作曲作 (a subtitle credit) in another, where the beam alone reads 对; 0 as 林 where the beam reads 零. So
# an utterance shorter than SHORT_SECONDS is decoded by the beam alone. A longer one keeps the fallback (it is how
# Whisper gets out of a repetition loop), but text longer than anybody says in that time (about nine syllables a
# second, a syllable normalising to a character or two: 一万五千元 → 15000元) is decoded again by the beam alone,
# and dropped if still too long. The evaluation recordings' fastest rate is 4.8 characters a second.
MAX_CHARS = 4
MAX_CHARS_PER_SECOND = 12
# The decode itself stops at twice that many tokens (a loop at beam 10 would run to Whisper's 448), up to this: a
# prompt takes at most 227 of the 448, and a long window is left its usual length.
MAX_NEW_TOKENS = 220


# Whisper's encoder reads a 30 s window (3000 feature frames) whatever the utterance's length: faster-whisper pads
# every segment with silence to that length, and the encoder's cost is that of 30 s even for a 2 s question.
# CTranslate2 accepts a shorter window. ``window_seconds`` sets one: the utterance plus at least PAD_FRAMES of
# silence, at least the window, at most 30 s. Measured on the evaluation set (83 utterances, mean 3.2 s, one thread,
# ``./taxbot bench --only speech``, 2026-11-24, with the rescoring and the speculative decode), 10 s against 30 s:
# a decode p50 ~250 ms instead of ~730 ms, the text ready 455 ms after the caller stops instead of 905 ms; but CER
# 7.6 / 13.0 / 13.8 % instead of 6.7 / 11.9 / 10.1 % (16 kHz / 8 kHz G.711 / noise), digits in noise worst hit
# (34 % against 18 %). So it is off unless configured. Too little silence after the speech makes Whisper drop or
# invent words (1 s of it: CER 38 %).
# Tried 2026-12-07, not kept: a quick pass, the 10 s window first and the full one again when Whisper was unsure
# (``_confidence``) or heard three digits in a row. Confidence does not tell the short window's mistakes apart: it
# misreads policy questions it is sure of (要将哪些税 at 0.92), so policy CER went 4.8 → 6.4 % at 16 kHz, and at any
# gate that kept most utterances on the quick pass the 8 kHz CER passed 12 % (0.65 and digits to the full window:
# 7.4 / 12.0 / 14.1 %, half the utterances quick). And on that day's slower machine the short window's decode alone
# took 476 ms (p50; the full window 1,280 ms), so even the quick path left the text ready ~680 ms after the caller
# stopped.
FULL_WINDOW_FRAMES = 3000
FRAMES_PER_SECOND = 100
PAD_FRAMES = 500
_window_frames: contextvars.ContextVar[int | None] = contextvars.ContextVar("whisper_window_frames", default=None)


def _install_window() -> None:
    """Make faster-whisper's padding follow :data:`_window_frames` when a decode sets it (per thread: each
    recognition runs in its own pool thread). Installed once; without a window set it pads as before."""
    import faster_whisper.transcribe as transcribe_module

    original = transcribe_module.pad_or_trim
    if getattr(original, "window_aware", False):
        return

    def pad_or_trim(array, length: int = FULL_WINDOW_FRAMES, *, axis: int = -1):  # noqa: ANN001, ANN202
        frames = _window_frames.get()
        if frames is not None and length == FULL_WINDOW_FRAMES:
            length = min(FULL_WINDOW_FRAMES, max(frames, array.shape[axis] + PAD_FRAMES))
        return original(array, length, axis=axis)

    pad_or_trim.window_aware = True  # type: ignore[attr-defined]
    transcribe_module.pad_or_trim = pad_or_trim


# The n-best rescoring (``asr/rescoring.py``): set around a free-dictation decode, read by the model wrapper below.
_rescorer: contextvars.ContextVar["Rescorer | None"] = contextvars.ContextVar("whisper_rescorer", default=None)


@dataclass(frozen=True)
class _Chosen:
    """A generation result reduced to the chosen hypothesis: what faster-whisper reads of one."""

    sequences_ids: list
    scores: list
    no_speech_prob: float


class _RescoringWhisper:
    """The CTranslate2 Whisper model with its beam search returning the hypothesis the rescorer prefers.

    faster-whisper asks for one hypothesis and reads ``sequences_ids[0]``; while a decode has a rescorer set
    (:data:`_rescorer`), a beam-search call asks for the whole beam instead, and the chosen hypothesis comes back
    alone. It comes back with the beam's best score (per token), not its own: faster-whisper's checks on that score
    decide whether the audio was heard well enough or needs its temperature fallback, which *samples* (a different
    text on every run); the chosen hypothesis's own, lower score sent more short answers there (a menu CER of 29 %
    on one run of the evaluation set, 74 % on another). Sampling calls and everything else pass through."""

    def __init__(self, model, tokenizer) -> None:  # noqa: ANN001 - ctranslate2 and faster-whisper objects
        self._model = model
        self._tokenizer = tokenizer

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._model, name)

    def generate(self, features, prompts, **options):  # noqa: ANN001, ANN201
        rescorer = _rescorer.get()
        beam = options.get("beam_size", 1)
        if rescorer is None or beam < 2 or "sampling_temperature" in options or options.get("num_hypotheses", 1) > 1:
            return self._model.generate(features, prompts, **options)
        from asr.rescoring import Hypothesis

        results = self._model.generate(features, prompts, **{**options, "num_hypotheses": beam, "return_scores": True})
        penalty = options.get("length_penalty", 1.0)
        chosen = []
        for result in results:
            hypotheses = [Hypothesis(self._tokenizer.decode([t for t in tokens if t < self._tokenizer.eot]),
                                     score * max(1, len(tokens)) ** penalty)
                          for tokens, score in zip(result.sequences_ids, result.scores)]
            best = rescorer.choose(hypotheses)
            chosen.append(_Chosen([result.sequences_ids[best]], [result.scores[0]],
                                  getattr(result, "no_speech_prob", 0.0)))
        return chosen


@contextmanager
def _window(seconds: float | None):
    token = _window_frames.set(None if seconds is None else int(seconds * FRAMES_PER_SECOND))
    try:
        yield
    finally:
        _window_frames.reset(token)


def _confidence(segments: list) -> float:
    """Length-weighted mean token probability, discounted by the no-speech probability."""
    total = sum(max(1, len(seg.text)) for seg in segments)
    if not total:
        return 0.0
    score = sum(math.exp(seg.avg_logprob) * (1.0 - seg.no_speech_prob) * max(1, len(seg.text)) for seg in segments)
    return round(max(0.0, min(1.0, score / total)), 3)


class WhisperEngine(RecognitionEngine):
    name = "whisper"

    def __init__(self, model_dir: Path | None = None, *, workers: int = 1, cpu_threads: int = 1, beam_size: int = 10,
                 compute_type: str = "int8", prompt: str | None = TAX_PROMPT, normalizer=None,
                 window_seconds: float | None = None, rescore: bool = True, seed: int | None = 0) -> None:
        super().__init__(language="zh", normalizer=normalizer)
        if window_seconds is not None and not 1 <= window_seconds <= 30:
            raise ValueError(f"window_seconds must be between 1 and 30, not {window_seconds}")
        self.window_seconds = window_seconds
        self.model_dir = model_dir
        self.workers = workers
        self.cpu_threads = cpu_threads
        self.beam_size = beam_size
        self.compute_type = compute_type
        self.prompt = prompt
        self.rescore = rescore  # choose among the beam's hypotheses with the domain model (asr/rescoring.py)
        self.seed = seed
        self._rescorer: Rescorer | None = None

    def _load(self):
        from asr.models import whisper_model_dir
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise EngineUnavailable(f"faster-whisper is not installed: {exc}") from exc
        directory = whisper_model_dir(self.model_dir)
        started = time.monotonic()
        _install_window()
        if self.seed is not None:
            # CTranslate2 seeds each of its threads' generators from this the first time the thread samples, so it
            # is set before the model's threads exist. One worker then gives the same text for the same audio in the
            # same order, run after run; several workers share the sampling out as the jobs arrive.
            import ctranslate2

            ctranslate2.set_random_seed(self.seed)
        model = WhisperModel(str(directory), device="cpu", compute_type=self.compute_type,
                             cpu_threads=self.cpu_threads, num_workers=self.workers, local_files_only=True)
        if self.rescore and self.beam_size > 1:
            from faster_whisper.tokenizer import Tokenizer

            from asr.rescoring import Rescorer

            self._rescorer = Rescorer(self.normalize)
            tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language="zh")
            model.model = _RescoringWhisper(model.model, tokenizer)
        logger.info("asr.whisper_loaded path=%s seconds=%.2f workers=%d threads=%d rescoring=%s", directory,
                    time.monotonic() - started, self.workers, self.cpu_threads, self._rescorer is not None)
        return model

    def transcribe(self, audio: Audio, *, offset: float = 0.0) -> Final:
        empty = Final(text="", confidence=0.0, start=offset, end=offset + audio.seconds, engine=self.name)
        if audio.seconds < 0.1 or audio_io.is_silent(audio):
            return empty
        audio = audio_io.resample(audio, SAMPLE_RATE)  # once: is_noise works at this rate too
        if audio_io.is_noise(audio):
            return empty  # Whisper hears words in noise (sampled guesses on its temperature fallback)
        samples = audio.samples.astype(np.float32) / 32768.0
        if self.grammar:
            # a menu: the phrases as the prompt, then without one (a short word is often dropped with a prompt);
            # whatever comes out is matched to the nearest phrase, so Whisper's "no speech" guess is not trusted
            kept, raw, text = [], "", ""
            for prompt in ("、".join(self.grammar) + "。", None):
                kept = self._decode(samples, prompt, no_speech_threshold=None)
                raw = "".join(seg.text.strip() for seg in kept)
                text = nearest_phrase(self.normalize(raw), self.grammar) if raw else ""
                if text:
                    break
        else:
            kept, raw, text = self._dictate(samples, audio.seconds)
        if not text:
            return empty
        return Final(text=text, confidence=_confidence(kept), start=offset, end=offset + audio.seconds,
                     raw_text=raw, engine=self.name)

    def _dictate(self, samples: np.ndarray, seconds: float) -> tuple[list, str, str]:
        """Free dictation: (kept segments, raw text, normalised text). The domain model picks among the beam; a short
        utterance gets no temperature fallback, and text too long for its audio (a sampled loop) is decoded again by
        the beam alone, and dropped if still too long."""
        short = seconds < SHORT_SECONDS
        prompt = None if short else self.prompt
        limit = MAX_CHARS + MAX_CHARS_PER_SECOND * seconds
        tokens = int(2 * limit) if 2 * limit < MAX_NEW_TOKENS else None
        beam_alone = {"temperature": 0.0}
        token = _rescorer.set(self._rescorer)
        try:
            for options in ((beam_alone,) if short else ({}, beam_alone)):
                kept = self._decode(samples, prompt, max_new_tokens=tokens, **options)
                raw = "".join(seg.text.strip() for seg in kept)
                text = self.normalize(raw) if raw else ""
                if len(comparable(text)) <= limit:
                    return kept, raw, text
                logger.info("asr.whisper_too_long seconds=%.2f chars=%d retry=%s", seconds,
                            len(comparable(text)), bool(options))
            return [], "", ""
        finally:
            _rescorer.reset(token)

    def _decode(self, samples: np.ndarray, prompt: str | None, no_speech_threshold: float | None = NO_SPEECH_THRESHOLD,
                **options) -> list:
        with _window(self.window_seconds):  # the segments are decoded as they are iterated: inside the window
            segments, _info = self.model.transcribe(
                samples, language="zh", task="transcribe", beam_size=self.beam_size, initial_prompt=prompt,
                condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
                no_speech_threshold=no_speech_threshold, log_prob_threshold=MIN_AVG_LOGPROB, **options)
            segments = list(segments)
        return [seg for seg in segments if seg.text.strip() and not (
            no_speech_threshold is not None and seg.no_speech_prob > no_speech_threshold and seg.avg_logprob < -0.8)]

    def stream(self, rate: int):
        from asr.streaming import SegmentingStream
        return SegmentingStream(self, rate)


_DIGIT_READINGS = dict(zip("0123456789", "零一二三四五六七八九"))


def _sounds(text: str) -> str:
    from pypinyin import lazy_pinyin

    plain = "".join(_DIGIT_READINGS.get(c, c) for c in comparable(text))
    return " ".join(lazy_pinyin(plain)).replace("yao", "yi")  # 幺 is how callers say 1


def nearest_phrase(text: str, phrases: list[str], max_distance: float = 0.45) -> str:
    """The phrase that sounds most like ``text`` (edit distance of their pinyin, relative to the phrase's), or ""
    when none is close enough: a menu's "[unk]"."""
    from asr.metrics import edit_distance

    heard = _sounds(text)
    best, best_score = "", max_distance
    for phrase in phrases:
        target = _sounds(phrase)
        score = edit_distance(target, heard) / max(1, len(target))
        if score < best_score or (score == best_score and best and len(phrase) > len(best)):
            best, best_score = phrase, score
    return best
