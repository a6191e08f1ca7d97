"""Streaming for engines that decode whole utterances (Whisper): the end-pointer cuts the caller's audio into
utterances and each one is decoded when the caller pauses.

``feed`` returns, as they happen: a :class:`~asr.types.Partial` every ``partial_interval`` seconds of ongoing speech
(the utterance so far, decoded; off when the interval is 0, since for Whisper each one costs a full decode), and a
:class:`~asr.types.Final` when the end-pointer closes an utterance. Timing fields are seconds of stream time.

**Speculative decoding.** The end-pointer waits for ``end_silence_ms`` (360 ms) of silence before it closes an
utterance, and only then would the decode start. Instead, once the caller has been silent for ``speculate_ms``
(200 ms), the utterance so far is decoded on a thread of the stream's own while the end-pointer keeps waiting. If the
utterance then closes with no more speech, that decode is the final one (its audio lacks only the last 160 ms of
silence) and the text is there that much sooner; if the caller speaks again, it is dropped, and the CPU it used is
the price: a pause of 200–360 ms inside a sentence costs one decode that is thrown away.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

from asr import audio as audio_io
from asr.types import Audio, Final, Partial, Result
from asr.vad import VAD_RATES, Endpointer, SpeechCancelled, SpeechStarted, UtteranceEnded

logger = logging.getLogger(__name__)


class SegmentingStream:
    def __init__(self, engine, rate: int, *, end_silence_ms: int | None = None,
                 partial_interval_ms: int | None = None, speculate_ms: int | None = None) -> None:
        from asr.config import speech_settings

        settings = speech_settings()
        self.engine = engine
        self.rate = rate
        self.vad_rate = rate if rate in VAD_RATES else 16000
        self._resampler = audio_io.Resampler(rate, self.vad_rate) if self.vad_rate != rate else None
        self.endpointer = Endpointer(self.vad_rate, end_silence_ms=end_silence_ms or settings.asr_end_silence_ms)
        interval = settings.asr_partial_interval_ms if partial_interval_ms is None else partial_interval_ms
        self.partial_interval = interval / 1000.0
        self._open: SpeechStarted | None = None
        self._buffer = bytearray()  # audio since the open utterance began (at vad_rate)
        self._buffer_offset = 0  # sample index of _buffer[0]
        self._stream_samples = 0
        self._next_partial = 0.0
        self._last_partial = ""
        self.decode_seconds: list[float] = []  # compute time of each final decode (for measurements)
        speculate = settings.asr_speculate_ms if speculate_ms is None else speculate_ms
        end_silence = end_silence_ms or settings.asr_end_silence_ms
        self.speculate_ms = speculate if 0 < speculate < end_silence else 0  # else off: no sooner than the end-pointer
        self._speculation: tuple[float, Future] | None = None  # (speech end it decoded up to, (final, seconds))
        self._speculator: ThreadPoolExecutor | None = None
        self.speculations = {"used": 0, "dropped": 0}  # for measurements

    def _decode(self, audio: Audio, offset: float) -> Final:
        result, seconds = self._timed(audio, offset)
        self.decode_seconds.append(seconds)
        return result

    def _timed(self, audio: Audio, offset: float) -> tuple[Final, float]:
        started = time.monotonic()
        return self.engine.transcribe(audio, offset=offset), time.monotonic() - started

    def _events(self, events) -> list[Result]:
        results: list[Result] = []
        for event in events:
            if isinstance(event, SpeechStarted):
                self._open = event
                skip = max(0, event.offset - self._buffer_offset) * 2
                del self._buffer[:skip]
                self._buffer_offset = max(self._buffer_offset, event.offset)
                self._next_partial = event.start + self.partial_interval
                self._last_partial = ""
            elif isinstance(event, SpeechCancelled):
                self._open = None
            elif isinstance(event, UtteranceEnded):
                self._open = None
                final = self._speculated(event.speech_end) or self._decode(event.audio, event.start)
                if final.text:
                    results.append(Final(text=final.text, confidence=final.confidence, start=event.speech_start,
                                         end=event.speech_end, raw_text=final.raw_text, engine=final.engine))
        return results

    def _speculate(self) -> None:
        """Start decoding the open utterance if the caller has been silent long enough and nothing is decoding it."""
        if not self.speculate_ms or self.endpointer.trailing_silence_ms < self.speculate_ms:
            return
        speech_end = self.endpointer.speech_end
        if self._speculation is not None:
            if self._speculation[0] == speech_end:
                return  # already decoding this speech: no copy of the audio on every chunk of the silence
            self._drop()
        snapshot = self.endpointer.open_utterance()
        if snapshot is None:
            return
        pcm, start = snapshot
        if self._speculator is None:
            self._speculator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asr-speculate")
        audio = Audio.from_pcm(pcm, self.vad_rate)
        self._speculation = (speech_end, self._speculator.submit(self._timed, audio, start))

    def _speculated(self, speech_end: float) -> Final | None:
        """The speculative decode, if it covered all the speech of the utterance that just ended."""
        if self._speculation is None:
            return None
        covered, future = self._speculation
        if covered != speech_end:
            self._drop()
            return None
        self._speculation = None
        try:
            result, seconds = future.result()
        except Exception:  # noqa: BLE001 - decode again in line, where a failure reaches the caller as usual
            logger.exception("asr.speculation_failed")
            return None
        self.decode_seconds.append(seconds)
        self.speculations["used"] += 1
        return result

    def settle(self) -> None:
        """Wait until no speculative decode is running (a measurement feeding audio faster than real time uses it
        where a call would have given the decodes that time)."""
        if self._speculator is not None:
            self._speculator.submit(lambda: None).result()

    def _drop(self) -> None:
        if self._speculation is not None:
            self._speculation[1].cancel()  # if it has not started; a running decode finishes unseen
            self._speculation = None
            self.speculations["dropped"] += 1

    def _trim(self) -> None:
        """Without an open utterance only the last second is kept (the pre-roll comes from there)."""
        if self._open is None:
            keep = self.vad_rate * 2  # bytes in one second
            if len(self._buffer) > keep:
                drop = len(self._buffer) - keep
                del self._buffer[:drop]
                self._buffer_offset += drop // 2

    def _partial(self) -> list[Result]:
        if not self.partial_interval or self._open is None:
            return []
        now = self._stream_samples / self.vad_rate
        if now < self._next_partial:
            return []
        self._next_partial = now + self.partial_interval
        start = max(0, self._open.offset - self._buffer_offset) * 2
        audio = Audio.from_pcm(bytes(self._buffer[start:]), self.vad_rate)
        result = self.engine.transcribe(audio, offset=self._open.start)
        if not result.text or result.text == self._last_partial:
            return []
        self._last_partial = result.text
        return [Partial(text=result.text, start=self._open.start, end=now)]

    def feed(self, pcm: bytes) -> list[Result]:
        if self._resampler is not None:
            pcm = self._resampler.feed(pcm)
        self._buffer += pcm
        self._stream_samples += len(pcm) // 2
        results = self._events(self.endpointer.feed(pcm))
        self._speculate()
        results += self._partial()
        self._trim()
        return results

    def finish(self) -> list[Result]:
        if self._resampler is not None:
            tail = self._resampler.feed(b"", last=True)
            if tail:
                self._buffer += tail
                self._stream_samples += len(tail) // 2
                self.endpointer.feed(tail)
        results = self._events(self.endpointer.flush())
        self._drop()
        if self._speculator is not None:
            self._speculator.shutdown(wait=False)
            self._speculator = None
        return results
