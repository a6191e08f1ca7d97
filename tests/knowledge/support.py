"""Test encoders that stand in for other models."""
from __future__ import annotations

import numpy as np

from knowledge_index.encoders import Encoder


class RenamedEncoder:
    """The real encoder under another name: stands for 'an index built with a different model'."""

    def __init__(self, inner: Encoder, name: str) -> None:
        self.inner, self.name, self.dim = inner, name, inner.dim

    def encode_queries(self, texts):  # noqa: ANN001, ANN201
        return self.inner.encode_queries(texts)

    def encode_documents(self, texts):  # noqa: ANN001, ANN201
        return self.inner.encode_documents(texts)


class RandomEncoder:
    """Seeded random unit vectors, for index mechanics at scale."""

    name, dim = "random-test-encoder", 64

    def __init__(self, seed: int = 7) -> None:
        self.rng = np.random.default_rng(seed)

    def _rows(self, n: int) -> np.ndarray:
        rows = self.rng.standard_normal((n, self.dim)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def encode_queries(self, texts):  # noqa: ANN001, ANN201
        return self._rows(len(texts))

    encode_documents = encode_queries
