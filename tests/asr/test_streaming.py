"""asr/streaming.py: speculative decoding while the end-pointer waits out the caller's silence, on real (synthesised)
speech. The engine here records what it is asked to decode; recognition itself is tested in test_whisper.py."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from asr import audio as audio_io
from asr.streaming import SegmentingStream
from asr.types import Final

FIXTURES = Path(__file__).parent / "fixtures"
RATE = 16000


class RecordingEngine:
    """Answers with the length of the audio it was given; remembers each call and the thread that made it."""

    name = "recording"

    def __init__(self, *, fail_first: bool = False, seconds: float = 0.0) -> None:
        self.calls: list[tuple[float, str]] = []
        self.fail_first = fail_first
        self.seconds = seconds

    def transcribe(self, audio, *, offset: float = 0.0) -> Final:  # noqa: ANN001
        self.calls.append((round(audio.seconds, 2), threading.current_thread().name))
        time.sleep(self.seconds)
        if self.fail_first and len(self.calls) == 1:
            raise RuntimeError("the engine fell over")
        return Final(text=f"{audio.seconds:.2f}", confidence=1.0, start=offset, end=offset + audio.seconds,
                     engine=self.name)


def speech(name: str) -> np.ndarray:
    return audio_io.resample(audio_io.load(FIXTURES / name), RATE).samples


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)


def run(engine: RecordingEngine, parts: list[np.ndarray], **options) -> tuple[list[Final], SegmentingStream]:
    stream = SegmentingStream(engine, RATE, end_silence_ms=360, partial_interval_ms=0, **options)
    pcm = np.concatenate(parts).astype("<i2").tobytes()
    results = []
    for offset in range(0, len(pcm), 640):  # 20 ms chunks, as a phone line delivers them
        results += stream.feed(pcm[offset:offset + 640])
    results += stream.finish()
    return [r for r in results if isinstance(r, Final)], stream


def test_the_decode_starts_during_the_silence_and_is_the_final_one() -> None:
    parts = [silence(0.5), speech("query_16k.wav"), silence(1.5)]
    waited, _ = run(RecordingEngine(), parts, speculate_ms=0)
    engine = RecordingEngine()
    finals, stream = run(engine, parts, speculate_ms=200)
    assert len(finals) == 1 and len(engine.calls) == 1 and stream.speculations == {"used": 1, "dropped": 0}
    decoded, thread = engine.calls[0]
    assert thread.startswith("asr-speculate")
    assert finals[0].text == f"{decoded:.2f}"
    # the same utterance, minus the silence the end-pointer waited for after the speculative decode began
    assert float(waited[0].text) - decoded == pytest.approx(0.16, abs=0.021)
    assert finals[0].start == waited[0].start and finals[0].end == waited[0].end


def test_a_pause_inside_the_sentence_drops_the_speculation() -> None:
    """The caller pauses 260 ms (longer than the 200 ms that starts a decode, shorter than the 360 ms that ends the
    utterance) and goes on: the first decode is dropped, and the final one covers both halves."""
    first, second = speech("hello_16k.wav"), speech("query_16k.wav")
    engine = RecordingEngine()
    finals, stream = run(engine, [silence(0.5), first, silence(0.26), second, silence(1.5)], speculate_ms=200)
    assert len(finals) == 1
    assert stream.speculations == {"used": 1, "dropped": 1}
    assert [seconds for seconds, _ in engine.calls][0] < len(first) / RATE + 0.5
    assert float(finals[0].text) > (len(first) + len(second)) / RATE


def test_a_slow_speculation_is_waited_for_not_repeated() -> None:
    engine = RecordingEngine(seconds=0.5)  # longer than the 160 ms left until the end-pointer closes
    finals, stream = run(engine, [silence(0.5), speech("query_16k.wav"), silence(1.0)], speculate_ms=200)
    assert len(finals) == 1 and len(engine.calls) == 1 and stream.speculations["used"] == 1


def test_a_failed_speculation_is_decoded_again_in_line() -> None:
    engine = RecordingEngine(fail_first=True)
    finals, stream = run(engine, [silence(0.5), speech("query_16k.wav"), silence(1.0)], speculate_ms=200)
    assert len(finals) == 1 and len(engine.calls) == 2
    assert engine.calls[1][1] == threading.current_thread().name
    assert stream.speculations["used"] == 0


def test_speculation_no_sooner_than_the_end_pointer_is_off() -> None:
    engine = RecordingEngine()
    finals, stream = run(engine, [silence(0.5), speech("query_16k.wav"), silence(1.0)], speculate_ms=360)
    assert stream.speculate_ms == 0 and len(finals) == 1
    assert engine.calls[0][1] == threading.current_thread().name


def test_settle_waits_for_the_decode_in_flight() -> None:
    engine = RecordingEngine(seconds=0.4)
    stream = SegmentingStream(engine, RATE, end_silence_ms=360, partial_interval_ms=0, speculate_ms=200)
    stream.feed(np.concatenate([silence(0.5), speech("query_16k.wav"), silence(0.26)]).astype("<i2").tobytes())
    begun = time.monotonic()  # a decode started during the silence and takes 0.4 s
    stream.settle()
    assert time.monotonic() - begun >= 0.2
    finals = [r for r in stream.feed(silence(0.2).astype("<i2").tobytes()) if isinstance(r, Final)]
    assert len(finals) == 1 and len(engine.calls) == 1 and stream.speculations["used"] == 1
