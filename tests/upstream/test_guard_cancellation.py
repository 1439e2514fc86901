"""A cancelled job stops: the event guard never swallows a cancellation (Python 3.11's `asyncio.wait_for` does
when the next event is ready at the same moment)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from bot.upstream.base import guard_events
from bot.upstream.types import Event, Progress


async def busy_stream() -> AsyncIterator[Event]:
    """An event every millisecond, like a chatty SSE stream."""
    percent = 0.0
    while True:
        await asyncio.sleep(0.001)
        percent += 0.001
        yield Progress(percent)


async def consume() -> None:
    async for _ in guard_events(busy_stream(), job_timeout=60):
        pass


async def test_cancelling_the_consumer_always_stops_it() -> None:
    for _ in range(30):
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.003)  # wakes in the same loop turn as the stream's timer: the racy moment
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=2)
        assert done == {task} and task.cancelled()
