"""At most N jobs talk to the gateway at once — N across every process sharing the database — and the rest wait
in one line, oldest job first, and know their place in it.

The database decides (`storage.coordination`); this side keeps this process's waiting jobs and asks for all of them
in one short transaction: at once when a job starts waiting or a local job lets go of its slot, and every
`POLL_INTERVAL` while any wait (a slot freed by another process is seen then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from storage import Lease, LeaseLost, SlotTurn

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.5


class Waiter(Protocol):
    @property
    def lease(self) -> Lease: ...

    def on_wait_position(self, position: int) -> None: ...


class SlotStore(Protocol):
    async def arbitrate_slots(self, owner: str, capacity: int, wanting: Mapping[int, int]) -> SlotTurn: ...

    async def release_slot(self, lease: Lease) -> bool: ...


class SharedSlots:
    def __init__(self, store: SlotStore, owner: str, capacity: int, *, poll_interval: float = POLL_INTERVAL) -> None:
        self.store = store
        self.owner = owner
        self.capacity = capacity
        self.poll_interval = poll_interval
        self._waiting: dict[int, tuple[Waiter, asyncio.Future[None]]] = {}
        self._wake = asyncio.Event()
        self._arbiter: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def hold(self, waiter: Waiter) -> AsyncIterator[None]:
        await self.acquire(waiter)
        try:
            yield
        finally:
            await self._give_up(waiter.lease)

    async def acquire(self, waiter: Waiter) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[waiter.lease.generation_id] = (waiter, future)
        self._kick()
        try:
            await future
        except asyncio.CancelledError:
            self._waiting.pop(waiter.lease.generation_id, None)
            await self._give_up(waiter.lease)  # the slot we may just have been given, or our place in line
            raise

    async def close(self) -> None:
        if self._arbiter is not None:
            self._arbiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._arbiter

    async def _give_up(self, lease: Lease) -> None:
        try:
            await asyncio.shield(self.store.release_slot(lease))
        except Exception:
            # Not fatal: a slot whose job moved on is freed when the job's lease ends; the line skips it then.
            log.warning("generation %s: couldn't give up its gateway slot", lease.generation_id, exc_info=True)
        self._kick()

    def _kick(self) -> None:
        self._wake.set()
        if self._waiting and (self._arbiter is None or self._arbiter.done()):
            self._arbiter = asyncio.create_task(self._arbitrate(), name="gateway-slots")

    async def _arbitrate(self) -> None:
        while self._waiting:
            self._wake.clear()
            wanting = {gid: waiter.lease.attempt for gid, (waiter, _) in self._waiting.items()}
            try:
                turn = await self.store.arbitrate_slots(self.owner, self.capacity, wanting)
            except Exception:
                log.warning("couldn't ask the database for gateway slots; trying again", exc_info=True)
            else:
                self._apply(turn)
            if not self._waiting:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)

    def _apply(self, turn: SlotTurn) -> None:
        for generation_id in turn.granted | turn.lost:
            entry = self._waiting.pop(generation_id, None)
            if entry is None or entry[1].done():
                continue
            waiter, future = entry
            if generation_id in turn.granted:
                future.set_result(None)
            else:
                future.set_exception(LeaseLost(waiter.lease))
        for generation_id, position in turn.positions.items():
            entry = self._waiting.get(generation_id)
            if entry is not None:
                entry[0].on_wait_position(position)


__all__ = ["POLL_INTERVAL", "SharedSlots", "SlotStore", "Waiter"]
