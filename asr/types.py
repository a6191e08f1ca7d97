"""The speech interfaces: audio, recognition results, and the engines behind them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Union

import numpy as np


@dataclass(frozen=True)
class Audio:
    """Mono 16-bit PCM at ``rate`` Hz."""

    samples: np.ndarray  # int16, one channel
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / float(self.rate) if self.rate else 0.0

    def pcm(self) -> bytes:
        return self.samples.astype("<i2", copy=False).tobytes()

    @classmethod
    def from_pcm(cls, data: bytes, rate: int) -> "Audio":
        usable = len(data) - len(data) % 2
        return cls(np.frombuffer(data[:usable], dtype="<i2").astype(np.int16), rate)


@dataclass(frozen=True)
class Partial:
    """A hypothesis that may still change (while the caller is talking)."""

    text: str
    start: float  # seconds from the start of the stream
    end: float
    final: bool = field(default=False, init=False)


@dataclass(frozen=True)
class Final:
    """The settled text of one utterance (one stretch of speech between pauses)."""

    text: str  # normalised: Simplified Chinese, digits, tax terms corrected
    confidence: float  # 0..1
    start: float
    end: float
    raw_text: str = ""  # what the engine produced, before normalisation
    engine: str = ""
    final: bool = field(default=True, init=False)


Result = Union[Partial, Final]


class RecognizerStream(Protocol):
    """One caller's audio, fed as it arrives. Results come back as soon as they exist."""

    def feed(self, pcm: bytes) -> list[Result]:
        """Little-endian PCM16 mono at the stream's rate; any chunk size."""

    def finish(self) -> list[Result]:
        """End of audio: flush what is left as a final result (if there was speech)."""


class AsrEngine(Protocol):
    name: str

    def stream(self, rate: int) -> RecognizerStream: ...

    def transcribe(self, audio: Audio) -> Final:
        """A whole recording at once; an empty ``Final`` (text "") when there is no speech."""


class TtsEngine(Protocol):
    name: str

    def synthesize(self, text: str, rate: int) -> Audio:
        """Speech for ``text`` (already written for the ear), resampled to ``rate``."""


class SpeechError(Exception):
    """An engine could not run (model missing, worker died, timed out). Callers map it to a polite reply."""


class EngineUnavailable(SpeechError):
    """The configured engine or its model is not installed here."""


class EngineTimeout(SpeechError):
    """Recognition or synthesis took longer than allowed."""
