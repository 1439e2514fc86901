"""Leases: which process runs which job, and the decisions that must be made atomically against it.

A job (a generation row that isn't finished) belongs to the process named in `lease_owner` until
`lease_expires_at`; the owner renews its leases on a heartbeat. When a lease expires, any process may claim the
job: the claim increments `attempt`, and every write a runner makes names its attempt (`Lease`), so the old
runner, should it wake up, is refused (`LeaseLost`). Start-up and takeover are the same thing: claiming expired
leases.

Cancelling is a request stored on the row, decided here against the delivery: a job that started posting its
result can no longer be cancelled, and a job with a cancel request can no longer start posting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from storage._core import Core, NotFound, execute, fetchall, fetchone
from storage.generations import _UNFINISHED, Generation, GenerationStatus, Lease, LeaseLost
from storage.quota import LedgerState

log = logging.getLogger(__name__)

CLAIM_BATCH = 100


class CancelOutcome(StrEnum):
    REQUESTED = "requested"  # recorded; the job's runner stops at its next safe point and refunds
    ALREADY_REQUESTED = "already_requested"
    DELIVERING = "delivering"  # the video is being posted: too late, it will be delivered (and charged)
    FINISHED = "finished"  # it already ended one way or another


class DeliveryStart(StrEnum):
    STARTED = "started"
    CANCEL_REQUESTED = "cancel_requested"  # the member cancelled first: settle as cancelled instead


@dataclass(frozen=True, slots=True)
class ShardSlice:
    """The shards one process runs: it receives the events of the guilds `(guild_id >> 22) % count in ids`."""

    count: int
    ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.count < 1 or not self.ids or any(not 0 <= shard < self.count for shard in self.ids):
            raise ValueError(f"shards {self.ids} of {self.count} don't make sense")

    def owns(self, guild_id: int) -> bool:
        return (guild_id >> 22) % self.count in self.ids

    def sql(self) -> str:
        """The same test as SQL on `guild_id` (integers only: safe to inline)."""
        return f"((guild_id >> 22) % {int(self.count)}) IN ({', '.join(str(int(i)) for i in self.ids)})"


@dataclass(frozen=True, slots=True)
class OwnedJob:
    """A job this process holds, as the heartbeat sees it."""

    generation_id: int
    attempt: int
    cancel_requested_by: int | None


@dataclass(frozen=True, slots=True)
class StraySettlement:
    ledger_id: int
    generation_id: int | None
    state: LedgerState
    credits: int


class LeasesMixin(Core):
    async def claim_expired(
        self,
        owner: str,
        seconds: float,
        *,
        limit: int = CLAIM_BATCH,
        running: Collection[int] = (),
        shards: ShardSlice | None = None,
        foreign_grace: float = 0.0,
    ) -> list[Generation]:
        """Claim unfinished jobs whose lease has expired (or that never had one), oldest first: each gets the next
        attempt number and a lease for `seconds`. Safe against other processes claiming at the same time (on
        PostgreSQL rows another claimer holds are skipped, not waited for). The jobs `owner` is `running` itself
        are left alone: it renews those instead of taking them over from itself.

        With `shards`, jobs of guilds on this process's shards are claimed as soon as their lease expires, other
        guilds' only `foreign_grace` seconds later: the process that receives a guild's events gets the first
        chance to run its jobs, so one channel's edits normally come from one process."""
        async with self._transaction() as conn:
            now = self._now()  # once the write lock is held: a wait for it mustn't age the times written
            if shards is None or foreign_grace <= 0:
                due, due_params = "lease_expires_at <= ?", (now,)
            else:
                due = f"(({shards.sql()}) AND lease_expires_at <= ?) OR lease_expires_at <= ?"
                due_params = (now, now - foreign_grace)
            rows = await fetchall(
                conn,
                f"SELECT id, lease_owner FROM generations WHERE status IN {_UNFINISHED} "
                f"AND (lease_expires_at IS NULL OR {due}) ORDER BY id LIMIT ?" + self.dialect.skip_locked(),
                (*due_params, limit + len(running)),
            )
            mine = set(running)
            ids = [row["id"] for row in rows if not (row["lease_owner"] == owner and row["id"] in mine)][:limit]
            claimed: list[Generation] = []
            if ids:
                marks = ", ".join("?" for _ in ids)
                # A new attempt starts without a gateway slot: it asks for one again when it gets there.
                await execute(
                    conn,
                    "UPDATE generations SET attempt = attempt + 1, lease_owner = ?, lease_expires_at = ?, "
                    f"slot_requested_at = NULL, slot_granted_at = NULL, updated_at = ? WHERE id IN ({marks})",
                    (owner, now + seconds, now, *ids),
                )
                claimed = [
                    Generation.from_row(row)
                    for row in await fetchall(
                        conn, f"SELECT * FROM generations WHERE id IN ({marks}) ORDER BY id", ids
                    )
                ]
        if claimed:
            log.info("claimed %d jobs whose lease had expired: %s", len(claimed), [g.id for g in claimed])
        return claimed

    async def renew_leases(self, owner: str, seconds: float, held: Mapping[int, int]) -> dict[int, OwnedJob]:
        """Extend the leases of the jobs `owner` is running (`held`: generation id → attempt). A lease that ran out
        but that nobody claimed yet is still ours (the attempt didn't change): a late heartbeat loses nothing. A
        job dropped by its runner isn't in `held` and is left to expire. Returns what `owner` still holds, with
        any cancel request on it; a job claimed by another attempt since is missing."""
        if not held:
            return {}
        ids = list(held)
        marks = ", ".join("?" for _ in ids)
        async with self._transaction() as conn:
            now = self._now()  # once the write lock is held: a wait for it mustn't age the times written
            # Two statements for any number of jobs: a heartbeat of 500 jobs stays one short transaction.
            await execute(
                conn,
                f"UPDATE generations SET lease_expires_at = ? WHERE id IN ({marks}) AND lease_owner = ? "
                f"AND status IN {_UNFINISHED}",
                (now + seconds, *ids, owner),
            )
            rows = await fetchall(
                conn,
                f"SELECT id, attempt, cancel_requested_by FROM generations WHERE id IN ({marks}) "
                f"AND lease_owner = ? AND status IN {_UNFINISHED}",
                (*ids, owner),
            )
        return {
            row["id"]: OwnedJob(row["id"], row["attempt"], row["cancel_requested_by"])
            for row in rows
            if row["attempt"] == held[row["id"]]
        }

    async def release_lease(self, lease: Lease) -> bool:
        """Give the job up at once (a clean shutdown): the next process to look claims it without waiting."""
        changed = await self._execute(
            f"UPDATE generations SET lease_expires_at = ? WHERE id = ? AND attempt = ? AND lease_owner = ? "
            f"AND status IN {_UNFINISHED}",
            (self._now(), lease.generation_id, lease.attempt, lease.owner),
        )
        return changed > 0

    async def request_cancel(self, generation_id: int, user_id: int) -> CancelOutcome:
        """Record that `user_id` wants the job stopped, unless its video is already being posted."""
        async with self._transaction() as conn:
            row = await fetchone(
                conn,
                "SELECT status, cancel_requested_by FROM generations WHERE id = ?" + self.dialect.for_update(),
                (generation_id,),
            )
            if row is None:
                raise NotFound(f"generation {generation_id} doesn't exist")
            status = GenerationStatus(row["status"])
            if status is GenerationStatus.DELIVERING or status is GenerationStatus.SUCCEEDED:
                return CancelOutcome.DELIVERING
            if status.finished:
                return CancelOutcome.FINISHED
            if row["cancel_requested_by"] is not None:
                return CancelOutcome.ALREADY_REQUESTED
            await execute(
                conn,
                "UPDATE generations SET cancel_requested_by = ?, updated_at = ? WHERE id = ?",
                (user_id, self._now(), generation_id),
            )
        log.info("generation %s: cancel requested by %s", generation_id, user_id)
        return CancelOutcome.REQUESTED

    async def record_result(self, lease: Lease, result: Mapping[str, Any]) -> None:
        """The gateway says the video is ready: keep where it is, so any later attempt can fetch it again."""
        changed = await self._execute(
            "UPDATE generations SET result_json = ?, result_url = ?, thumbnail_url = ?, "
            "task_id = COALESCE(?, task_id), updated_at = ? "
            f"WHERE id = ? AND status IN {_UNFINISHED} AND attempt = ? AND lease_owner = ?",
            (
                json.dumps(dict(result)),
                result.get("video_url"),
                result.get("thumbnail_url"),
                result.get("task_id"),
                self._now(),
                lease.generation_id,
                lease.attempt,
                lease.owner,
            ),
        )
        if not changed:
            raise LeaseLost(lease)

    async def begin_delivery(self, lease: Lease) -> DeliveryStart:
        """running → delivering, unless a cancel was requested first. From here on the job is delivered."""
        async with self._transaction() as conn:
            now = self._now()  # once the write lock is held: a wait for it mustn't age the times written
            row = await fetchone(
                conn,
                "SELECT status, attempt, lease_owner, cancel_requested_by FROM generations WHERE id = ?"
                + self.dialect.for_update(),
                (lease.generation_id,),
            )
            if row is None:
                raise NotFound(f"generation {lease.generation_id} doesn't exist")
            if row["attempt"] != lease.attempt or row["lease_owner"] != lease.owner:
                raise LeaseLost(lease)
            status = GenerationStatus(row["status"])
            if status is GenerationStatus.DELIVERING:
                return DeliveryStart.STARTED  # a resumed delivery
            if status.finished:
                raise LeaseLost(lease)  # someone settled it (the sweeper, a cancel of an orphan): not ours to post
            if row["cancel_requested_by"] is not None:
                return DeliveryStart.CANCEL_REQUESTED
            await execute(
                conn,
                "UPDATE generations SET status = 'delivering', delivery_started_at = ?, updated_at = ? WHERE id = ?",
                (now, now, lease.generation_id),
            )
        return DeliveryStart.STARTED

    async def settle_strays(self) -> list[StraySettlement]:
        """Reservations still open on finished jobs (a crash between two writes of an older version, a manual
        edit): charged when the job succeeded, refunded otherwise. Idempotent."""
        settled: list[StraySettlement] = []
        async with self._transaction() as conn:
            now = self._now()  # once the write lock is held: a wait for it mustn't age the times written
            strays = await fetchall(
                conn,
                "SELECT l.id, l.generation_id, l.credits, g.status FROM ledger AS l "
                "LEFT JOIN generations AS g ON g.id = l.generation_id "
                f"WHERE l.state = 'reserved' AND (g.id IS NULL OR g.status NOT IN {_UNFINISHED})",
            )
            for stray in strays:
                state = LedgerState.CHARGED if stray["status"] == GenerationStatus.SUCCEEDED else LedgerState.REFUNDED
                await execute(
                    conn,
                    "UPDATE ledger SET state = ?, settled_at = ?, note = 'reconciled' WHERE id = ? "
                    "AND state = 'reserved'",
                    (state.value, now, stray["id"]),
                )
                settled.append(StraySettlement(stray["id"], stray["generation_id"], state, stray["credits"]))
        if settled:
            log.warning("settled %d reservations left open on finished jobs", len(settled))
        return settled

    async def unfinished_count(self) -> int:
        row = await self._fetchone(f"SELECT COUNT(*) AS n FROM generations WHERE status IN {_UNFINISHED}")
        return int(row["n"]) if row is not None else 0


__all__ = ["CancelOutcome", "DeliveryStart", "LeasesMixin", "OwnedJob", "ShardSlice", "StraySettlement"]
