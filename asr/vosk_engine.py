"""Vosk (Kaldi) recognition: truly streaming, with grammars for menus.

For operators who install a Chinese Vosk model (vosk-model-cn-0.22 or vosk-model-small-cn-0.22 from the Vosk site;
none is on a package registry): set ``TAXBOT_ASR_VOSK_MODEL`` to its directory. Vosk end-points by itself (a final
result when the caller pauses); partial results come with every chunk. A grammar (a list of phrases, e.g. 是 / 不是 /
digits) restricts recognition to a menu's answers, which is far more robust on a phone line than free dictation.

Chinese models print words separated by spaces; the Chinese normaliser joins them and turns numbers into digits.
For other languages (the Korean model used in the tests) the text is returned as Vosk gives it.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Sequence

from asr import audio as audio_io
from asr.engine_base import RecognitionEngine
from asr.types import Audio, EngineUnavailable, Final, Partial, Result

logger = logging.getLogger(__name__)

CHUNK_SECONDS = 0.2


def _model_rate(model_dir: Path) -> int:
    conf = model_dir / "conf" / "mfcc.conf"
    if conf.is_file():
        match = re.search(r"--sample-frequency=(\d+)", conf.read_text())
        if match:
            return int(match.group(1))
    return 16000


class VoskEngine(RecognitionEngine):
    name = "vosk"

    def __init__(self, model_dir: Path, *, language: str = "zh", grammar: Sequence[str] | None = None,
                 normalizer=None) -> None:
        super().__init__(language=language, grammar=grammar, normalizer=normalizer)
        self.model_dir = Path(model_dir)
        self.model_rate = _model_rate(self.model_dir)

    def _load(self):
        try:
            import vosk
        except ImportError as exc:
            raise EngineUnavailable(f"vosk is not installed: {exc}") from exc
        vosk.SetLogLevel(-1)
        try:
            return vosk.Model(str(self.model_dir))
        except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
            raise EngineUnavailable(f"cannot load the Vosk model in {self.model_dir}: {exc}") from exc

    def recognizer(self):
        import vosk
        if self.grammar:
            recognizer = vosk.KaldiRecognizer(self.model, self.model_rate, json.dumps(self.grammar + ["[unk]"],
                                                                                      ensure_ascii=False))
        else:
            recognizer = vosk.KaldiRecognizer(self.model, self.model_rate)
        recognizer.SetWords(True)
        return recognizer

    def stream(self, rate: int) -> "VoskStream":
        return VoskStream(self, rate)

    def transcribe(self, audio: Audio) -> Final:
        stream = self.stream(audio.rate)
        results = stream.feed(audio.pcm()) + stream.finish()
        finals = [r for r in results if isinstance(r, Final) and r.text]
        if not finals:
            return Final(text="", confidence=0.0, start=0.0, end=audio.seconds, engine=self.name)
        text = ("" if self.language == "zh" else " ").join(f.text for f in finals)
        confidence = sum(f.confidence * len(f.text) for f in finals) / max(1, sum(len(f.text) for f in finals))
        return Final(text=text, confidence=round(confidence, 3), start=finals[0].start, end=finals[-1].end,
                     raw_text=" ".join(f.raw_text for f in finals), engine=self.name)


class VoskStream:
    """One caller. Vosk keeps its own state; audio is resampled to the model's rate first."""

    def __init__(self, engine: VoskEngine, rate: int) -> None:
        self.engine = engine
        self.rate = rate
        self.recognizer = engine.recognizer()
        self.consumed = 0.0  # seconds of audio fed so far
        self.utterance_start = 0.0
        self._last_partial = ""
        # also keeps an odd trailing byte for the next chunk when no resampling is needed
        self._resampler = audio_io.Resampler(rate, engine.model_rate)

    def _final(self, payload: str) -> list[Result]:
        data = json.loads(payload or "{}")
        words = [w for w in data.get("result", []) if w.get("word") and w.get("word") != "[unk]"]
        raw = " ".join(w["word"] for w in words) if words else data.get("text", "").replace("[unk]", "").strip()
        start, end = self.utterance_start, self.consumed
        if words:
            start, end = float(words[0].get("start", start)), float(words[-1].get("end", end))
        self.utterance_start = self.consumed
        self._last_partial = ""
        if not raw:
            return []
        confidence = sum(float(w.get("conf", 0.0)) for w in words) / len(words) if words else 0.5
        return [Final(text=self.engine.normalize(raw), confidence=round(confidence, 3), start=start, end=end,
                      raw_text=raw, engine=self.engine.name)]

    def feed(self, pcm: bytes, *, last: bool = False) -> list[Result]:
        raw = self._resampler.feed(pcm, last=last)
        results: list[Result] = []
        step = int(self.engine.model_rate * CHUNK_SECONDS) * 2
        for offset in range(0, len(raw), step):
            piece = raw[offset:offset + step]
            self.consumed += len(piece) / 2 / self.engine.model_rate
            if self.recognizer.AcceptWaveform(piece):
                results += self._final(self.recognizer.Result())
            else:
                partial = json.loads(self.recognizer.PartialResult() or "{}").get("partial", "").strip()
                if partial and partial != self._last_partial:
                    self._last_partial = partial
                    results.append(Partial(text=self.engine.normalize(partial), start=self.utterance_start,
                                           end=self.consumed))
        return results

    def finish(self) -> list[Result]:
        return self.feed(b"", last=True) + self._final(self.recognizer.FinalResult())
