"""At most N jobs talk to the gateway at once; the rest wait in order and know their position."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol


class Waiter(Protocol):
    def on_wait_position(self, position: int) -> None: ...


class SlotQueue:
    def __init__(self, slots: int) -> None:
        self.free = slots
        self.waiting: deque[tuple[Waiter, asyncio.Future[None]]] = deque()

    @contextlib.asynccontextmanager
    async def hold(self, waiter: Waiter) -> AsyncIterator[None]:
        await self.acquire(waiter)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, waiter: Waiter) -> None:
        if self.free > 0 and not self.waiting:
            self.free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append((waiter, future))
        self._announce()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # we were handed a slot just as we were cancelled: pass it on
            else:
                self.waiting = deque(entry for entry in self.waiting if entry[1] is not future)
                self._announce()
            raise

    def release(self) -> None:
        while self.waiting:
            _, future = self.waiting.popleft()
            if not future.done():
                future.set_result(None)
                self._announce()
                return
        self.free += 1

    def _announce(self) -> None:
        for position, (waiter, _) in enumerate(self.waiting, start=1):
            waiter.on_wait_position(position)


__all__ = ["SlotQueue", "Waiter"]
