"""Voice-activity detection and end-pointing for a stream of PCM16 audio (a phone call, a browser microphone).

:class:`Endpointer` is fed chunks of any size and cuts the stream into utterances:

* :class:`SpeechStarted` once speech is confirmed (its offset includes a pre-roll, so the first syllable is kept);
* :class:`UtteranceEnded` with the utterance's PCM once the caller has been quiet for ``end_silence_ms``;
* :class:`SpeechCancelled` when what started turns out not to be speech: too short (a cough, a bump on the
  handset) or too steady (a beep, DTMF, a fan switched on).

A frame counts as speech only when WebRTC's VAD says so *and* its speech-band (150–4000 Hz) energy is above an
adaptive noise floor (the quietest frame of the last ``noise_window_ms``) by a margin — a lower margin once speech
has started (hysteresis). Steady background noise (a fan, line hiss, a car, mains hum) therefore never starts an
utterance however the VAD's model judges it, and a click is too short to confirm a start. End-of-speech is reported
``end_silence_ms`` (plus at most one frame) after the last speech frame: with the defaults (20 ms frames, 300 ms)
an utterance is handed on within 320 ms of the caller falling silent, leaving the rest of a 600 ms budget for
recognition.

Known limits: noise whose level swings by 10 dB or more within a second or two (traffic passing, a TV) can open
utterances; a new noise that switches on abruptly opens one that is cancelled about ``noise_window_ms`` later;
pauses longer than ``end_silence_ms`` inside a sentence split it.

Python and numpy plus ``webrtcvad`` (package ``webrtcvad-wheels``, imported by the constructor); nothing runs at
import time.
"""
from __future__ import annotations

import collections
import logging
import math
from dataclasses import dataclass
from typing import Union

import numpy as np

from asr.types import Audio

logger = logging.getLogger(__name__)

VAD_RATES = (8000, 16000, 32000, 48000)
FRAME_MS = (10, 20, 30)
BAND_HZ = (150.0, 4000.0)  # where the energy gate looks: speech, not hum or rumble
BRIDGE_MS = 60  # a dip this short inside a word does not separate it from the sound before


@dataclass(frozen=True)
class SpeechStarted:
    """Speech was confirmed. ``offset``/``start`` is where the utterance's audio begins (pre-roll included)."""

    offset: int  # sample index from the start of the stream
    start: float  # seconds, = offset / rate
    speech_start: float  # where the first speech frame begins (seconds)
    at: float  # stream time when the start was confirmed (seconds)


@dataclass(frozen=True)
class UtteranceEnded:
    """One utterance, ready for recognition: ``pcm`` spans ``start``..``end`` of the stream.

    ``speech_start``/``speech_end`` bound the frames judged to be speech; ``pcm`` adds the pre-roll before and the
    trailing silence after (``end`` is when the end was detected). ``reason`` is ``"silence"`` (the caller paused),
    ``"max_length"`` (cut at ``max_utterance_ms``; the next utterance continues from here) or ``"flush"``.
    """

    pcm: bytes  # little-endian PCM16 mono
    rate: int
    offset: int  # sample index of the first sample of ``pcm``
    start: float
    end: float
    speech_start: float
    speech_end: float
    reason: str

    @property
    def audio(self) -> Audio:
        return Audio.from_pcm(self.pcm, self.rate)

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.rate


@dataclass(frozen=True)
class SpeechCancelled:
    """A started utterance held less than ``min_utterance_ms`` of speech: forget the :class:`SpeechStarted`."""

    offset: int
    start: float
    at: float


VadEvent = Union[SpeechStarted, UtteranceEnded, SpeechCancelled]


@dataclass
class _Frame:
    offset: int  # sample index of the frame's first sample
    pcm: bytes
    energy: float  # dBFS
    speech: bool


class Endpointer:
    """Cuts one stream of PCM16 mono audio into utterances. Not thread-safe: one per call/stream.

    ``rate``: 8000, 16000, 32000 or 48000 Hz. ``aggressiveness``: WebRTC VAD mode 0 (permissive) .. 3 (strict).
    ``frame_ms``: 10, 20 or 30. ``start_ms``: the window in which ``start_ratio`` of the frames must be speech to
    confirm a start. ``end_silence_ms``: trailing non-speech that ends an utterance. ``pre_roll_ms``: audio kept
    before the first speech frame. ``min_utterance_ms``: less speech than this is cancelled.
    ``max_utterance_ms``: longer utterances are cut. ``energy_margin_db``: how far above the noise floor a frame must
    be to count as speech (``hysteresis_db`` less once speech has started). ``min_level_dbfs``: quieter frames are
    never speech. ``min_spread_db``: an utterance whose speech-band level hardly moves (standard deviation below
    this) is a steady sound — a tone, a beep, noise that just switched on — and is cancelled; syllables make speech
    rise and fall by far more.
    """

    def __init__(self, rate: int, *, aggressiveness: int = 2, frame_ms: int = 20, start_ms: int = 200,
                 start_ratio: float = 0.6, end_silence_ms: int = 300, pre_roll_ms: int = 250,
                 min_utterance_ms: int = 200, max_utterance_ms: int = 15000, energy_margin_db: float = 9.0,
                 hysteresis_db: float = 3.0, noise_window_ms: int = 1500, min_level_dbfs: float = -60.0,
                 min_spread_db: float = 2.5) -> None:
        if rate not in VAD_RATES:
            raise ValueError(f"rate must be one of {VAD_RATES}, got {rate}")
        if frame_ms not in FRAME_MS:
            raise ValueError(f"frame_ms must be one of {FRAME_MS}, got {frame_ms}")
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
        if not 0.0 < start_ratio <= 1.0:
            raise ValueError(f"start_ratio must be in (0, 1], got {start_ratio}")
        for name, value in (("start_ms", start_ms), ("end_silence_ms", end_silence_ms),
                            ("max_utterance_ms", max_utterance_ms), ("noise_window_ms", noise_window_ms)):
            if value < frame_ms:
                raise ValueError(f"{name} must be at least one frame ({frame_ms} ms), got {value}")
        if pre_roll_ms < 0 or min_utterance_ms < 0:
            raise ValueError("pre_roll_ms and min_utterance_ms must not be negative")
        import webrtcvad

        self.rate = rate
        self.frame_ms = frame_ms
        self.frame_samples = rate * frame_ms // 1000
        self._frame_bytes = self.frame_samples * 2
        self._vad = webrtcvad.Vad(aggressiveness)
        self._start_frames = _frames(start_ms, frame_ms)
        self._start_needed = max(1, math.ceil(start_ratio * self._start_frames))
        self._end_frames = _frames(end_silence_ms, frame_ms)
        self._bridge_frames = _frames(BRIDGE_MS, frame_ms)
        self._pre_roll = rate * pre_roll_ms // 1000
        self._min_speech_frames = _frames(min_utterance_ms, frame_ms) if min_utterance_ms else 0
        self._max_samples = rate * max_utterance_ms // 1000
        self.energy_margin_db = energy_margin_db
        self.hysteresis_db = hysteresis_db
        self.min_level_dbfs = min_level_dbfs
        self.min_spread_db = min_spread_db
        self._window_fn = np.hanning(self.frame_samples)
        frequencies = np.fft.rfftfreq(self.frame_samples, 1.0 / rate)
        self._band = (frequencies >= BAND_HZ[0]) & (frequencies <= BAND_HZ[1])
        # Parseval, one-sided, so that full-scale white noise reads about 0 dBFS whatever the window.
        self._power_scale = 2.0 / (float(np.sum(self._window_fn ** 2)) * self.frame_samples * 32768.0 ** 2)
        self._noise = collections.deque(maxlen=_frames(noise_window_ms, frame_ms))
        # Recent frames, enough for the start window plus the pre-roll.
        self._recent: collections.deque[_Frame] = collections.deque(
            maxlen=self._start_frames + math.ceil(self._pre_roll / self.frame_samples) + 1)
        self._pending = bytearray()
        self._position = 0  # samples consumed into whole frames
        self._last_end = 0  # no utterance may start before the previous one's end
        self._reset_utterance()

    # -- public -------------------------------------------------------------------------------------------------------

    @property
    def in_speech(self) -> bool:
        """True between a :class:`SpeechStarted` and the event that closes it."""
        return self._utterance is not None

    @property
    def trailing_silence_ms(self) -> int:
        """Non-speech since the open utterance's last speech frame (0 when no utterance is open)."""
        return self._silence_frames * self.frame_ms if self._utterance is not None else 0

    @property
    def speech_end(self) -> float | None:
        """Where the open utterance's speech ends so far (seconds of stream time), or None when none is open. If it
        ends without more speech, :class:`UtteranceEnded` carries the same ``speech_end``."""
        return self._seconds(self._speech_end) if self._utterance is not None else None

    def open_utterance(self) -> tuple[bytes, float] | None:
        """A copy of the open utterance so far, and its start (seconds of stream time); None when none is open."""
        if self._utterance is None:
            return None
        return bytes(self._utterance), self._seconds(self._utterance_offset)

    @property
    def noise_floor_dbfs(self) -> float:
        """The current noise-floor estimate (dBFS); -inf before the first frame."""
        return min(self._noise) if self._noise else float("-inf")

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Little-endian PCM16 mono at ``rate``, any length (an odd trailing byte waits for the next chunk)."""
        self._pending += pcm
        events: list[VadEvent] = []
        whole = len(self._pending) // self._frame_bytes * self._frame_bytes
        for start in range(0, whole, self._frame_bytes):
            events += self._process(bytes(self._pending[start:start + self._frame_bytes]))
        del self._pending[:whole]
        return events

    def flush(self) -> list[VadEvent]:
        """End of the stream: close an open utterance (with any partial frame) and reset for a new stream segment.

        The clock keeps running, so offsets stay consistent if more audio is fed afterwards.
        """
        tail = bytes(self._pending[:len(self._pending) - len(self._pending) % 2])
        self._pending.clear()
        events: list[VadEvent] = []
        if self._utterance is not None:
            self._utterance += tail
            self._position += len(tail) // 2
            events.append(self._close("flush"))
        else:
            self._position += len(tail) // 2
        self._recent.clear()
        self._window.clear()
        return events

    # -- internals ----------------------------------------------------------------------------------------------------

    def _reset_utterance(self) -> None:
        self._utterance: bytearray | None = None
        self._utterance_offset = 0
        self._speech_start = 0
        self._speech_end = 0
        self._speech_frames = 0
        self._silence_frames = 0
        self._levels: list[tuple[int, float]] = []  # (offset, dBFS) of the open utterance's frames
        self._window: collections.deque[bool] = collections.deque(maxlen=self._start_frames)

    def _seconds(self, samples: int) -> float:
        return samples / self.rate

    def _band_energy(self, pcm: bytes) -> float:
        """The frame's power in the speech band (dBFS): hum, rumble and DC offset do not count."""
        spectrum = np.fft.rfft(np.frombuffer(pcm, dtype="<i2") * self._window_fn)
        power = float(np.sum(np.abs(spectrum[self._band]) ** 2)) * self._power_scale
        return 10.0 * math.log10(power) if power > 1e-12 else -120.0

    def _classify(self, pcm: bytes) -> tuple[float, bool]:
        energy = self._band_energy(pcm)
        self._noise.append(energy)
        floor = min(self._noise)
        margin = self.energy_margin_db - (self.hysteresis_db if self._utterance is not None else 0.0)
        loud = energy > self.min_level_dbfs and energy > floor + margin
        # The VAD runs on every frame so that its own adaptive model keeps tracking the background.
        voiced = self._vad.is_speech(pcm, self.rate)
        return energy, bool(loud and voiced)

    def _process(self, pcm: bytes) -> list[VadEvent]:
        energy, speech = self._classify(pcm)
        frame = _Frame(self._position, pcm, energy, speech)
        self._position += self.frame_samples
        self._recent.append(frame)
        if self._utterance is None:
            self._window.append(speech)
            if sum(self._window) >= self._start_needed:
                return [self._open()]
            return []
        self._utterance += pcm
        self._levels.append((frame.offset, energy))
        events: list[VadEvent] = []
        if speech:
            self._speech_frames += 1
            self._silence_frames = 0
            self._speech_end = self._position
        else:
            self._silence_frames += 1
        if self._silence_frames >= self._end_frames:
            events.append(self._close("silence"))
        elif self._position - self._utterance_offset >= self._max_samples:
            events.append(self._close("max_length"))
            events.append(self._continue_after_cut())
        return events

    def _open(self) -> SpeechStarted:
        """The start window is full enough: find where speech began and open an utterance with pre-roll."""
        frames = list(self._recent)
        window_first = len(frames) - len(self._window)
        onset_index = next(i for i in range(window_first, len(frames)) if frames[i].speech)
        # Walk back over the loud frames just before it (a soft onset the VAD missed, or speech from the stream's
        # very first frame, before the noise floor was known), bridging short dips such as a stop consonant, so that
        # ``speech_start`` is where the sound rose rather than where it was confirmed.
        loud_above = max(min(self._noise) + self.energy_margin_db - self.hysteresis_db, self.min_level_dbfs)
        gap = 0
        for index in range(onset_index - 1, -1, -1):
            if frames[index].offset < self._last_end:  # the previous utterance's audio
                break
            if frames[index].energy > loud_above:
                onset_index, gap = index, 0
            else:
                gap += 1
                if gap > self._bridge_frames:
                    break
        onset = frames[onset_index].offset
        begin = max(onset - self._pre_roll, self._last_end, frames[0].offset)
        self._utterance = bytearray()
        for item in frames:
            end = item.offset + self.frame_samples
            if end <= begin:
                continue
            skip = max(0, begin - item.offset)
            self._utterance += item.pcm[skip * 2:]
            self._levels.append((item.offset, item.energy))
        self._utterance_offset = begin
        self._speech_start = onset
        self._speech_end = self._position
        self._speech_frames = sum(1 for item in frames[onset_index:] if item.speech)
        self._silence_frames = 0
        event = SpeechStarted(offset=begin, start=self._seconds(begin), speech_start=self._seconds(onset),
                              at=self._seconds(self._position))
        logger.debug("vad.speech_started start=%.2f speech_start=%.2f at=%.2f", event.start, event.speech_start,
                     event.at)
        return event

    def _close(self, reason: str) -> VadEvent:
        """Emit the open utterance (or cancel it if it held too little speech) and go back to listening."""
        assert self._utterance is not None
        begin, end = self._utterance_offset, self._position
        speech_start, speech_end = self._speech_start, self._speech_end
        pcm = bytes(self._utterance)
        levels = [level for offset, level in self._levels if speech_start <= offset < speech_end]
        spread = float(np.std(levels)) if len(levels) > 1 else 0.0
        enough = self._speech_frames >= self._min_speech_frames and (reason == "max_length"
                                                                     or spread >= self.min_spread_db)
        self._last_end = end
        self._reset_utterance()
        if not enough:
            logger.debug("vad.speech_cancelled start=%.2f at=%.2f spread_db=%.1f", self._seconds(begin),
                         self._seconds(end), spread)
            return SpeechCancelled(offset=begin, start=self._seconds(begin), at=self._seconds(end))
        event = UtteranceEnded(pcm=pcm, rate=self.rate, offset=begin, start=self._seconds(begin),
                               end=self._seconds(end), speech_start=self._seconds(speech_start),
                               speech_end=self._seconds(speech_end), reason=reason)
        logger.debug("vad.utterance_ended start=%.2f end=%.2f speech=%.2f..%.2f reason=%s", event.start, event.end,
                     event.speech_start, event.speech_end, reason)
        return event

    def _continue_after_cut(self) -> SpeechStarted:
        """After a forced cut the caller is still talking: the next utterance starts right here."""
        self._utterance = bytearray()
        self._utterance_offset = self._position
        self._speech_start = self._position
        self._speech_end = self._position
        return SpeechStarted(offset=self._position, start=self._seconds(self._position),
                             speech_start=self._seconds(self._position), at=self._seconds(self._position))


def _frames(ms: int, frame_ms: int) -> int:
    return max(1, math.ceil(ms / frame_ms))
