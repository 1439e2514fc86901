"""Generations (one per video request, a tree through `parent_id`) and their ledger entries.

Every state change of a generation and its reservation happens in one transaction; settling is idempotent:
a generation that has already finished is left alone, and a reservation is settled at most once.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from storage._core import LOCK_GUILD_QUOTA, Core, NotFound, Row, StorageError, execute, fetchone
from storage.quota import (
    LedgerState,
    QuotaDenied,
    Reservation,
    check_reservation,
    next_reset,
)

log = logging.getLogger(__name__)

INTERACTION_TOKEN_TTL = 15 * 60.0
MODERATION = "moderation"  # the error kind of an upstream moderation rejection (FailureKind.MODERATION)
RESTART = "restart"  # the error kind of a job the bot couldn't resume after a restart
CANCELLED = "cancelled"
_MAX_CHAIN = 1000  # a guard against a (corrupted) parent cycle


class GenerationStatus(StrEnum):
    """queued → running → delivering → succeeded | failed | cancelled (a queued job may also fail or be cancelled)."""

    QUEUED = "queued"  # accepted and reserved; nothing sent to the gateway yet
    RUNNING = "running"  # sent to the gateway (or about to be); includes downloading the finished video
    DELIVERING = "delivering"  # the result is being posted: no longer cancellable
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (GenerationStatus.QUEUED, GenerationStatus.RUNNING, GenerationStatus.DELIVERING)


@dataclass(frozen=True, slots=True)
class Lease:
    """One claim of a job by one process: every write the runner makes carries it and is refused when stale."""

    generation_id: int
    attempt: int
    owner: str


class LeaseLost(StorageError):
    """The job was claimed by a newer attempt (this runner paused past its lease, or another process took over)."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(f"generation {lease.generation_id}: attempt {lease.attempt} of {lease.owner} is stale")
        self.lease = lease


@dataclass(frozen=True, slots=True)
class NewGeneration:
    """What the bot knows when a member asks for a video, before anything is spent."""

    guild_id: int
    channel_id: int  # where the progress and result messages go (may be a thread)
    user_id: int
    model: str
    prompt: str
    cost: int  # credits: `settings.models[model].cost_for(seconds)`
    seconds: int | None = None
    size: str | None = None
    orientation: str | None = None
    api_format: str | None = None
    reference_urls: Sequence[str] = ()
    parent_id: int | None = None  # the generation this remixes
    parent_channel_id: int | None = None  # the text channel when channel_id is a thread (for the allow-list)
    thread_id: int | None = None
    locale: str | None = None
    source_message_id: int | None = None
    interaction_id: int | None = None
    interaction_token: str | None = None
    interaction_created_at: float | None = None  # default: now, when a token is given
    progress_message_id: int | None = None
    remix_strategy: str | None = None  # history | remix | combined: how a remix goes upstream (kept on resume)


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """Who runs a new job from the start: the accepting process, for `seconds`."""

    owner: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Generation:
    id: int
    parent_id: int | None
    guild_id: int
    channel_id: int
    parent_channel_id: int | None
    thread_id: int | None
    user_id: int
    locale: str | None
    source_message_id: int | None
    interaction_id: int | None
    interaction_token: str | None = field(repr=False)
    interaction_created_at: float | None
    progress_message_id: int | None
    result_message_id: int | None
    model: str
    api_format: str | None
    seconds: int | None
    size: str | None
    orientation: str | None
    prompt: str
    reference_urls: tuple[str, ...]
    assistant_text: str | None = field(repr=False)
    task_id: str | None
    resumable: bool
    status: GenerationStatus
    progress: float
    result_url: str | None
    result_bytes: int | None
    thumbnail_url: str | None
    error_kind: str | None
    error_message: str | None
    cost: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    attempt: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    cancel_requested_by: int | None = None
    remix_strategy: str | None = None
    result_json: str | None = field(default=None, repr=False)
    delivery_nonce: str | None = None
    delivery_started_at: float | None = None

    @classmethod
    def from_row(cls, row: Row) -> Generation:
        values: dict[str, Any] = {name: row[name] for name in cls.__dataclass_fields__}
        values["reference_urls"] = tuple(json.loads(values["reference_urls"] or "[]"))
        values["resumable"] = bool(values["resumable"])
        values["status"] = GenerationStatus(values["status"])
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def token_expires_at(self) -> float | None:
        """When the interaction token stops working (Discord: 15 min after the interaction)."""
        if self.interaction_token is None or self.interaction_created_at is None:
            return None
        return self.interaction_created_at + INTERACTION_TOKEN_TTL

    @property
    def can_resume(self) -> bool:
        return self.resumable and self.task_id is not None


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of finishing a generation: its status and what happened to its reservation."""

    generation_id: int
    status: GenerationStatus
    ledger: LedgerState | None  # None only for a generation without a reservation
    credits: int
    changed: bool  # False: it was already finished, nothing was done (idempotent repeat)

    @property
    def refunded(self) -> bool:
        return self.ledger == LedgerState.REFUNDED

    @property
    def charged(self) -> bool:
        return self.ledger == LedgerState.CHARGED


_INSERT_COLUMNS = (
    "parent_id",
    "guild_id",
    "channel_id",
    "parent_channel_id",
    "thread_id",
    "user_id",
    "locale",
    "source_message_id",
    "interaction_id",
    "interaction_token",
    "interaction_created_at",
    "progress_message_id",
    "model",
    "api_format",
    "seconds",
    "size",
    "orientation",
    "prompt",
    "reference_urls",
    "cost",
    "created_at",
    "updated_at",
    "attempt",
    "lease_owner",
    "lease_expires_at",
    "remix_strategy",
    "delivery_nonce",
)
_INSERT_SQL = (
    f"INSERT INTO generations ({', '.join(_INSERT_COLUMNS)}) VALUES ({', '.join('?' for _ in _INSERT_COLUMNS)}) "
    "RETURNING id"
)
_UNFINISHED = "('queued', 'running', 'delivering')"
_FENCE = " AND attempt = ? AND lease_owner = ?"


def _fence(lease: Lease | None) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (and its parameters) that makes a write refuse a stale attempt."""
    return (_FENCE, (lease.attempt, lease.owner)) if lease is not None else ("", ())


class GenerationsMixin(Core):
    async def create_generation(
        self,
        new: NewGeneration,
        *,
        role_ids: Iterable[int] = (),
        is_admin: bool = False,
        lease: LeaseGrant | None = None,
    ) -> Reservation | QuotaDenied:
        """Check the quota rules and, if they allow it, record the generation and reserve its cost — all in one
        transaction, so concurrent requests can never together exceed an allowance, budget or concurrency limit.

        `role_ids` are the member's roles; `is_admin` whether they have Manage Server (exempt only if the
        guild says so). With `lease`, the new job is claimed (attempt 1) by that owner in the same transaction.
        Returns a `Reservation` (status queued) or a `QuotaDenied` (nothing recorded).
        """
        if new.cost < 0:
            raise ValueError("cost can't be negative")
        async with self._transaction() as conn:
            # Reservations in one guild take turns (every process): each decides on what the previous one wrote.
            await conn.lock(LOCK_GUILD_QUOTA, new.guild_id)
            now = self._now()  # once the write lock is held: a wait for it mustn't age the times written
            ctx, denied = await check_reservation(
                conn,
                guild_id=new.guild_id,
                user_id=new.user_id,
                channel_id=new.channel_id,
                parent_channel_id=new.parent_channel_id,
                role_ids=role_ids,
                is_admin=is_admin,
                cost=new.cost,
                now=now,
            )
            if denied is not None:
                return denied
            if new.parent_id is not None:
                parent = await fetchone(conn, "SELECT 1 FROM generations WHERE id = ?", (new.parent_id,))
                if parent is None:
                    raise NotFound(f"generation {new.parent_id} (the parent) doesn't exist")
            token_time = new.interaction_created_at
            if new.interaction_token is not None and token_time is None:
                token_time = now
            values = {
                **{name: getattr(new, name) for name in _INSERT_COLUMNS if hasattr(new, name)},
                "reference_urls": json.dumps(list(new.reference_urls)),
                "interaction_created_at": token_time,
                "created_at": now,
                "updated_at": now,
                "attempt": 1 if lease is not None else 0,
                "lease_owner": lease.owner if lease is not None else None,
                "lease_expires_at": now + lease.seconds if lease is not None else None,
                "delivery_nonce": secrets.token_hex(10),
            }
            inserted = await fetchone(conn, _INSERT_SQL, [values[name] for name in _INSERT_COLUMNS])
            assert inserted is not None
            generation_id = int(inserted["id"])
            await execute(
                conn,
                "INSERT INTO ledger (generation_id, guild_id, user_id, model, credits, state, created_at) "
                "VALUES (?, ?, ?, ?, ?, 'reserved', ?)",
                (generation_id, new.guild_id, new.user_id, new.model, new.cost, now),
            )
        log.debug("generation %s reserved %s credits for user %s", generation_id, new.cost, new.user_id)
        return Reservation(
            generation_id=generation_id,
            cost=new.cost,
            used=ctx.member_used + new.cost,
            limit=ctx.limit,
            resets_at=next_reset(ctx, now, reserved=new.cost),
        )

    async def get_generation(self, generation_id: int) -> Generation | None:
        row = await self._fetchone("SELECT * FROM generations WHERE id = ?", (generation_id,))
        return Generation.from_row(row) if row is not None else None

    async def generation_by_result_message(self, message_id: int) -> Generation | None:
        """The generation whose result is this message (for reply-to-remix), or None."""
        row = await self._fetchone("SELECT * FROM generations WHERE result_message_id = ?", (message_id,))
        return Generation.from_row(row) if row is not None else None

    async def generation_by_progress_message(self, message_id: int) -> Generation | None:
        row = await self._fetchone(
            "SELECT * FROM generations WHERE progress_message_id = ? ORDER BY id DESC LIMIT 1", (message_id,)
        )
        return Generation.from_row(row) if row is not None else None

    async def unfinished_generations(self, guild_id: int | None = None) -> list[Generation]:
        """Queued or running generations, oldest first (what to resume on start)."""
        if guild_id is None:
            rows = await self._fetchall(f"SELECT * FROM generations WHERE status IN {_UNFINISHED} ORDER BY id")
        else:
            rows = await self._fetchall(
                f"SELECT * FROM generations WHERE status IN {_UNFINISHED} AND guild_id = ? ORDER BY id", (guild_id,)
            )
        return [Generation.from_row(row) for row in rows]

    async def chain(self, generation_id: int, max_depth: int = 10) -> list[Generation]:
        """The remix chain root → … → this generation. Longer than `max_depth`: the root and the most recent
        `max_depth - 1` turns (so the original idea and the latest changes both survive)."""
        if max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        rows = await self._fetchall(
            "WITH RECURSIVE up (id, parent_id, depth) AS ("
            " SELECT id, parent_id, 0 FROM generations WHERE id = ?"
            " UNION ALL"
            " SELECT g.id, g.parent_id, up.depth + 1 FROM generations AS g JOIN up ON g.id = up.parent_id"
            " WHERE up.depth < ?"
            ") SELECT g.* FROM up JOIN generations AS g ON g.id = up.id ORDER BY up.depth DESC",
            (generation_id, _MAX_CHAIN),
        )
        chain = [Generation.from_row(row) for row in rows]
        if not chain:
            raise NotFound(f"generation {generation_id} doesn't exist")
        if len(chain) <= max_depth:
            return chain
        if max_depth == 1:
            return chain[-1:]
        return [chain[0], *chain[-(max_depth - 1) :]]

    # --- while it runs ---------------------------------------------------------------------------------------

    async def mark_running(self, generation_id: int, *, lease: Lease | None = None) -> bool:
        """The job is about to be sent to the gateway: from now on a lost runner can't simply start it again.
        False if it isn't queued (already running, or finished)."""
        now = self._now()
        fence, fence_params = _fence(lease)
        return await self._fenced_update(
            "UPDATE generations SET status = 'running', started_at = COALESCE(started_at, ?), updated_at = ? "
            "WHERE id = ? AND status = 'queued'" + fence,
            (now, now, generation_id, *fence_params),
            lease,
        )

    async def update_generation_progress(
        self, generation_id: int, progress: float, *, lease: Lease | None = None
    ) -> bool:
        """Record progress (0..100, never decreasing); a queued generation becomes running. False if finished."""
        now = self._now()
        progress = min(max(float(progress), 0.0), 100.0)
        fence, fence_params = _fence(lease)
        return await self._fenced_update(
            f"UPDATE generations SET progress = {self.dialect.greatest}(progress, ?), "
            "status = CASE WHEN status = 'queued' THEN 'running' ELSE status END, "
            "started_at = COALESCE(started_at, ?), updated_at = ? WHERE id = ? AND status IN "
            + _UNFINISHED
            + fence,
            (progress, now, now, generation_id, *fence_params),
            lease,
        )

    async def set_task_id(
        self, generation_id: int, task_id: str, *, resumable: bool = False, lease: Lease | None = None
    ) -> bool:
        """Remember the upstream task/video id, and whether the job can be picked up again after a restart."""
        fence, fence_params = _fence(lease)
        return await self._fenced_update(
            "UPDATE generations SET task_id = ?, resumable = ?, updated_at = ? WHERE id = ? AND status IN "
            + _UNFINISHED
            + fence,
            (task_id, int(resumable), self._now(), generation_id, *fence_params),
            lease,
        )

    async def set_progress_message(
        self,
        generation_id: int,
        message_id: int | None,
        *,
        channel_id: int | None = None,
        forget_interaction: bool = False,
        lease: Lease | None = None,
    ) -> None:
        """Where the progress message is now; `forget_interaction` when it moved off the interaction token."""
        sets = ["progress_message_id = ?", "updated_at = ?"]
        params: list[Any] = [message_id, self._now()]
        if channel_id is not None:
            sets.append("channel_id = ?")
            params.append(channel_id)
        if forget_interaction:
            sets.append("interaction_token = NULL")
        fence, fence_params = _fence(lease)
        await self._fenced_update(
            f"UPDATE generations SET {', '.join(sets)} WHERE id = ?" + fence,
            (*params, generation_id, *fence_params),
            lease,
        )

    async def set_result_message(
        self, generation_id: int, message_id: int, *, thread_id: int | None = None, lease: Lease | None = None
    ) -> None:
        """The message that carries the video; a reply to it maps back here (reply-to-remix)."""
        fence, fence_params = _fence(lease)
        await self._fenced_update(
            "UPDATE generations SET result_message_id = ?, thread_id = COALESCE(?, thread_id), updated_at = ? "
            "WHERE id = ?" + fence,
            (message_id, thread_id, self._now(), generation_id, *fence_params),
            lease,
        )

    async def set_thread(self, generation_id: int, thread_id: int, *, lease: Lease | None = None) -> None:
        fence, fence_params = _fence(lease)
        await self._fenced_update(
            "UPDATE generations SET thread_id = ?, updated_at = ? WHERE id = ?" + fence,
            (thread_id, self._now(), generation_id, *fence_params),
            lease,
        )

    async def _fenced_update(self, sql: str, params: Sequence[Any], lease: Lease | None) -> bool:
        """Run one UPDATE; when it changed nothing because `lease` is stale, raise `LeaseLost`."""
        if await self._execute(sql, params) > 0:
            return True
        if lease is not None:
            await self._check_lease(lease)
        return False

    async def _check_lease(self, lease: Lease) -> None:
        row = await self._fetchone(
            "SELECT attempt, lease_owner FROM generations WHERE id = ?", (lease.generation_id,)
        )
        if row is None:
            raise NotFound(f"generation {lease.generation_id} doesn't exist")
        if row["attempt"] != lease.attempt or row["lease_owner"] != lease.owner:
            raise LeaseLost(lease)

    # --- finishing: each one transaction, each idempotent ----------------------------------------------------

    async def mark_succeeded(
        self,
        generation_id: int,
        *,
        result_url: str | None = None,
        result_bytes: int | None = None,
        thumbnail_url: str | None = None,
        assistant_text: str | None = None,
        task_id: str | None = None,
        result_message_id: int | None = None,
        thread_id: int | None = None,
        lease: Lease | None = None,
    ) -> Settlement:
        """The video was delivered: record its message and charge the reservation, in one transaction."""
        return await self._finish(
            generation_id,
            GenerationStatus.SUCCEEDED,
            lease=lease,
            charge=True,
            fields={
                "progress": 100.0,
                "result_url": result_url,
                "result_bytes": result_bytes,
                "thumbnail_url": thumbnail_url,
                "assistant_text": assistant_text,
                "task_id": task_id,
                "result_message_id": result_message_id,
                "thread_id": thread_id,
            },
            note="succeeded",
        )

    async def mark_failed(
        self,
        generation_id: int,
        kind: str,
        message: str,
        *,
        assistant_text: str | None = None,
        charge: bool | None = None,
        lease: Lease | None = None,
    ) -> Settlement:
        """The job failed. Refunded unless it was a moderation rejection in a guild that charges those;
        `charge` overrides the rule when the bot knows better."""
        return await self._finish(
            generation_id,
            GenerationStatus.FAILED,
            lease=lease,
            charge=charge,
            fields={"error_kind": str(kind), "error_message": message, "assistant_text": assistant_text},
            note=f"failed: {kind}",
        )

    async def mark_cancelled(
        self, generation_id: int, *, message: str | None = None, lease: Lease | None = None
    ) -> Settlement:
        """The member (or an admin) cancelled it: refund."""
        return await self._finish(
            generation_id,
            GenerationStatus.CANCELLED,
            lease=lease,
            charge=False,
            fields={"error_kind": CANCELLED, "error_message": message},
            note="cancelled",
        )

    async def _finish(
        self,
        generation_id: int,
        status: GenerationStatus,
        *,
        charge: bool | None,
        fields: dict[str, Any],
        note: str,
        lease: Lease | None = None,
    ) -> Settlement:
        async with self._transaction() as conn:
            now = self._now()  # once the write lock is held: a wait for it mustn't age the times written
            if self.dialect.row_locks:
                # Lock the job before reading it with its ledger row: a later statement sees what a settlement
                # that held the lock committed (a locking join would refresh only the locked table's row).
                await execute(conn, "SELECT id FROM generations WHERE id = ? FOR UPDATE", (generation_id,))
            row = await fetchone(
                conn,
                "SELECT g.status, g.attempt, g.lease_owner, l.state, l.credits, "
                "COALESCE(s.charge_moderation, 0) AS charge_moderation "
                "FROM generations AS g LEFT JOIN ledger AS l ON l.generation_id = g.id "
                "LEFT JOIN guild_settings AS s ON s.guild_id = g.guild_id WHERE g.id = ?",
                (generation_id,),
            )
            if row is None:
                raise NotFound(f"generation {generation_id} doesn't exist")
            if lease is not None and (row["attempt"] != lease.attempt or row["lease_owner"] != lease.owner):
                raise LeaseLost(lease)
            current = GenerationStatus(row["status"])
            ledger = LedgerState(row["state"]) if row["state"] is not None else None
            if current.finished:
                log.debug("generation %s already %s; %s ignored", generation_id, current, status)
                return Settlement(generation_id, current, ledger, row["credits"] or 0, changed=False)
            if charge is None:
                charge = fields.get("error_kind") == MODERATION and bool(row["charge_moderation"])
            # COALESCE keeps what was recorded earlier (task id, assistant text) when this call doesn't say.
            sets = ", ".join(f"{name} = COALESCE(?, {name})" for name in fields)
            await execute(
                conn,
                f"UPDATE generations SET status = ?, finished_at = ?, updated_at = ?, {sets} WHERE id = ?",
                (status.value, now, now, *fields.values(), generation_id),
            )
            new_state = LedgerState.CHARGED if charge else LedgerState.REFUNDED
            if ledger == LedgerState.RESERVED:
                await execute(
                    conn,
                    "UPDATE ledger SET state = ?, settled_at = ?, note = ? WHERE generation_id = ? "
                    "AND state = 'reserved'",
                    (new_state.value, now, note, generation_id),
                )
                ledger = new_state
        log.info("generation %s %s (%s %s credits)", generation_id, status, ledger, row["credits"])
        return Settlement(generation_id, status, ledger, row["credits"] or 0, changed=True)

__all__ = [
    "INTERACTION_TOKEN_TTL",
    "MODERATION",
    "RESTART",
    "Generation",
    "GenerationStatus",
    "GenerationsMixin",
    "Lease",
    "LeaseGrant",
    "LeaseLost",
    "NewGeneration",
    "Settlement",
]
