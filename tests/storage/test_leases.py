"""Leases: claims, fencing of stale attempts, renewals, cancel requests against the start of a delivery, and
settling a busy or inconsistent database."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.clock import FakeClock
from storage import (
    CancelOutcome,
    Database,
    DeliveryStart,
    GenerationStatus,
    Lease,
    LeaseGrant,
    LeaseLost,
    LedgerState,
)
from storage.migrate import known_migrations
from tests.storage.helpers import ALICE, GUILD, lease_of, reserve

A = LeaseGrant("process-a", 30.0)
B = "process-b"


async def ledger_state(db: Database, generation_id: int) -> str:
    row = await db._fetchone("SELECT state FROM ledger WHERE generation_id = ?", (generation_id,))
    assert row is not None
    return str(row["state"])


async def test_a_new_job_is_held_by_its_process_until_the_lease_expires(db: Database, clock: FakeClock) -> None:
    job = (await reserve(db, lease=A)).generation_id
    generation = await db.get_generation(job)
    assert generation is not None and (generation.attempt, generation.lease_owner) == (1, "process-a")

    assert await db.claim_expired(B, 30.0) == []  # A's lease is live
    clock.advance(31)
    (claimed,) = await db.claim_expired(B, 30.0)
    assert (claimed.id, claimed.attempt, claimed.lease_owner) == (job, 2, B)
    assert await db.claim_expired("process-c", 30.0) == []  # claimed once, not twice


async def test_every_write_of_a_stale_attempt_is_refused(db: Database, clock: FakeClock) -> None:
    job = (await reserve(db, lease=A)).generation_id
    stale = Lease(job, 1, "process-a")
    assert await db.mark_running(job, lease=stale)
    clock.advance(31)
    (claimed,) = await db.claim_expired(B, 30.0)
    fresh = lease_of(claimed)

    with pytest.raises(LeaseLost):
        await db.update_generation_progress(job, 50, lease=stale)
    with pytest.raises(LeaseLost):
        await db.set_task_id(job, "task_old", resumable=True, lease=stale)
    with pytest.raises(LeaseLost):
        await db.record_result(stale, {"video_url": "https://cdn.example/old.mp4"})
    with pytest.raises(LeaseLost):
        await db.begin_delivery(stale)
    with pytest.raises(LeaseLost):
        await db.mark_succeeded(job, result_message_id=1, lease=stale)
    with pytest.raises(LeaseLost):
        await db.mark_failed(job, "upstream", "nope", lease=stale)
    with pytest.raises(LeaseLost):
        await db.set_progress_message(job, 77, lease=stale)

    # The newer attempt is untouched and goes on.
    assert await db.set_task_id(job, "task_new", resumable=True, lease=fresh)
    assert await db.begin_delivery(fresh) is DeliveryStart.STARTED
    settlement = await db.mark_succeeded(job, result_message_id=5, lease=fresh)
    assert settlement.charged
    generation = await db.get_generation(job)
    assert generation is not None
    assert (generation.task_id, generation.result_message_id, generation.progress) == ("task_new", 5, 100.0)
    assert await ledger_state(db, job) == "charged"


async def test_renewing_keeps_leases_and_reports_lost_jobs_and_cancel_requests(
    db: Database, clock: FakeClock
) -> None:
    kept = (await reserve(db, lease=A)).generation_id
    lost = (await reserve(db, lease=A, user_id=ALICE + 1)).generation_id
    clock.advance(20)
    held = await db.renew_leases("process-a", 30.0, {kept: 1, lost: 1})
    assert set(held) == {kept, lost}
    # `lost` is released and taken by B; a member asks to cancel `kept`.
    await db.release_lease(Lease(lost, 1, "process-a"))
    (claimed,) = await db.claim_expired(B, 30.0)
    assert claimed.id == lost
    assert await db.request_cancel(kept, ALICE) is CancelOutcome.REQUESTED
    clock.advance(20)  # past the original 30 s: only the renewal keeps `kept` alive
    held = await db.renew_leases("process-a", 30.0, {kept: 1, lost: 1})
    assert set(held) == {kept} and held[kept].cancel_requested_by == ALICE
    assert await db.claim_expired("process-c", 30.0) == []


async def test_a_cancel_request_and_the_start_of_a_delivery_exclude_each_other(db: Database) -> None:
    first = (await reserve(db, lease=A)).generation_id
    lease = Lease(first, 1, "process-a")
    assert await db.request_cancel(first, ALICE) is CancelOutcome.REQUESTED
    assert await db.request_cancel(first, ALICE) is CancelOutcome.ALREADY_REQUESTED
    assert await db.begin_delivery(lease) is DeliveryStart.CANCEL_REQUESTED
    assert (await db.mark_cancelled(first, lease=lease)).refunded

    second = (await reserve(db, lease=A)).generation_id
    lease = Lease(second, 1, "process-a")
    await db.mark_running(second, lease=lease)
    assert await db.begin_delivery(lease) is DeliveryStart.STARTED
    assert await db.request_cancel(second, ALICE) is CancelOutcome.DELIVERING  # too late: it is being posted
    assert (await db.get_generation(second)).status is GenerationStatus.DELIVERING  # type: ignore[union-attr]
    assert (await db.mark_succeeded(second, result_message_id=9, lease=lease)).charged
    assert await db.request_cancel(second, ALICE) is CancelOutcome.DELIVERING
    assert await db.request_cancel(first, ALICE) is CancelOutcome.FINISHED


async def test_a_delivering_job_counts_as_in_progress_for_the_member(db: Database) -> None:
    await db.set_concurrency(GUILD, per_member=1, per_guild=None)
    job = (await reserve(db, lease=A)).generation_id
    lease = Lease(job, 1, "process-a")
    await db.mark_running(job, lease=lease)
    await db.begin_delivery(lease)
    status = await db.quota_status(GUILD, ALICE)
    assert status.running == 1


async def test_stray_reservations_are_settled_to_match_their_job(db: Database) -> None:
    await db.set_concurrency(GUILD, per_member=5, per_guild=None)
    done = (await reserve(db, cost=2)).generation_id
    gone = (await reserve(db, cost=3)).generation_id
    await db._execute("UPDATE generations SET status = 'succeeded' WHERE id = ?", (done,))
    await db._execute("UPDATE generations SET status = 'failed' WHERE id = ?", (gone,))
    settled = await db.settle_strays()
    assert {(s.generation_id, s.state) for s in settled} == {(done, LedgerState.CHARGED), (gone, LedgerState.REFUNDED)}
    assert await db.settle_strays() == []


async def test_a_write_waits_out_another_connection_holding_the_lock(db: Database, db_path: Path) -> None:
    job = (await reserve(db, lease=A)).generation_id
    lease = Lease(job, 1, "process-a")
    await db.mark_running(job, lease=lease)
    locked = asyncio.Event()
    release = asyncio.Event()

    def hold_the_lock(loop: asyncio.AbstractEventLoop) -> None:
        other = sqlite3.connect(db_path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE guild_settings SET guild_id = guild_id")
            loop.call_soon_threadsafe(locked.set)
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
            other.execute("COMMIT")
        finally:
            other.close()

    holder = asyncio.create_task(asyncio.to_thread(hold_the_lock, asyncio.get_running_loop()))
    await locked.wait()
    settle = asyncio.create_task(db.mark_succeeded(job, result_message_id=3, lease=lease))
    await asyncio.sleep(2.0)  # the lock is held for 2 s: the settlement waits, it doesn't fail
    assert not settle.done()
    release.set()
    await holder
    settlement = await settle
    assert settlement.charged and settlement.changed


async def test_upgrading_a_version_3_database_keeps_every_row(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    for migration in known_migrations()[:3]:
        conn.executescript(f"BEGIN; {migration.sql} PRAGMA user_version = {migration.version}; COMMIT;")
    conn.execute(
        "INSERT INTO generations (id, guild_id, channel_id, user_id, model, prompt, cost, created_at, updated_at, "
        "status, task_id, resumable) VALUES (1, 1, 2, 3, 'sora-2', 'a cat', 1, 0, 0, 'running', 'task_1', 1)"
    )
    conn.execute(
        "INSERT INTO ledger (generation_id, guild_id, user_id, model, credits, state, created_at) "
        "VALUES (1, 1, 3, 'sora-2', 1, 'reserved', 0)"
    )
    conn.close()

    async with Database.open(path, clock=clock) as db:
        generation = await db.get_generation(1)
        assert generation is not None and generation.status is GenerationStatus.RUNNING
        assert generation.task_id == "task_1" and generation.attempt == 1 and generation.delivery_nonce
        assert await ledger_state(db, 1) == "reserved"
        row = await db._fetchone("SELECT generation_id FROM ledger")
        assert row is not None and row["generation_id"] == 1  # the foreign key survived the rebuild
        (claimed,) = await db.claim_expired("process-a", 30.0)  # an old row has no lease: claimable at once
        assert claimed.attempt == 2


async def test_a_process_renews_its_own_late_jobs_instead_of_taking_them_over(db: Database, clock: FakeClock) -> None:
    job = (await reserve(db, lease=A)).generation_id
    clock.advance(31)  # the heartbeat was late: the lease ran out, nobody claimed it yet
    assert await db.claim_expired("process-a", 30.0, running=[job]) == []  # not from itself
    held = await db.renew_leases("process-a", 30.0, {job: 1})
    assert set(held) == {job}  # still attempt 1, renewed
    assert await db.claim_expired(B, 30.0) == []  # and no longer expired for anyone else
