"""The knowledge base inside the service: one encoder, the active index version, and the switch to a new one.

``./taxbot kb build`` writes a new version and points ``CURRENT`` at it; a background task here notices within
``kb_reload_seconds``, loads the new version completely off the event loop, and only then swaps one reference, so
requests never see a half-loaded index and never wait for a load. A version that fails to load (or was built
with another encoder) is reported and the old one keeps serving.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from datetime import date
from pathlib import Path

from knowledge_index.answering import Outcome, decide, settle
from knowledge_index.encoders import Encoder, EncoderUnavailable, make_encoder
from knowledge_index.index import KnowledgeIndex, KnowledgeIndexError, current_version
from knowledge_index.scoring import Calibration, load_calibration, rank
from service.errors import EntryNotFound, KnowledgeUnavailable

logger = logging.getLogger(__name__)


class KnowledgeBase:
    def __init__(self, root: Path, encoder_spec: str, threads: int, serve_unreviewed: bool) -> None:
        self.root, self.encoder_spec, self.threads = root, encoder_spec, threads
        self.serve_unreviewed = serve_unreviewed
        self._encoder: Encoder | None = None
        self._state: tuple[KnowledgeIndex, Calibration] | None = None
        self._lock = threading.Lock()  # one loader at a time; readers never take it
        self._failed: str | None = None  # the version that last failed to load: not retried every poll
        self.problem: str | None = None

    @property
    def index(self) -> KnowledgeIndex | None:
        return self._state[0] if self._state else None

    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = make_encoder(self.encoder_spec, threads=self.threads)
        return self._encoder

    def refresh(self, retry_failed: bool = True) -> bool:
        """Load the active version if it is not the one serving; True when it switched. The watcher passes
        ``retry_failed=False``: a version that failed is reported once, not again at every poll."""
        with self._lock:
            version = current_version(self.root)
            if version is None:
                self.problem = f"no index under {self.root}: run ./taxbot kb build"
                return False
            if self._state and self._state[0].version == version:
                return False
            if version == self._failed and not retry_failed:
                return False
            try:
                encoder = self.encoder()
                index = KnowledgeIndex(self.root / "versions" / version, encoder)
                calibration = load_calibration(index.meta.encoder)
                index.candidates("个人所得税起征点")  # warm-up (jieba's dictionary, first FAISS call) before serving
            except (EncoderUnavailable, KnowledgeIndexError) as exc:
                self.problem, self._failed = str(exc), version
                logger.error("kb.load_failed version=%s %s", version, exc)
                return False
            previous = self._state[0].version if self._state else None
            self._state = (index, calibration)  # the switch: one reference assignment
            self.problem = self._failed = None
            logger.info("kb.active version=%s previous=%s entries=%d", version, previous, index.meta.entries)
            return True

    def _require(self) -> tuple[KnowledgeIndex, Calibration]:
        state = self._state
        if state is None:
            raise KnowledgeUnavailable(reason=self.problem or "knowledge base not loaded")
        return state

    def answer(self, question: str, intent: str | None, channel: str | None, today: date | None = None) -> tuple[Outcome, str]:
        index, calibration = self._require()
        return decide(index, calibration, question, intent=intent, channel=channel, today=today,
                      serve_unreviewed=self.serve_unreviewed), index.version

    def answer_entry(self, entry_id: str, channel: str | None, today: date | None = None) -> tuple[Outcome, str]:
        """The answer for an entry the user picked among candidates (no retrieval)."""
        index, calibration = self._require()
        entry = index.by_id.get(entry_id)
        if entry is None:
            raise EntryNotFound
        threshold = calibration.for_mode("hybrid").threshold
        return settle(entry, entry.title, [], threshold, channel, today or date.today(), self.serve_unreviewed), index.version

    def search(self, query: str, k: int):  # noqa: ANN201 - list[Scored]
        index, calibration = self._require()
        return rank(index.candidates(query), calibration, "hybrid")[:k], index.version

    async def watch(self, every: float) -> None:
        """Poll for a newly activated version until cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.refresh, False)
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad version; it is logged
                logger.exception("kb.watch_failed")
