"""The heartbeat of a process: renew the leases of its jobs, notice jobs it lost and cancel requests made
elsewhere, claim jobs whose lease expired (start-up and takeover are the same), and sweep inconsistencies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Protocol

from bot.clock import Clock
from storage import Generation, OwnedJob, ShardSlice, StraySettlement

log = logging.getLogger(__name__)


class LeaseStore(Protocol):
    async def claim_expired(
        self,
        owner: str,
        seconds: float,
        *,
        limit: int = ...,
        running: Collection[int] = ...,
        shards: ShardSlice | None = ...,
        foreign_grace: float = ...,
    ) -> list[Generation]: ...

    async def renew_leases(self, owner: str, seconds: float, held: Mapping[int, int]) -> dict[int, OwnedJob]: ...

    async def settle_strays(self) -> list[StraySettlement]: ...


def new_owner_id() -> str:
    """Unique per process (and per start): a restarted process is a new owner."""
    return uuid.uuid4().hex[:16]


class LeaseKeeper:
    def __init__(
        self,
        store: LeaseStore,
        clock: Clock,
        *,
        owner: str,
        lease_seconds: float,
        sweep_interval: float,
        held: Callable[[], Mapping[int, int]],  # generation id -> attempt, of the jobs this process runs
        on_lost: Callable[[int], None],
        on_cancel_requested: Callable[[int, int], None],
        on_claimed: Callable[[list[Generation]], Awaitable[None]],  # run beside the heartbeat, never blocking it
        shards: ShardSlice | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.sweep_interval = sweep_interval
        self.held = held
        self.on_lost = on_lost
        self.on_cancel_requested = on_cancel_requested
        self.on_claimed = on_claimed
        self.shards = shards
        self._task: asyncio.Task[None] | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self._last_sweep = float("-inf")
        self.claiming = True

    @property
    def beat(self) -> float:
        return self.lease_seconds / 3

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="lease-keeper")

    async def stop(self) -> None:
        self.claiming = False
        task, self._task = self._task, None
        tasks = [*([task] if task is not None else []), *self._adopting]
        for pending in tasks:
            pending.cancel()
        for pending in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await pending

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lease heartbeat failed; trying again in %.1f s", self.beat)
            await asyncio.sleep(self.beat)

    async def tick(self) -> None:
        """One heartbeat: renew, then claim, then (now and then) sweep."""
        held = dict(self.held())
        if held:
            owned = await self.store.renew_leases(self.owner, self.lease_seconds, held)
            for generation_id, attempt in held.items():
                job = owned.get(generation_id)
                if job is None or job.attempt != attempt:
                    self.on_lost(generation_id)
                elif job.cancel_requested_by is not None:
                    self.on_cancel_requested(generation_id, job.cancel_requested_by)
        if self.claiming:
            # Another shard's jobs wait one more beat: their own process, if it lives, gets them first.
            claimed = await self.store.claim_expired(
                self.owner,
                self.lease_seconds,
                running=list(self.held()),
                shards=self.shards,
                foreign_grace=self.beat,
            )
            if claimed:
                # Picking jobs up posts messages at Discord's pace: that must not delay the next renewal.
                adopting = asyncio.create_task(self.on_claimed(claimed), name="adopt-claimed-jobs")
                self._adopting.add(adopting)
                adopting.add_done_callback(self._adopting.discard)
        now = self.clock.monotonic()
        if now - self._last_sweep >= self.sweep_interval:
            self._last_sweep = now
            await self.store.settle_strays()


__all__ = ["LeaseKeeper", "LeaseStore", "new_owner_id"]
