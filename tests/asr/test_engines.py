"""The recognition engines on real audio: Whisper (the default) on synthesized Mandarin, Vosk and the vosk-server
client with the one real Vosk model on the registry (Korean, spoken by espeak-ng), and the recognition pool."""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time

import numpy as np
import pytest

from asr import audio as audio_io
from asr.metrics import cer
from asr.models import registry_vosk_model
from asr.pool import RecognitionPool
from asr.types import Audio, EngineTimeout, EngineUnavailable, Final, Partial
from asr.vosk_engine import VoskEngine
from asr.vosk_server import VoskServerEngine
from tests.asr.vosk_server_peer import running_vosk_server

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="Debian's espeak-ng is not installed")
MENU_KO = ["예", "아니요", "상담원"]  # yes / no / an agent: a phone menu's answers


def espeak(text: str, voice: str = "ko") -> Audio:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", "130", "--stdout", text], check=True,
                         capture_output=True).stdout
    return audio_io.resample(audio_io.decode(wav), 16000)


def silence(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def feed_all(stream, pcm: bytes, chunk: int = 1600) -> list:
    results = []
    for offset in range(0, len(pcm), chunk):
        results += stream.feed(pcm[offset:offset + chunk])
    return results + stream.finish()


@pytest.fixture(scope="module")
def vosk_ko() -> VoskEngine:
    return VoskEngine(registry_vosk_model(), language="ko")


# ---------------------------------------------------------------------------------------------------------- Vosk

@needs_espeak
@pytest.mark.parametrize("word", MENU_KO)
def test_vosk_menu_grammar_recognises_each_answer(vosk_ko: VoskEngine, word: str) -> None:
    result = vosk_ko.with_grammar(MENU_KO).transcribe(espeak(word))
    assert result.text == word
    assert result.engine == "vosk" and 0.5 <= result.confidence <= 1.0


@needs_espeak
def test_vosk_streams_partials_then_one_final_per_utterance(vosk_ko: VoskEngine) -> None:
    audio = np.concatenate([silence(0.5), espeak("아니요").samples, silence(1.0), espeak("상담원").samples,
                            silence(1.0)])
    # a phone line: 8 kHz in, resampled to the model's 16 kHz by the stream
    phone = audio_io.resample(Audio(audio, 16000), 8000)
    results = feed_all(vosk_ko.with_grammar(MENU_KO).stream(8000), phone.pcm(), chunk=320)
    finals = [r for r in results if isinstance(r, Final)]
    assert [f.text for f in finals] == ["아니요", "상담원"]
    assert finals[0].end <= finals[1].start
    assert any(isinstance(r, Partial) for r in results)
    first_final = results.index(finals[0])
    assert any(isinstance(r, Partial) for r in results[:first_final])  # partials come before the final


def test_vosk_gives_nothing_for_silence_and_noise(vosk_ko: VoskEngine) -> None:
    rng = np.random.default_rng(7)
    noise = (rng.normal(0, 300, 16000 * 2)).astype(np.int16)
    assert vosk_ko.transcribe(Audio(silence(2.0), 16000)).text == ""
    grammar = vosk_ko.with_grammar(MENU_KO)
    assert grammar.transcribe(Audio(noise, 16000)).text == ""


def test_vosk_without_a_model_says_what_to_configure(tmp_path) -> None:
    from asr.engines import make_asr
    from asr.config import SpeechSettings

    with pytest.raises(EngineUnavailable, match="TAXBOT_ASR_VOSK_MODEL"):
        make_asr("vosk", SpeechSettings(asr_vosk_model=None))
    with pytest.raises(EngineUnavailable, match="Vosk model"):
        make_asr("vosk", SpeechSettings(asr_vosk_model=tmp_path))


# ---------------------------------------------------------------------------------------------- vosk-server client

@needs_espeak
def test_vosk_server_client_speaks_the_protocol() -> None:
    with running_vosk_server(registry_vosk_model()) as url:
        engine = VoskServerEngine(url, language="ko", grammar=MENU_KO)
        assert engine.transcribe(espeak("상담원")).text == "상담원"
        audio = np.concatenate([espeak("예").samples, silence(1.0), espeak("아니요").samples, silence(0.5)])
        results = feed_all(engine.stream(16000), Audio(audio, 16000).pcm())
        assert [r.text for r in results if isinstance(r, Final)] == ["예", "아니요"]


def test_vosk_server_unreachable_is_unavailable() -> None:
    engine = VoskServerEngine("ws://127.0.0.1:9", timeout=2)
    with pytest.raises(EngineUnavailable, match="vosk-server"):
        engine.transcribe(Audio(silence(0.5), 16000))


# ---------------------------------------------------------------------------------------------------- the pool

class SlowEngine:
    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = self.running = self.most_at_once = 0
        self._lock = threading.Lock()

    def transcribe(self, audio: Audio) -> Final:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(self.seconds)
        with self._lock:
            self.running -= 1
        return Final(text="好的", confidence=1.0, start=0.0, end=audio.seconds, engine=self.name)


async def test_pool_times_out_a_slow_engine_and_stays_usable() -> None:
    pool = RecognitionPool(SlowEngine(1.0), workers=2, timeout=0.2)
    started = time.monotonic()
    with pytest.raises(EngineTimeout):
        await pool.transcribe(Audio(silence(0.1), 16000))
    assert time.monotonic() - started < 0.8
    assert (await pool.transcribe(Audio(silence(0.1), 16000), timeout=5)).text == "好的"
    pool.close()


async def test_pool_runs_jobs_in_parallel_and_refuses_a_flood() -> None:
    engine = SlowEngine(0.3)
    pool = RecognitionPool(engine, workers=2, timeout=5, max_waiting=1)
    first = await asyncio.gather(*(pool.transcribe(Audio(silence(0.1), 16000)) for _ in range(2)))
    assert [r.text for r in first] == ["好的", "好的"] and engine.most_at_once == 2  # two at once
    results = await asyncio.gather(*(pool.transcribe(Audio(silence(0.1), 16000)) for _ in range(5)),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, EngineUnavailable)]
    assert len(refused) == 2 and engine.calls == 5  # 2 running + 1 waiting taken, the rest refused at once
    pool.close()


def test_cer_ignores_punctuation_and_width() -> None:
    assert cer("个税起征点是多少？", "个税起征点是多少") == 0.0
    assert cer("ＡＢ，１２", "ab12") == 0.0
    assert cer("增值税", "增直税") == pytest.approx(1 / 3)
    assert cer("", "") == 0.0 and cer("", "多余") == 1.0
