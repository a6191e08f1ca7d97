"""Desk events to every console and waiting user: in process by default, Redis pub/sub across replicas.

``publish`` may be called from any thread (the desk's database work runs in worker threads); subscribers are
asyncio queues on the service's event loop. With Redis, every replica publishes to one channel and fans what
it receives out to its own subscribers, so a console connected to replica A sees a handoff taken by replica B.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

logger = logging.getLogger(__name__)

Event = dict[str, Any]
QUEUE_LIMIT = 1000  # a console that stops reading loses events beyond this (it re-reads the state on reconnect)


class Bus:
    """In-process fan-out."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        self._loop = None

    def publish(self, event: Event) -> None:
        self._deliver_threadsafe(event)

    def _deliver_threadsafe(self, event: Event) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._fan_out(event)
        else:
            loop.call_soon_threadsafe(self._fan_out, event)

    def _fan_out(self, event: Event) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                logger.warning("bus.subscriber_lagging dropped=%s", event.get("type"))
                continue
            queue.put_nowait(event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


class RedisBus(Bus):
    """Fan-out through one Redis pub/sub channel."""

    def __init__(self, url: str, channel: str = "taxbot:desk") -> None:
        super().__init__()
        import redis  # imported here: only scale-out deployments need it

        self._url, self._channel = url, channel
        self._sync = redis.Redis.from_url(url, socket_timeout=5)
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self._url)
        pubsub = client.pubsub()
        await pubsub.subscribe(self._channel)
        self._listener = asyncio.create_task(self._listen(client, pubsub))

    async def _listen(self, client: Any, pubsub: Any) -> None:
        try:
            while True:
                try:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except Exception as exc:  # connection lost: say so, and keep trying
                    logger.warning("bus.redis_error %s", type(exc).__name__)
                    await asyncio.sleep(1)
                    continue
                if message and message.get("type") == "message":
                    try:
                        self._fan_out(json.loads(message["data"]))
                    except ValueError:
                        logger.warning("bus.bad_message")
        finally:
            await pubsub.aclose()
            await client.aclose()

    async def stop(self) -> None:
        if self._listener:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        self._sync.close()
        await super().stop()

    def publish(self, event: Event) -> None:
        try:
            self._sync.publish(self._channel, json.dumps(event, ensure_ascii=False, default=str))
        except Exception as exc:  # the state is in the database; consoles re-read it on their next event
            logger.warning("bus.publish_failed %s", type(exc).__name__)


def make_bus(redis_url: str | None) -> Bus:
    return RedisBus(redis_url) if redis_url else Bus()
