"""A vosk-server on loopback for the client's tests: the WebSocket protocol of alphacep/vosk-server's
``websocket/asr_server.py`` (config message, binary PCM chunks answered with partial/final JSON, ``{"eof": 1}``),
recognising with the real Vosk library and model, in a thread. vosk-server itself is not on a package registry.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import vosk
from websockets.sync.server import serve


@contextmanager
def running_vosk_server(model_dir: Path) -> Iterator[str]:
    vosk.SetLogLevel(-1)
    model = vosk.Model(str(model_dir))

    def handle(connection) -> None:  # noqa: ANN001 (websockets' ServerConnection)
        recognizer = None
        rate = 16000.0
        grammar = None
        for message in connection:
            if isinstance(message, str):
                data = json.loads(message)
                if "config" in data:
                    rate = float(data["config"].get("sample_rate", rate))
                    grammar = data["config"].get("grammar")
                    recognizer = None
                    continue
                if data.get("eof"):
                    if recognizer is None:
                        connection.send(json.dumps({"text": ""}))
                    else:
                        connection.send(recognizer.FinalResult())
                    break
                continue
            if recognizer is None:
                recognizer = (vosk.KaldiRecognizer(model, rate, json.dumps(grammar, ensure_ascii=False))
                              if grammar else vosk.KaldiRecognizer(model, rate))
                recognizer.SetWords(True)
            if recognizer.AcceptWaveform(message):
                connection.send(recognizer.Result())
            else:
                connection.send(recognizer.PartialResult())

    with serve(handle, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        try:
            yield f"ws://127.0.0.1:{port}"
        finally:
            server.shutdown()
            thread.join(timeout=5)
