"""What the processes sharing one database agree on through it: who may talk to the gateway now (the gateway
slots), and when a shard may log in to Discord (identify turns).

Gateway slots: `SORA_MAX_CONCURRENT_JOBS` is the gateway's limit, not one process's. A job waiting for a slot has
`slot_requested_at`; `arbitrate_slots` (one short transaction, the slot lock held) counts the slots held by jobs
whose lease is alive, hands the free ones to the oldest waiting jobs — of any process — and tells the caller
which of its jobs hold one and where the others stand in the one line. A dead process's slots free themselves
when its leases expire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from storage._core import LOCK_GATEWAY_SLOTS, LOCK_IDENTIFY, Core, execute, fetchall, fetchone
from storage.generations import _UNFINISHED, Lease

IDENTIFY_MARGIN = 0.1  # seconds


@dataclass(frozen=True, slots=True)
class SlotTurn:
    """What one arbitration decided for the caller's waiting jobs."""

    granted: frozenset[int]  # these hold a gateway slot now
    positions: dict[int, int] = field(default_factory=dict)  # the others: 1 = next in line, across all processes
    lost: frozenset[int] = frozenset()  # no longer this attempt's (claimed elsewhere, or finished)


class CoordinationMixin(Core):
    async def arbitrate_slots(self, owner: str, capacity: int, wanting: Mapping[int, int]) -> SlotTurn:
        """`wanting`: this process's jobs that wait for a gateway slot (generation id → attempt). Each is put in
        line (if it isn't yet), free slots go to the head of the line, and the answer says where each stands."""
        async with self._transaction() as conn:
            await conn.lock(LOCK_GATEWAY_SLOTS)
            now = self._now()
            if wanting:
                marks = ", ".join("?" for _ in wanting)
                mine = await fetchall(
                    conn,
                    f"SELECT id, attempt FROM generations WHERE id IN ({marks}) AND lease_owner = ? "
                    f"AND status IN {_UNFINISHED}",
                    (*wanting, owner),
                )
                current = {row["id"] for row in mine if row["attempt"] == wanting[row["id"]]}
                if current:
                    ids = sorted(current)
                    await execute(
                        conn,
                        f"UPDATE generations SET slot_requested_at = ? WHERE id IN ({', '.join('?' for _ in ids)}) "
                        "AND slot_requested_at IS NULL",
                        (now, *ids),
                    )
            else:
                current = set()
            alive = f"status IN {_UNFINISHED} AND lease_expires_at > ?"
            held = await fetchone(
                conn, f"SELECT COUNT(*) AS n FROM generations WHERE slot_granted_at IS NOT NULL AND {alive}", (now,)
            )
            free = capacity - int(held["n"] if held is not None else 0)
            line = await fetchall(
                conn,
                "SELECT id FROM generations WHERE slot_requested_at IS NOT NULL AND slot_granted_at IS NULL "
                f"AND {alive} ORDER BY id",
                (now,),
            )
            waiting = [row["id"] for row in line]
            if free > 0 and waiting:
                lucky = waiting[:free]
                await execute(
                    conn,
                    f"UPDATE generations SET slot_granted_at = ? WHERE id IN ({', '.join('?' for _ in lucky)})",
                    (now, *lucky),
                )
                waiting = waiting[free:]
            granted: set[int] = set()
            if current:
                ids = sorted(current)
                rows = await fetchall(
                    conn,
                    f"SELECT id FROM generations WHERE id IN ({', '.join('?' for _ in ids)}) "
                    "AND slot_granted_at IS NOT NULL",
                    ids,
                )
                granted = {row["id"] for row in rows}
        positions = {generation_id: index for index, generation_id in enumerate(waiting, start=1)}
        return SlotTurn(
            granted=frozenset(granted),
            positions={gid: positions[gid] for gid in current - granted if gid in positions},
            lost=frozenset(set(wanting) - current),
        )

    async def release_slot(self, lease: Lease) -> bool:
        """The job is done with the gateway (or stopped waiting): its slot, or its place in line, is given up."""
        changed = await self._execute(
            "UPDATE generations SET slot_requested_at = NULL, slot_granted_at = NULL "
            "WHERE id = ? AND attempt = ? AND lease_owner = ? AND slot_requested_at IS NOT NULL",
            (lease.generation_id, lease.attempt, lease.owner),
        )
        return changed > 0

    async def slots_in_use(self) -> int:
        row = await self._fetchone(
            f"SELECT COUNT(*) AS n FROM generations WHERE slot_granted_at IS NOT NULL AND status IN {_UNFINISHED} "
            "AND lease_expires_at > ?",
            (self._now(),),
        )
        return int(row["n"]) if row is not None else 0

    async def identify_turn(self, bucket: int, interval: float) -> None:
        """Return when this process may identify a shard of `bucket` (Discord: one identify per bucket every
        5 s for the whole bot token, whichever process sends it), having taken the turn."""
        while True:
            async with self._transaction() as conn:
                await conn.lock(LOCK_IDENTIFY, bucket)
                now = self._now()
                row = await fetchone(conn, "SELECT last_at FROM identify_turns WHERE bucket = ?", (bucket,))
                # A margin beyond the interval: the previous identify left a moment after its turn was taken.
                spacing = interval + IDENTIFY_MARGIN if interval > 0 else 0.0
                wait = 0.0 if row is None else float(row["last_at"]) + spacing - now
                if wait <= 0 or wait > spacing:  # (later than one interval ahead: another machine's clock)
                    await execute(
                        conn,
                        "INSERT INTO identify_turns (bucket, last_at) VALUES (?, ?) "
                        "ON CONFLICT (bucket) DO UPDATE SET last_at = excluded.last_at",
                        (bucket, now),
                    )
                    return
            await asyncio.sleep(min(wait, spacing))


__all__ = ["CoordinationMixin", "SlotTurn"]
