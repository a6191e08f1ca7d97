"""Build the configured engines (one model per process)."""
from __future__ import annotations

from functools import lru_cache

from asr.config import SpeechSettings, speech_settings
from asr.pool import RecognitionPool
from asr.types import AsrEngine, EngineUnavailable

ASR_ENGINES = ("whisper", "vosk", "vosk-server")


def make_asr(name: str | None = None, settings: SpeechSettings | None = None) -> AsrEngine:
    settings = settings or speech_settings()
    name = name or settings.asr_engine
    if name == "whisper":
        from asr.whisper import WhisperEngine
        return WhisperEngine(settings.asr_whisper_model, workers=settings.asr_workers,
                             cpu_threads=settings.asr_whisper_threads, seed=settings.asr_whisper_seed,
                             beam_size=settings.asr_whisper_beam_size, compute_type=settings.asr_whisper_compute_type,
                             window_seconds=settings.asr_whisper_window_seconds, rescore=settings.asr_whisper_rescore)
    if name == "vosk":
        from asr.models import vosk_model_dir
        from asr.vosk_engine import VoskEngine
        return VoskEngine(vosk_model_dir(settings.asr_vosk_model))
    if name == "vosk-server":
        from asr.vosk_server import VoskServerEngine
        return VoskServerEngine(settings.asr_vosk_server_url)
    raise EngineUnavailable(f"unknown speech recognition engine {name!r} (choose from {', '.join(ASR_ENGINES)})")


@lru_cache(maxsize=None)
def shared_pool(name: str | None = None) -> RecognitionPool:
    """The process's recognition pool for the configured engine (built on first use)."""
    settings = speech_settings()
    return RecognitionPool(make_asr(name, settings), workers=settings.asr_workers, timeout=settings.asr_timeout_seconds)
