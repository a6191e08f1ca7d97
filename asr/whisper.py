"""faster-whisper (CTranslate2) recognition: the offline default.

Whisper decodes whole utterances, so streaming input goes through the end-pointer in ``asr/streaming.py``: the
voice-activity detector cuts the caller's speech into utterances and each one is decoded here. Chinese is forced
(``language="zh"``), a tax-vocabulary prompt steers the decoder towards Simplified characters and tax terms, and the
output goes through :func:`asr.normalize.normalize` (Traditional → Simplified, numbers → digits, tax terms).

One model per process; CTranslate2 runs ``workers`` decodes in parallel, each on ``cpu_threads`` threads, so the
recognition pool (``asr/pool.py``) can share it between calls.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from asr import audio as audio_io
from asr.engine_base import RecognitionEngine
from asr.types import Audio, EngineUnavailable, Final

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


def _confidence(segments: list) -> float:
    """Length-weighted mean token probability, discounted by the no-speech probability."""
    total = sum(max(1, len(seg.text)) for seg in segments)
    if not total:
        return 0.0
    score = sum(math.exp(seg.avg_logprob) * (1.0 - seg.no_speech_prob) * max(1, len(seg.text)) for seg in segments)
    return round(max(0.0, min(1.0, score / total)), 3)


class WhisperEngine(RecognitionEngine):
    name = "whisper"

    def __init__(self, model_dir: Path | None = None, *, workers: int = 1, cpu_threads: int = 1, beam_size: int = 5,
                 compute_type: str = "int8", prompt: str | None = TAX_PROMPT, normalizer=None) -> None:
        super().__init__(language="zh", normalizer=normalizer)
        self.model_dir = model_dir
        self.workers = workers
        self.cpu_threads = cpu_threads
        self.beam_size = beam_size
        self.compute_type = compute_type
        self.prompt = prompt

    def _load(self):
        from asr.models import whisper_model_dir
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise EngineUnavailable(f"faster-whisper is not installed: {exc}") from exc
        directory = whisper_model_dir(self.model_dir)
        started = time.monotonic()
        model = WhisperModel(str(directory), device="cpu", compute_type=self.compute_type,
                             cpu_threads=self.cpu_threads, num_workers=self.workers, local_files_only=True)
        logger.info("asr.whisper_loaded path=%s seconds=%.2f workers=%d threads=%d", directory,
                    time.monotonic() - started, self.workers, self.cpu_threads)
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
            kept = self._decode(samples, self.prompt if audio.seconds >= SHORT_SECONDS else None)
            raw = "".join(seg.text.strip() for seg in kept)
            text = self.normalize(raw) if raw else ""
        if not text:
            return empty
        return Final(text=text, confidence=_confidence(kept), start=offset, end=offset + audio.seconds,
                     raw_text=raw, engine=self.name)

    def _decode(self, samples: np.ndarray, prompt: str | None, no_speech_threshold: float | None = NO_SPEECH_THRESHOLD) -> list:
        segments, _info = self.model.transcribe(
            samples, language="zh", task="transcribe", beam_size=self.beam_size, initial_prompt=prompt,
            condition_on_previous_text=False, without_timestamps=True, vad_filter=False,
            no_speech_threshold=no_speech_threshold, log_prob_threshold=MIN_AVG_LOGPROB)
        return [seg for seg in segments if seg.text.strip() and not (
            no_speech_threshold is not None and seg.no_speech_prob > no_speech_threshold and seg.avg_logprob < -0.8)]

    def stream(self, rate: int):
        from asr.streaming import SegmentingStream
        return SegmentingStream(self, rate)


_DIGIT_READINGS = dict(zip("0123456789", "零一二三四五六七八九"))


def _sounds(text: str) -> str:
    from pypinyin import lazy_pinyin

    from asr.metrics import comparable

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
