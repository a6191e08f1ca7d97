"""asr/vad.py: end-pointing on real (synthesised) Mandarin speech, in silence, noise, over the phone line.

The fixtures are trimmed to their speech, so where speech starts and ends in a test stream is known by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from asr import audio as audio_io
from asr.types import Audio
from asr.vad import Endpointer, SpeechCancelled, SpeechStarted, UtteranceEnded

FIXTURES = Path(__file__).parent / "fixtures"
TOLERANCE = 0.1  # seconds, for utterance boundaries
MAX_LATENCY = 0.4  # seconds from the real end of speech (stream time) to the UtteranceEnded event


@pytest.fixture(scope="module")
def hello() -> Audio:
    return audio_io.load(FIXTURES / "hello_16k.wav")


@pytest.fixture(scope="module")
def query() -> Audio:
    return audio_io.load(FIXTURES / "query_16k.wav")


@dataclass
class Scene:
    samples: np.ndarray  # int16
    rate: int
    speech: list[tuple[float, float]]  # where the speech really is (seconds)


def build(rate: int, parts: list, *, noise_dbfs: float | None = None, seed: int = 0) -> Scene:
    """Concatenate ``parts`` (seconds of silence as floats, speech as Audio) and add white noise."""
    pieces, speech, position = [], [], 0
    for part in parts:
        if isinstance(part, Audio):
            samples = audio_io.resample(part, rate).samples
            speech.append((position / rate, (position + len(samples)) / rate))
        else:
            samples = np.zeros(int(part * rate), dtype=np.int16)
        pieces.append(samples)
        position += len(samples)
    signal = np.concatenate(pieces).astype(np.float64)
    if noise_dbfs is not None:
        signal += np.random.default_rng(seed).normal(0, 32768 * 10 ** (noise_dbfs / 20), len(signal))
    return Scene(np.clip(np.rint(signal), -32768, 32767).astype(np.int16), rate, speech)


def feed(endpointer: Endpointer, samples: np.ndarray, chunk_ms: float = 20) -> list[tuple[object, float]]:
    """Feed in chunks as a network would; each event with the stream time at which it came back."""
    pcm = samples.astype("<i2").tobytes()
    step = max(1, int(endpointer.rate * chunk_ms / 1000)) * 2
    out = []
    for begin in range(0, len(pcm), step):
        for event in endpointer.feed(pcm[begin:begin + step]):
            out.append((event, min(begin + step, len(pcm)) / 2 / endpointer.rate))
    for event in endpointer.flush():
        out.append((event, len(pcm) / 2 / endpointer.rate))
    return out


def events_of(timed, kind):
    return [event for event, _ in timed if isinstance(event, kind)]


def noise(kind: str, seconds: float, rate: int, dbfs: float, seed: int = 1) -> np.ndarray:
    """``seconds`` of a kind of background noise, ``dbfs`` RMS, as int16."""
    x = _unit_noise(kind, seconds, rate, seed) * 32768 * 10 ** (dbfs / 20)
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _unit_noise(kind: str, seconds: float, rate: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    if kind == "white":
        x = rng.normal(size=n)
    elif kind in ("pink", "brown"):  # 1/f and 1/f² spectra, down to a tenth of a hertz
        freqs = np.fft.rfftfreq(n, 1 / rate)
        spectrum = rng.normal(size=len(freqs)) + 1j * rng.normal(size=len(freqs))
        spectrum[1:] /= freqs[1:] ** (0.5 if kind == "pink" else 1.0)
        spectrum[0] = 0
        x = np.fft.irfft(spectrum, n)
    elif kind == "hum":  # mains hum with harmonics
        x = sum(np.sin(2 * np.pi * 50 * k * t + k) / k for k in (1, 2, 3, 5))
    elif kind == "car":  # engine rumble plus some hiss
        x = _unit_noise("brown", seconds, rate, seed) + 0.1 * rng.normal(size=n)
    else:
        raise ValueError(kind)
    return x / np.std(x)


# -- utterances and boundaries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate, channel", [(16000, "clean"), (16000, "noisy"), (8000, "clean"), (8000, "telephone")])
def test_speech_silence_speech_gives_two_utterances(hello, query, rate, channel):
    scene = build(rate, [1.0, hello, 1.2, query, 1.5], noise_dbfs=-45 if channel == "noisy" else -75, seed=3)
    samples = scene.samples
    if channel == "telephone":  # what actually arrives over the line: 8 kHz μ-law
        samples = audio_io.from_telephone(audio_io.to_telephone(Audio(samples, rate))).samples
    timed = feed(Endpointer(rate), samples, chunk_ms=37)
    kinds = [type(event).__name__ for event, _ in timed]
    assert kinds == ["SpeechStarted", "UtteranceEnded", "SpeechStarted", "UtteranceEnded"]
    started, ended = events_of(timed, SpeechStarted), events_of(timed, UtteranceEnded)
    previous_end = 0.0
    for begin, utterance, (speech_start, speech_end) in zip(started, ended, scene.speech):
        assert utterance.reason == "silence"
        assert utterance.speech_start == pytest.approx(speech_start, abs=TOLERANCE)
        assert utterance.speech_end == pytest.approx(speech_end, abs=TOLERANCE)
        # The audio handed on starts a pre-roll (250 ms) before the speech and is the stream's own samples.
        assert begin.offset == utterance.offset and begin.speech_start == utterance.speech_start
        assert utterance.start == pytest.approx(utterance.speech_start - 0.25, abs=0.021)
        assert utterance.start >= previous_end
        assert utterance.end >= utterance.speech_end + 0.25
        assert np.array_equal(utterance.audio.samples,
                              samples[utterance.offset:utterance.offset + len(utterance.audio.samples)])
        assert utterance.seconds == pytest.approx(utterance.end - utterance.start, abs=1e-9)
        previous_end = utterance.end


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_end_of_speech_is_reported_within_400_ms(hello, query, rate, frame_ms):
    scene = build(rate, [0.8, query, 1.0, hello, 1.0], noise_dbfs=-55, seed=frame_ms)
    timed = feed(Endpointer(rate, frame_ms=frame_ms), scene.samples, chunk_ms=20)  # 20 ms RTP packets
    ended = [(event, at) for event, at in timed if isinstance(event, UtteranceEnded)]
    assert len(ended) == 2
    for (event, at), (_, speech_end) in zip(ended, scene.speech):
        latency = at - speech_end
        assert 0.0 < latency <= MAX_LATENCY, f"end-pointing took {latency * 1000:.0f} ms"
        assert event.end <= at + 1e-9


def test_speech_start_is_reported_promptly(query):
    scene = build(16000, [1.0, query, 1.0], noise_dbfs=-60)
    timed = feed(Endpointer(16000), scene.samples)
    (started, at), = [(e, t) for e, t in timed if isinstance(e, SpeechStarted)]
    assert 0.0 < at - scene.speech[0][0] <= 0.3  # soon enough to stop a prompt when the caller barges in
    assert started.start == pytest.approx(scene.speech[0][0] - 0.25, abs=TOLERANCE)


def test_speech_in_noise(hello, query):
    # White noise at -38 dBFS against speech at about -22 dBFS RMS: a poor mobile line.
    scene = build(16000, [1.5, hello, 1.2, query, 1.5], noise_dbfs=-38, seed=9)
    ended = events_of(feed(Endpointer(16000), scene.samples), UtteranceEnded)
    assert len(ended) == 2
    for utterance, (speech_start, speech_end) in zip(ended, scene.speech):
        assert utterance.speech_start == pytest.approx(speech_start, abs=TOLERANCE)
        assert utterance.speech_end == pytest.approx(speech_end, abs=TOLERANCE)


def test_speech_from_the_first_sample(hello):
    # A WeChat voice message often starts straight with speech: nothing is cut.
    scene = build(16000, [hello, 0.6], noise_dbfs=-70)
    (utterance,) = events_of(feed(Endpointer(16000), scene.samples), UtteranceEnded)
    assert utterance.offset == 0 and utterance.speech_start == pytest.approx(0.0, abs=TOLERANCE)
    assert utterance.speech_end == pytest.approx(scene.speech[0][1], abs=TOLERANCE)


def test_chunk_sizes_do_not_change_the_result(hello, query):
    scene = build(8000, [0.5, hello, 0.8, query, 0.7], noise_dbfs=-50)
    pcm = scene.samples.tobytes()
    whole = Endpointer(8000)
    reference = whole.feed(pcm) + whole.flush()
    chunked = Endpointer(8000)
    rng = np.random.default_rng(5)
    events, begin = [], 0
    while begin < len(pcm):
        size = int(rng.integers(1, 900))  # odd sizes split samples between chunks
        events += chunked.feed(pcm[begin:begin + size])
        begin += size
    events += chunked.flush()
    assert len(reference) == 4 and events == reference


# -- things that are not speech --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("kind", ["white", "pink", "brown", "hum", "car"])
@pytest.mark.parametrize("dbfs", [-50, -35, -20])
def test_noise_only_gives_nothing(rate, kind, dbfs):
    timed = feed(Endpointer(rate), noise(kind, 8.0, rate, dbfs))
    assert timed == []


def test_telephone_line_noise_gives_nothing():
    line = audio_io.from_telephone(audio_io.to_telephone(Audio(noise("white", 6.0, 8000, -45), 8000)))
    assert feed(Endpointer(8000), line.samples) == []


def test_clicks_give_nothing(query):
    rate = 16000
    rng = np.random.default_rng(4)
    base = rng.normal(0, 30, rate * 3)
    clicks = {}
    x = base.copy()
    x[rate] += 30000
    clicks["impulse"] = x
    x = base.copy()
    x[rate:rate + 80] += rng.normal(0, 15000, 80)
    clicks["5 ms burst"] = x
    x = base.copy()
    x[rate:rate + 480] += rng.normal(0, 15000, 480) * np.exp(-np.arange(480) / 80)
    clicks["30 ms knock"] = x
    x = base.copy()
    x[rate:2 * rate:rate // 10] += 25000
    clicks["pen tapping"] = x
    for name, signal in clicks.items():
        samples = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
        for aggressiveness in (0, 2, 3):
            assert feed(Endpointer(rate, aggressiveness=aggressiveness), samples) == [], name
    # And the caller speaking after a knock is found where the speech is.
    speech = audio_io.resample(query, rate).samples
    stream = np.concatenate([clicks["30 ms knock"].astype(np.int16), speech, np.zeros(rate, dtype=np.int16)])
    (utterance,) = events_of(feed(Endpointer(rate), stream), UtteranceEnded)
    assert utterance.speech_start == pytest.approx(3.0, abs=TOLERANCE)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_steady_tones_and_noise_switching_on_are_not_utterances(rate):
    t = np.arange(rate * 4) / rate
    base = np.random.default_rng(2).normal(0, 30, len(t))
    beep = base.copy()
    beep[rate:2 * rate] += 8000 * np.sin(2 * np.pi * 1000 * t[:rate])
    dtmf = base.copy()
    dtmf[rate:rate * 5 // 2] += 5000 * (np.sin(2 * np.pi * 697 * t[:rate * 3 // 2])
                                         + np.sin(2 * np.pi * 1209 * t[:rate * 3 // 2]))
    onset = np.concatenate([base[:rate * 2], noise("pink", 6.0, rate, -25, seed=8)])  # a fan is switched on
    for name, signal in (("beep", beep), ("dtmf", dtmf), ("noise onset", onset)):
        samples = np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
        timed = feed(Endpointer(rate), samples)
        assert events_of(timed, UtteranceEnded) == [], name
        assert len(events_of(timed, SpeechStarted)) == len(events_of(timed, SpeechCancelled)), name


def test_a_blip_shorter_than_the_minimum_is_cancelled(query):
    rate = 16000
    blip = query.samples[int(0.1 * rate):int(0.28 * rate)]  # 180 ms from inside a word
    stream = np.concatenate([np.zeros(rate, dtype=np.int16), blip, np.zeros(rate, dtype=np.int16)])
    timed = feed(Endpointer(rate), stream)
    assert events_of(timed, UtteranceEnded) == []
    longer = feed(Endpointer(rate, min_utterance_ms=100), stream)
    assert len(events_of(longer, UtteranceEnded)) == 1


# -- limits and the end of the stream --------------------------------------------------------------------------------


def test_max_length_forces_a_cut(query):
    rate = 8000
    talk = np.concatenate([audio_io.resample(query, rate).samples] * 8)  # 17 s without a pause
    stream = np.concatenate([np.zeros(rate // 2, dtype=np.int16), talk, np.zeros(rate, dtype=np.int16)])
    timed = feed(Endpointer(rate, max_utterance_ms=15000), stream)
    kinds = [type(event).__name__ for event, _ in timed]
    assert kinds == ["SpeechStarted", "UtteranceEnded", "SpeechStarted", "UtteranceEnded"]
    first, second = events_of(timed, UtteranceEnded)
    assert first.reason == "max_length" and first.seconds == pytest.approx(15.0, abs=0.03)
    assert second.reason == "silence" and second.start == first.end  # nothing lost, nothing twice
    assert second.speech_end == pytest.approx(0.5 + len(talk) / rate, abs=TOLERANCE)


def test_flush_closes_an_open_utterance(hello):
    rate = 16000
    stream = np.concatenate([np.zeros(rate // 2, dtype=np.int16), hello.samples, hello.samples[:101]])
    endpointer = Endpointer(rate)
    pcm = stream.tobytes() + b"\x01"  # a dangling half sample is dropped
    events = endpointer.feed(pcm)
    assert [type(e) for e in events] == [SpeechStarted] and endpointer.in_speech
    (utterance,) = endpointer.flush()
    assert isinstance(utterance, UtteranceEnded) and utterance.reason == "flush"
    assert utterance.end == pytest.approx(len(stream) / rate)  # the partial frame is included
    assert not endpointer.in_speech and endpointer.flush() == []
    # The clock keeps running for audio fed afterwards.
    endpointer.feed(np.zeros(rate, dtype=np.int16).tobytes())
    more = endpointer.feed(hello.samples.tobytes() + np.zeros(rate, dtype=np.int16).tobytes())
    (again,) = [e for e in more if isinstance(e, UtteranceEnded)]
    assert again.speech_start == pytest.approx(len(stream) / rate + 1.0, abs=TOLERANCE)


def test_flush_without_speech_gives_nothing():
    endpointer = Endpointer(8000)
    assert endpointer.feed(b"\x00" * 1001) == [] and endpointer.flush() == []


@pytest.mark.parametrize("kwargs", [dict(rate=44100), dict(rate=16000, frame_ms=25), dict(rate=8000, aggressiveness=4),
                                    dict(rate=8000, end_silence_ms=5), dict(rate=8000, start_ratio=0.0)])
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        Endpointer(**kwargs)


def test_noise_floor_follows_the_background():
    endpointer = Endpointer(8000)
    endpointer.feed(noise("white", 2.0, 8000, -40).tobytes())
    assert -48 < endpointer.noise_floor_dbfs < -38
