"""What the recognition engines share: a model loaded once, on first use, by whichever thread needs it first; a
menu view (``with_grammar``) that shares the loaded model; and the Chinese text normaliser."""
from __future__ import annotations

import copy
import threading
from typing import Any, Callable, Sequence


class RecognitionEngine:
    name = ""

    def __init__(self, *, language: str = "zh", grammar: Sequence[str] | None = None,
                 normalizer: Callable[[str], str] | None = None) -> None:
        self.language = language
        self.grammar = list(grammar) if grammar else None
        self._normalizer = normalizer
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        """Load the engine's model (raise ``EngineUnavailable`` when it cannot be)."""
        return None

    @property
    def model(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def with_grammar(self, phrases: Sequence[str] | None):  # -> the same engine type
        """The same engine and loaded model, answering only with one of ``phrases`` (or "" for anything else)."""
        _ = self.model
        other = copy.copy(self)
        other.grammar = list(phrases) if phrases else None
        return other

    def normalize(self, text: str) -> str:
        text = text.replace("[unk]", "").strip()
        if self.language != "zh":
            return text
        if self._normalizer is None:
            from asr.normalize import normalize
            self._normalizer = normalize
        return self._normalizer(text)
