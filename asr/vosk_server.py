"""A client of vosk-server's WebSocket protocol (alphacep/vosk-server ``websocket/asr_server.py``), so recognition
can run on other machines.

The protocol: the client opens a WebSocket, sends ``{"config": {"sample_rate": R, "words": 1}}`` (optionally
``"grammar"``/``"phrase_list"``), then binary PCM16 chunks; after each chunk the server answers one JSON object,
either ``{"partial": "..."}`` or a final ``{"text": "...", "result": [{"word", "conf", "start", "end"}...]}``; the
client ends with ``{"eof": 1}`` and gets the last final result.
"""
from __future__ import annotations

import json
import logging
from typing import Sequence

from asr.engine_base import RecognitionEngine
from asr.types import Audio, EngineTimeout, EngineUnavailable, Final, Partial, Result

logger = logging.getLogger(__name__)

CHUNK_SECONDS = 0.2


class VoskServerEngine(RecognitionEngine):
    name = "vosk-server"

    def __init__(self, url: str, *, language: str = "zh", grammar: Sequence[str] | None = None,
                 timeout: float = 10.0, normalizer=None) -> None:
        super().__init__(language=language, grammar=grammar, normalizer=normalizer)
        self.url = url
        self.timeout = timeout

    def stream(self, rate: int) -> "VoskServerStream":
        return VoskServerStream(self, rate)

    def transcribe(self, audio: Audio) -> Final:
        stream = self.stream(audio.rate)
        try:
            results = stream.feed(audio.pcm()) + stream.finish()
        finally:
            stream.close()
        finals = [r for r in results if isinstance(r, Final) and r.text]
        if not finals:
            return Final(text="", confidence=0.0, start=0.0, end=audio.seconds, engine=self.name)
        joiner = "" if self.language == "zh" else " "
        return Final(text=joiner.join(f.text for f in finals),
                     confidence=round(sum(f.confidence for f in finals) / len(finals), 3),
                     start=finals[0].start, end=finals[-1].end, raw_text=" ".join(f.raw_text for f in finals),
                     engine=self.name)


class VoskServerStream:
    def __init__(self, engine: VoskServerEngine, rate: int) -> None:
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        self.engine = engine
        self.rate = rate
        self.consumed = 0.0
        self._errors = (OSError, TimeoutError, WebSocketException)
        try:
            self.socket = connect(engine.url, open_timeout=engine.timeout, close_timeout=1, max_size=2 ** 20)
        except self._errors as exc:
            raise EngineUnavailable(f"cannot reach vosk-server at {engine.url}: {exc}") from exc
        config: dict = {"sample_rate": rate, "words": 1}
        if engine.grammar:
            config["grammar"] = engine.grammar + ["[unk]"]
        self._exchange(json.dumps({"config": config}), expect_reply=False)

    def _exchange(self, message, *, expect_reply: bool = True) -> dict:
        try:
            self.socket.send(message)
            if not expect_reply:
                return {}
            return json.loads(self.socket.recv(timeout=self.engine.timeout))
        except TimeoutError as exc:
            raise EngineTimeout(f"vosk-server did not answer within {self.engine.timeout:.0f} s") from exc
        except self._errors as exc:
            raise EngineUnavailable(f"vosk-server connection failed: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise EngineUnavailable(f"vosk-server sent something that is not JSON: {exc}") from exc

    def _result(self, reply: dict) -> list[Result]:
        if "partial" in reply:
            text = self.engine.normalize(reply["partial"])
            return [Partial(text=text, start=0.0, end=self.consumed)] if text else []
        words = [w for w in reply.get("result", []) if w.get("word") and w["word"] != "[unk]"]
        raw = reply.get("text", "")
        text = self.engine.normalize(raw)
        if not text:
            return []
        confidence = sum(float(w.get("conf", 0)) for w in words) / len(words) if words else 0.5
        start = float(words[0]["start"]) if words else 0.0
        end = float(words[-1]["end"]) if words else self.consumed
        return [Final(text=text, confidence=round(confidence, 3), start=start, end=end, raw_text=raw,
                      engine=self.engine.name)]

    def feed(self, pcm: bytes) -> list[Result]:
        results: list[Result] = []
        step = int(self.rate * CHUNK_SECONDS) * 2
        for offset in range(0, len(pcm), step):
            piece = pcm[offset:offset + step]
            self.consumed += len(piece) / 2 / self.rate
            results += self._result(self._exchange(piece))
        return results

    def finish(self) -> list[Result]:
        return self._result(self._exchange(json.dumps({"eof": 1})))

    def close(self) -> None:
        try:
            self.socket.close()
        except self._errors:
            pass
