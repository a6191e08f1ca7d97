"""The reranker: training pairs come from the corpus alone, training is seeded, the artifact round-trips and is
refused when it does not belong to the index; the answer decision uses it when the index has one."""
from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from knowledge_index import reranker as reranking
from knowledge_index.analysis import Analyzer
from knowledge_index.answering import decide
from knowledge_index.corpus import Corpus
from knowledge_index.evaluate import DEV_SET, TEST_SET, load_set
from knowledge_index.index import KnowledgeIndex, KnowledgeIndexError, build, version_name
from knowledge_index.scoring import RERANK, UNCALIBRATED, Calibration, rank, rerank

TINY = {**reranking.RECIPE, "layers": 1, "questions_per_entry": 2, "negatives": 1}


def _neighbours(corpus: Corpus):  # noqa: ANN202
    return lambda number, question: [(number + k) % len(corpus.entries) for k in range(1, len(corpus.entries))]


def test_training_pairs_are_the_corpus_own_questions(small_corpus: Corpus) -> None:
    pairs = reranking.training_pairs(small_corpus, _neighbours(small_corpus))
    assert pairs == reranking.training_pairs(small_corpus, _neighbours(small_corpus)), "seeded: same pairs"
    own = {q for e in small_corpus.entries for q in (e.title, *e.questions)}
    texts = {reranking.entry_text(e): e for e in small_corpus.entries}
    for question, text, label in pairs:
        entry = texts[text]
        if label == 1.0:
            assert question == entry.title or question in entry.questions
        else:
            assert question not in (entry.title, *entry.questions)
            assert question in own or any(n in question for names in reranking.TAXES.values() for n in names)
    positives = sum(label for _, _, label in pairs)
    assert positives == sum(1 + min(len(e.questions), reranking.RECIPE["questions_per_entry"]) for e in small_corpus.entries)
    assert len(pairs) - positives >= positives


def test_no_evaluation_question_is_trained_on() -> None:
    from knowledge_index.corpus import load_corpus

    corpus = load_corpus()
    asked = {q for e in corpus.entries for q in (e.title, *e.questions)}
    dev, test = load_set(DEV_SET), load_set(TEST_SET)
    held_out = {q for q, _ in dev.answerable + test.answerable} | set(dev.unanswerable) | set(test.unanswerable)
    pairs = reranking.training_pairs(corpus, lambda number, question: [(number + 1) % len(corpus.entries)])
    assert not {q for q, _, _ in pairs} & held_out
    assert {q for q, _, label in pairs if label == 1.0} <= asked


def test_a_near_miss_names_a_tax_the_entry_never_mentions(small_corpus: Corpus) -> None:
    entry = next(e for e in small_corpus.entries if e.id == "fx-basic-deduction")
    swapped = reranking.near_miss("个税起征点是多少", entry, random.Random(1))
    assert swapped is not None and swapped.endswith("起征点是多少") and "个税" not in swapped
    assert not any(name in reranking.entry_text(entry) for tax in reranking.TAXES
                   for name in reranking.TAXES[tax] if swapped.startswith(name))
    assert reranking.near_miss("起征点是多少", entry, random.Random(1)) is None


@pytest.fixture(scope="module")
def tiny_reranker(tmp_path_factory: pytest.TempPathFactory, small_corpus: Corpus):  # noqa: ANN201
    """A one-layer reranker trained on the fixture corpus: the mechanics, not the quality."""
    patch = pytest.MonkeyPatch()
    patch.setattr(reranking, "RECIPE", TINY)
    directory = tmp_path_factory.mktemp("reranker") / "reranker"
    meta = reranking.train(small_corpus, _neighbours(small_corpus), directory)
    yield directory, meta
    patch.undo()


def test_training_is_seeded_and_the_artifact_round_trips(tiny_reranker, small_corpus, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    directory, meta = tiny_reranker
    monkeypatch.setattr(reranking, "RECIPE", TINY)
    assert sorted(p.name for p in directory.iterdir()) == ["meta.json", "weights.safetensors"]
    assert meta.corpus_hash == small_corpus.digest() and meta.pairs > 0
    again = reranking.train(small_corpus, _neighbours(small_corpus), tmp_path / "again")
    assert again.fingerprint == meta.fingerprint
    assert (tmp_path / "again" / "weights.safetensors").read_bytes() == (directory / "weights.safetensors").read_bytes()

    loaded = reranking.Reranker(directory, corpus_hash=small_corpus.digest())
    entries = list(small_corpus.entries[:3])
    scores = loaded.score("个税起征点是多少", entries)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    assert np.allclose(scores, loaded.score("个税起征点是多少", entries))
    assert loaded.score("个税起征点是多少", []).shape == (0,)


def test_a_reranker_for_another_corpus_or_recipe_is_refused(tiny_reranker, monkeypatch) -> None:  # noqa: ANN001
    directory, _ = tiny_reranker
    monkeypatch.setattr(reranking, "RECIPE", TINY)
    with pytest.raises(reranking.RerankerError, match="another corpus"):
        reranking.Reranker(directory, corpus_hash="0" * 16)
    monkeypatch.setattr(reranking, "RECIPE", {**TINY, "lr": 1.0})
    with pytest.raises(reranking.RerankerError, match="rebuild"):
        reranking.Reranker(directory)


def test_an_index_has_no_reranker_unless_asked(small_index: KnowledgeIndex) -> None:
    assert small_index.meta.reranker is None and small_index.reranker is None


def test_an_index_with_a_reranker_answers_through_it(tiny_reranker, small_corpus, encoder, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    directory, _ = tiny_reranker
    monkeypatch.setattr(reranking, "RECIPE", TINY)
    cache = tmp_path / "cache" / "embeddings.sqlite3"
    plain_dir, _ = build(small_corpus, encoder, tmp_path / "plain", cache=cache, reranker=False)
    assert KnowledgeIndex(plain_dir, encoder).reranker is None
    # a reranker already trained for this version is where build looks before training one
    version = version_name(small_corpus, encoder.name, Analyzer(), reranking.fingerprint())
    shutil.copytree(directory, cache.parent / "rerankers" / version)
    index_dir, built = build(small_corpus, encoder, tmp_path / "kb", cache=cache, reranker=True)
    assert built and index_dir.name == version and (index_dir / "reranker" / "meta.json").is_file()
    index = KnowledgeIndex(index_dir, encoder)
    assert index.reranker is not None and index.meta.reranker == reranking.fingerprint()

    calibration = Calibration(encoder=index.meta.encoder, modes=dict(UNCALIBRATED))
    question = "各税起征点是多少钱"
    candidates = rerank(index.candidates(question), calibration, index.reranker, question)
    reread = [c for c in candidates if c.rerank is not None]
    assert 1 <= len(reread) <= reranking.TOP and all(c.hybrid is not None for c in reread)
    ranked = rank(candidates, calibration, RERANK)
    assert len(ranked) == len(candidates)
    assert all(s.candidate.rerank is not None for s in ranked[: len(reread)])
    assert all(a.probability >= b.probability for a, b in zip(ranked, ranked[1:]))
    assert decide(index, calibration, question, intent="ask_policy").ranked[0].candidate.rerank is not None

    # an index whose reranker does not load is refused (the service keeps the version it has)
    (index_dir / "reranker" / "meta.json").write_text("{}", encoding="utf-8")
    with pytest.raises(KnowledgeIndexError):
        KnowledgeIndex(index_dir, encoder)
