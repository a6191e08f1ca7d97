"""Recognition off the event loop: a thread pool sized to the cores, with a deadline per job.

Engines decode in native code that releases the GIL (CTranslate2, Kaldi), so threads run in parallel. A job that
misses its deadline raises :class:`~asr.types.EngineTimeout` to the caller at once; its thread cannot be
interrupted and finishes in the background, so the number of jobs waiting is bounded too (``max_waiting``): a
flooded pool refuses new work quickly instead of piling up.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from asr.types import Audio, AsrEngine, EngineTimeout, EngineUnavailable, Final

logger = logging.getLogger(__name__)
T = TypeVar("T")


class RecognitionPool:
    def __init__(self, engine: AsrEngine, *, workers: int, timeout: float = 30.0, max_waiting: int | None = None) -> None:
        self.engine = engine
        self.workers = max(1, workers)
        self.timeout = timeout
        self.max_waiting = max_waiting if max_waiting is not None else self.workers * 8
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="asr")
        self._inflight = 0
        self._count_lock = threading.Lock()

    async def run(self, job: Callable[[], T], *, timeout: float | None = None) -> T:
        with self._count_lock:
            if self._inflight >= self.workers + self.max_waiting:
                raise EngineUnavailable("speech recognition is saturated; try again shortly")
            self._inflight += 1

        def tracked() -> T:
            try:
                return job()
            finally:
                with self._count_lock:
                    self._inflight -= 1

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, tracked)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout or self.timeout)
        except asyncio.TimeoutError:
            logger.warning("asr.timeout engine=%s seconds=%.1f", getattr(self.engine, "name", "?"), timeout or self.timeout)
            raise EngineTimeout(f"recognition took longer than {timeout or self.timeout:.0f} s") from None

    async def transcribe(self, audio: Audio, *, timeout: float | None = None) -> Final:
        started = time.monotonic()
        result = await self.run(lambda: self.engine.transcribe(audio), timeout=timeout)
        logger.info("asr.transcribed engine=%s audio_s=%.2f compute_s=%.2f chars=%d", self.engine.name, audio.seconds,
                    time.monotonic() - started, len(result.text))
        return result

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
