"""The index: a versioned build artifact on disk, and the loaded, immutable search structure.

Layout under the index root (``data/kb`` by default)::

    versions/<version>/meta.json      sidecar: encoder, dimension, normalisation, metric, corpus hash, build time
    versions/<version>/entries.json   the entries the index was built from (what the service answers with)
    versions/<version>/rows.json      vector row → entry number, and what the row is (title, question, answer)
    versions/<version>/dense.faiss    FAISS inner-product index over L2-normalised vectors
    versions/<version>/bm25/          BM25 (bm25s, numpy arrays and JSON: no pickle) + document frequencies
    versions/<version>/reranker/      the cross-encoder trained on this corpus (``reranker.py``), when there is one
    CURRENT                           the active version's name, replaced atomically

The version name is a hash of the corpus, the encoder, the lexical analysis and the reranker recipe, so a build
with nothing changed is a no-op, and building a new version never touches the one being served. A version
directory appears whole or not at all (written under a temporary name, then renamed); CURRENT is switched with
``os.replace``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np

from knowledge_index import reranker as reranking
from knowledge_index import signals, spelling
from knowledge_index.analysis import Analyzer, question_key
from knowledge_index.artifacts import staged_directory
from knowledge_index.corpus import Corpus, Entry
from knowledge_index.encoders import Encoder

logger = logging.getLogger(__name__)

FORMAT = 1
APPROXIMATE_ABOVE = 50_000  # vectors; below this an exact IndexFlatIP answers in about a millisecond
DENSE_CANDIDATES = 64  # vectors fetched per query before they are grouped by entry
LEXICAL_CANDIDATES = 20
# A question that names a year or says "before" may be about a past standard; any other is about today's rules.
PAST = re.compile(r"(?:19|20)?\d{2}\s*年|去年|前年|往年|以前|之前|原来|过去|当时|那时|历史")


class KnowledgeIndexError(RuntimeError):
    """The index cannot be used: missing, incomplete or corrupt."""


class KnowledgeIndexMismatch(KnowledgeIndexError):
    """The index was built with another encoder (or dimension) than the one configured."""


@dataclass(frozen=True)
class IndexMeta:
    format: int
    version: str
    encoder: str
    dim: int
    normalized: bool
    metric: str
    faiss_index: str
    analyzer: str
    corpus_hash: str
    entries: int
    vectors: int
    built_at: str
    build_seconds: float
    reranker: str | None = None  # the reranker's fingerprint (recipe and base model), None when it has none


@dataclass(frozen=True)
class Candidate:
    """One entry found for a query, with what each retriever thought of it."""

    entry: Entry
    dense: float  # best cosine similarity between the query and one of the entry's texts
    lexical: float  # share of the query's BM25 weight the entry matches, 0..1
    dense_rank: int | None  # 1-based rank among entries by dense score, None if not in the dense candidates
    lexical_rank: int | None
    answer: float = 0.0  # cosine between the query and the entry's answer text
    coverage: float = 0.0  # share of the query's words (idf-weighted) the entry contains; unknown words count against
    dense_margin: float = 0.0  # dense score minus the best dense score of any other entry
    unknown: float = 0.0  # the idf-weighted share of the query's words no entry contains (same for every candidate)
    tax_mismatch: float = 0.0  # share of the taxes the query names that the entry, about other taxes, never mentions
    rate_mismatch: float = 0.0  # the query states a rate (3%, 3个点) the entry never states
    future: float = 0.0  # the query asks for a prediction or about a coming year (same for every candidate)
    asked: bool = False  # the query is one of the entry's own questions (or its title), as an editor wrote it
    hybrid: float | None = None  # the hybrid model's log-odds, set with ``rerank`` (scoring.rerank)
    rerank: float | None = None  # the reranker's log-odds that the entry answers the query, for the top few only


class EmbeddingCache:
    """Vectors already computed, by encoder and text (SQLite, float32 bytes: no pickle), so that a build after
    an editor changed one entry encodes only that entry's texts."""

    def __init__(self, path: Path, encoder: Encoder) -> None:
        import sqlite3

        path.parent.mkdir(parents=True, exist_ok=True)
        self.encoder = encoder
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (encoder TEXT, kind TEXT, text TEXT, vector BLOB, "
                        "PRIMARY KEY (encoder, kind, text))")

    def encode(self, texts: list[str], kind: str) -> np.ndarray:
        known: dict[str, np.ndarray] = {}
        for start in range(0, len(texts), 500):
            chunk = texts[start:start + 500]
            rows = self.db.execute(
                f"SELECT text, vector FROM vectors WHERE encoder = ? AND kind = ? AND text IN ({','.join('?' * len(chunk))})",
                [self.encoder.name, kind, *chunk],
            )
            known.update({text: np.frombuffer(blob, dtype=np.float32) for text, blob in rows})
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            encode = self.encoder.encode_queries if kind == "query" else self.encoder.encode_documents
            fresh = encode(missing)
            known.update(zip(missing, fresh))
            with self.db:
                self.db.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?)",
                    [(self.encoder.name, kind, t, np.asarray(v, dtype=np.float32).tobytes()) for t, v in zip(missing, fresh)],
                )
        if not texts:
            return np.zeros((0, self.encoder.dim), dtype=np.float32)
        return np.stack([known[t] for t in texts]).astype(np.float32)

    def close(self) -> None:
        self.db.close()


def version_name(corpus: Corpus, encoder_name: str, analyzer: Analyzer, reranker: str | None = None) -> str:
    key = json.dumps([FORMAT, corpus.digest(), encoder_name, analyzer.fingerprint] + ([reranker] if reranker else []))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _set_faiss_threads() -> None:
    import faiss

    # One OpenMP thread per query: with two, a single small search is 10-20x slower here (faiss#2953).
    faiss.omp_set_num_threads(1)


def _dense_index(vectors: np.ndarray, approximate_above: int):  # noqa: ANN202 - faiss has no types
    import faiss

    dim = vectors.shape[1]
    if len(vectors) > approximate_above:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.hnsw.efSearch = 128
        kind = "HNSW32,Flat"
    else:
        index, kind = faiss.IndexFlatIP(dim), "Flat"
    index.add(vectors)
    return index, kind


def build(
    corpus: Corpus,
    encoder: Encoder,
    root: Path,
    analyzer: Analyzer | None = None,
    *,
    force: bool = False,
    activate_it: bool = True,
    approximate_above: int = APPROXIMATE_ABOVE,
    cache: bool | Path = True,
    reranker: bool = False,
) -> tuple[Path, bool]:
    """Build the index version for ``corpus`` under ``root`` unless it exists; return (directory, built).
    Vectors are kept in an embedding cache and reused by later builds: ``root/embeddings.sqlite3``, or the file
    ``cache`` names; ``cache=False`` encodes everything. ``reranker``: also train the cross-encoder (``reranker.py``;
    about 15 minutes on two busy cores, once per version, kept in ``rerankers/`` beside the embedding cache). Off by
    default: measured on the evaluation set it does not yet pay for its cost (see the module)."""
    import bm25s
    import faiss

    analyzer = analyzer or Analyzer()
    version = version_name(corpus, encoder.name, analyzer, reranking.fingerprint() if reranker else None)
    versions = root / "versions"
    target = versions / version
    if (target / "meta.json").is_file() and not force:
        if activate_it:
            activate(root, version)
        return target, False
    started = time.perf_counter()
    with staged_directory(target) as staging:
        rows: list[tuple[int, str]] = []
        query_texts: list[str] = []
        document_texts: list[str] = []
        for number, entry in enumerate(corpus.entries):
            for kind, text in (("title", entry.title), *(("question", q) for q in entry.questions)):
                rows.append((number, kind))
                query_texts.append(text)
        for number, entry in enumerate(corpus.entries):
            rows.append((number, "answer"))
            document_texts.append(entry.answer)
        cache_file = cache if isinstance(cache, Path) else root / "embeddings.sqlite3"
        if cache:
            store = EmbeddingCache(cache_file, encoder)
            try:
                vectors = np.vstack([store.encode(query_texts, "query"), store.encode(document_texts, "document")])
            finally:
                store.close()
        else:
            vectors = np.vstack([encoder.encode_queries(query_texts), encoder.encode_documents(document_texts)])
        if vectors.shape[1] != encoder.dim:
            raise KnowledgeIndexError(f"encoder returned {vectors.shape[1]} dimensions, declared {encoder.dim}")
        dense, kind = _dense_index(np.ascontiguousarray(vectors, dtype=np.float32), approximate_above)
        faiss.write_index(dense, str(staging / "dense.faiss"))

        documents = [analyzer.tokens(" ".join(entry.passages())) for entry in corpus.entries]
        lexical = bm25s.BM25()
        lexical.index(documents, show_progress=False)
        lexical.save(str(staging / "bm25"), show_progress=False)
        vocabulary = lexical.vocab_dict
        frequencies = np.zeros(len(vocabulary), dtype=np.int32)
        for tokens in documents:
            for token in set(tokens):
                frequencies[vocabulary[token]] += 1
        np.save(staging / "bm25" / "document_frequency.npy", frequencies, allow_pickle=False)

        (staging / "entries.json").write_text(
            json.dumps([e.model_dump(mode="json") for e in corpus.entries], ensure_ascii=False), encoding="utf-8"
        )
        (staging / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
        meta = IndexMeta(
            format=FORMAT,
            version=version,
            encoder=encoder.name,
            dim=encoder.dim,
            normalized=True,
            metric="inner_product",
            faiss_index=kind,
            analyzer=analyzer.fingerprint,
            corpus_hash=corpus.digest(),
            entries=len(corpus.entries),
            vectors=len(vectors),
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            build_seconds=round(time.perf_counter() - started, 2),
            reranker=reranking.fingerprint() if reranker else None,
        )
        (staging / "meta.json").write_text(json.dumps(asdict(meta), ensure_ascii=False, indent=1), encoding="utf-8")
        if reranker:
            trained = (cache_file.parent if cache else root) / "rerankers" / version
            if not (trained / "meta.json").is_file() or force:
                _train_reranker(corpus, staging, encoder, analyzer, rows, vectors, trained)
            shutil.copytree(trained, staging / "reranker")
            meta = IndexMeta(**{**asdict(meta), "build_seconds": round(time.perf_counter() - started, 2)})
            (staging / "meta.json").write_text(json.dumps(asdict(meta), ensure_ascii=False, indent=1), encoding="utf-8")
    logger.info("kb.built version=%s entries=%d vectors=%d seconds=%.1f", version, meta.entries, meta.vectors,
                meta.build_seconds)
    if activate_it:
        activate(root, version)
    return target, True


def _train_reranker(corpus: Corpus, staging: Path, encoder: Encoder, analyzer: Analyzer, rows: list[tuple[int, str]],
                    vectors: np.ndarray, out: Path) -> None:
    """Train the reranker with the hard negatives this index proposes: for each training question, the other
    entries both retrievers rank near it. The questions' vectors are the ones just indexed (row by row)."""
    index = KnowledgeIndex(staging, encoder, analyzer, load_reranker=False)
    row_of = {(number, kind, text): row for row, ((number, kind), text) in
              enumerate(zip(rows, [t for e in corpus.entries for t in (e.title, *e.questions)]))}
    numbers = {e.id: n for n, e in enumerate(corpus.entries)}

    def fused(c: Candidate) -> float:
        return (1.0 / c.dense_rank if c.dense_rank else 0.0) + (1.0 / c.lexical_rank if c.lexical_rank else 0.0)

    def neighbours(number: int, question: str) -> list[int]:
        entry = corpus.entries[number]
        kind = "title" if question == entry.title else "question"
        row = row_of.get((number, kind, question))
        vector = vectors[row:row + 1] if row is not None else None
        found = index.candidates(question, vector=vector)
        return [numbers[c.entry.id] for c in sorted(found, key=lambda c: (-fused(c), c.entry.id))]

    reranking.train(corpus, neighbours, out)


def activate(root: Path, version: str) -> None:
    """Make ``version`` the one the service answers from: one atomic rename."""
    if not (root / "versions" / version / "meta.json").is_file():
        raise KnowledgeIndexError(f"no complete index version {version} under {root}")
    pointer = root / "CURRENT"
    staging = root / f".CURRENT.{os.getpid()}"
    staging.write_text(version + "\n", encoding="utf-8")
    os.replace(staging, pointer)


def current_version(root: Path) -> str | None:
    try:
        return (root / "CURRENT").read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def prune(root: Path, keep: int = 3) -> list[str]:
    """Remove old versions, keeping the current one and the ``keep`` newest."""
    current = current_version(root)
    versions = sorted((p for p in (root / "versions").glob("[!.]*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    removable = [p for p in versions[:-keep] if p.name != current] if keep else [p for p in versions if p.name != current]
    for path in removable:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in removable]


class KnowledgeIndex:
    """A loaded index version: immutable, safe to share between request threads."""

    def __init__(self, directory: Path, encoder: Encoder, analyzer: Analyzer | None = None, *,
                 load_reranker: bool = True) -> None:
        import bm25s
        import faiss

        self.directory = directory
        try:
            raw = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            self.meta = IndexMeta(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise KnowledgeIndexError(f"index at {directory} has no readable meta.json: {exc}") from exc
        if self.meta.format != FORMAT:
            raise KnowledgeIndexError(f"index format {self.meta.format}, this code reads {FORMAT}: rebuild it")
        if self.meta.encoder != encoder.name or self.meta.dim != encoder.dim:
            raise KnowledgeIndexMismatch(
                f"index {self.meta.version} was built with encoder {self.meta.encoder} ({self.meta.dim} dimensions); "
                f"the configured encoder is {encoder.name} ({encoder.dim} dimensions). "
                "Rebuild it with `./taxbot kb build` or configure the encoder it was built with."
            )
        self.analyzer = analyzer or Analyzer()
        if self.meta.analyzer != self.analyzer.fingerprint:
            raise KnowledgeIndexMismatch(f"index {self.meta.version} used another tax dictionary or synonym table: rebuild it")
        self.encoder = encoder
        try:
            self.entries = tuple(Entry.model_validate(e) for e in json.loads((directory / "entries.json").read_text("utf-8")))
            rows = json.loads((directory / "rows.json").read_text(encoding="utf-8"))
            self._row_entry = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            _set_faiss_threads()
            self._dense = faiss.read_index(str(directory / "dense.faiss"))
            self._lexical = bm25s.BM25.load(str(directory / "bm25"))
            frequencies = np.load(directory / "bm25" / "document_frequency.npy", allow_pickle=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise KnowledgeIndexError(f"index {self.meta.version} is incomplete or corrupt: {exc}") from exc
        if self._dense.ntotal != self.meta.vectors or len(rows) != self.meta.vectors:
            raise KnowledgeIndexError(f"index {self.meta.version} is inconsistent: {self._dense.ntotal} vectors")
        self._vocabulary: dict[str, int] = self._lexical.vocab_dict
        # Which entries hold each token: BM25's column structure, with each column's entry numbers sorted.
        columns = self._lexical.scores
        self._postings_start = np.asarray(columns["indptr"], dtype=np.int64)
        holders = np.asarray(columns["indices"], dtype=np.int64)
        column = np.repeat(np.arange(len(self._postings_start) - 1), np.diff(self._postings_start))
        self._postings = holders[np.lexsort((holders, column))]
        documents = len(self.entries)
        self._idf = np.log(1 + (documents - frequencies + 0.5) / (frequencies + 0.5)).astype(np.float32)
        self._unseen_idf = float(np.log(1 + (documents + 0.5) / 0.5))
        self.by_id = {entry.id: entry for entry in self.entries}
        # the editors' own phrasings: a question asked exactly so is that entry's (lint keeps them unique)
        self._asked = {question_key(text): number for number, entry in enumerate(self.entries)
                       for text in (entry.title, *entry.questions)}
        # per entry: the taxes it names and the rates it states (signals.py)
        self._signals = [(signals.taxes_named(t), signals.rates(t)) for t in map(signals.entry_text, self.entries)]
        self._answer_row = {int(r[0]): row for row, r in enumerate(rows) if r[1] == "answer"}
        self.reranker: reranking.Reranker | None = None
        if load_reranker and self.meta.reranker:
            try:
                self.reranker = reranking.Reranker(directory / "reranker", corpus_hash=self.meta.corpus_hash)
            except reranking.RerankerError as exc:
                raise KnowledgeIndexError(f"index {self.meta.version}: {exc}") from exc

    @property
    def version(self) -> str:
        return self.meta.version

    def corrected(self, query: str) -> str:
        """``query`` with typed typos and recognition homophones of domain words corrected (发漂 → 发票), where the
        correction gives a word this knowledge base uses, and a measure word between 开 and an invoice dropped
        (``spelling.py``)."""
        return spelling.correct(spelling.drop_measure_words(query), self._vocabulary, self.analyzer.spans)

    def _lexical_scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 per entry, divided by the most the query could score: the sum of its tokens' idf, where a token
        no entry contains counts with the highest idf. So 1.0 means every query token matched strongly, and
        a question full of words the knowledge base never uses scores low however its other words match."""
        known = [t for t in tokens if t in self._vocabulary]
        ceiling = sum(float(self._idf[self._vocabulary[t]]) for t in known) + self._unseen_idf * (len(tokens) - len(known))
        if not known or ceiling <= 0:
            return np.zeros(len(self.entries), dtype=np.float32)
        scores = np.asarray(self._lexical.get_scores(known), dtype=np.float32)
        return np.clip(scores / ceiling, 0.0, 1.0)

    def _coverage(self, tokens: list[str], numbers: list[int]) -> dict[int, float]:
        """For each entry, the idf-weighted share of the query's words (not bigrams) that occur in it. A question
        about 期权 or 满五唯一 that an entry never mentions is not answered by that entry, however close it is."""
        words = [t for t in tokens if not t.startswith("#")]
        if not words or not numbers:
            return {n: 0.0 for n in numbers}
        candidates = np.asarray(numbers, dtype=np.int64)
        covered = np.zeros(len(candidates))
        total = 0.0
        for word in words:
            token = self._vocabulary.get(word)
            weight = float(self._idf[token]) if token is not None else self._unseen_idf
            total += weight
            if token is None:
                continue
            holders = self._postings[self._postings_start[token]:self._postings_start[token + 1]]  # sorted entry numbers
            if len(holders):
                at = np.minimum(np.searchsorted(holders, candidates), len(holders) - 1)
                covered += weight * (holders[at] == candidates)
        return {int(n): float(c / total) for n, c in zip(candidates, covered)}

    def _unknown(self, tokens: list[str]) -> float:
        """The idf-weighted share of the query's words (not bigrams) that no entry contains. ``coverage`` counts
        them against every entry alike; this tells the model how much of the query is words the knowledge base
        never uses (a subject it lacks, or colloquial words, typos and recognition errors)."""
        words = [t for t in tokens if not t.startswith("#")]
        known = [float(self._idf[self._vocabulary[w]]) for w in words if w in self._vocabulary]
        missing = self._unseen_idf * (len(words) - len(known))
        return missing / (missing + sum(known)) if words else 0.0

    def _dense_scores(self, query: str, vector: np.ndarray | None = None) -> tuple[dict[int, float], np.ndarray]:
        if vector is None:
            vector = self.encoder.encode_queries([query])
        fetched = min(DENSE_CANDIDATES, self.meta.vectors)
        scores, rows = self._dense.search(vector, fetched)
        best: dict[int, float] = {}
        for score, row in zip(scores[0], rows[0]):
            if row < 0:
                continue
            number = int(self._row_entry[row])
            if number not in best:  # rows come best first
                best[number] = float(score)
        return best, vector[0]

    def _answer_scores(self, vector: np.ndarray, numbers: list[int]) -> dict[int, float]:
        """Cosine between the query and each candidate's answer: a question an entry's answer does not address
        scores lower here than against the entry's own questions."""
        rows = [self._answer_row[n] for n in numbers]
        answers = np.vstack([self._dense.reconstruct(int(r)) for r in rows]) if rows else np.zeros((0, len(vector)))
        return {n: float(s) for n, s in zip(numbers, answers @ vector)}

    def candidates(self, query: str, today: date | None = None, *, vector: np.ndarray | None = None) -> list[Candidate]:
        """Entries either retriever proposes, with both scores; unordered (the scorer ranks them). Entries no longer
        in force are proposed only when the question looks at the past (a year, 以前, 去年 …). The question is
        first corrected for typos and homophones of domain words (:meth:`corrected`). ``vector``: the embedding of
        ``query`` as given, when it is already known (1 × dim); the question is then taken as it is."""
        asked = self._asked.get(question_key(query))
        if vector is None:
            query = self.corrected(query)
        if asked is None:
            asked = self._asked.get(question_key(query))
        dense, vector = self._dense_scores(query, vector)
        tokens = list(dict.fromkeys(self.analyzer.tokens(query)))  # the query's BM25 tokens, once, in order
        lexical = self._lexical_scores(tokens)
        if len(lexical) > LEXICAL_CANDIDATES:
            head = np.argpartition(-lexical, LEXICAL_CANDIDATES)[:LEXICAL_CANDIDATES]
            top_lexical = head[np.argsort(-lexical[head], kind="stable")]
        else:
            top_lexical = np.argsort(-lexical, kind="stable")
        lexical_rank = {int(n): rank for rank, n in enumerate(top_lexical, start=1) if lexical[n] > 0}
        dense_rank = {n: rank for rank, n in enumerate(dense, start=1)}
        floor = min(dense.values()) if dense else 0.0  # entries outside the dense list scored at most this
        numbers = list(dense) + [n for n in lexical_rank if n not in dense]
        if asked is not None and asked not in numbers:
            numbers.append(asked)
        if not PAST.search(query):
            day = today or date.today()
            numbers = [n for n in numbers if self.entries[n].effective_to is None or self.entries[n].effective_to >= day]
        coverage = self._coverage(tokens, numbers)
        answer = self._answer_scores(vector, numbers)
        unknown = self._unknown(tokens)
        taxes, rates = signals.taxes_named(query), signals.rates(query)
        future = signals.future(query, today or date.today())
        ordered = sorted(dense.values(), reverse=True)
        best, second = (ordered + [floor, floor])[:2]
        return [
            Candidate(
                entry=self.entries[n],
                dense=dense.get(n, floor),
                lexical=float(lexical[n]),
                dense_rank=dense_rank.get(n),
                lexical_rank=lexical_rank.get(n),
                answer=answer[n],
                coverage=coverage[n],
                dense_margin=dense.get(n, floor) - (second if dense.get(n, floor) >= best else best),
                unknown=unknown,
                tax_mismatch=signals.tax_mismatch(taxes, self._signals[n][0]),
                rate_mismatch=signals.rate_mismatch(rates, self._signals[n][1]),
                future=future,
                asked=n == asked,
            )
            for n in numbers
        ]
