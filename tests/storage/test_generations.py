"""The job lifecycle: reserve + create, progress, charge, refund, cancel, the remix tree."""

from __future__ import annotations

import asyncio

import pytest

from bot.clock import FakeClock
from storage import (
    INTERACTION_TOKEN_TTL,
    RESTART,
    Database,
    GenerationStatus,
    LedgerState,
    NotFound,
    Reservation,
)
from tests.storage.helpers import ALICE, CHANNEL, GUILD, THREAD, lease_of, new_generation, reserve


async def ledger_state(db: Database, generation_id: int) -> LedgerState:
    row = await db._fetchone("SELECT state FROM ledger WHERE generation_id = ?", (generation_id,))
    assert row is not None
    return LedgerState(row["state"])


async def ledger_total(db: Database) -> dict[str, int]:
    rows = await db._fetchall("SELECT state, SUM(credits) AS credits FROM ledger GROUP BY state")
    return {row["state"]: row["credits"] for row in rows}


async def test_create_records_everything_and_reserves(db: Database, clock: FakeClock) -> None:
    reservation = await reserve(
        db,
        cost=5,
        model="sora-2-pro",
        reference_urls=("https://cdn.example/a.png", "https://cdn.example/b.png"),
        channel_id=THREAD,
        parent_channel_id=CHANNEL,
        locale="zh-CN",
        interaction_id=42,
        interaction_token="tok-secret",
        progress_message_id=77,
    )
    assert (reservation.cost, reservation.used, reservation.limit.credits) == (5, 5, 10)
    generation = await db.get_generation(reservation.generation_id)
    assert generation is not None
    assert generation.status == GenerationStatus.QUEUED and not generation.finished
    assert generation.reference_urls == ("https://cdn.example/a.png", "https://cdn.example/b.png")
    assert (generation.model, generation.seconds, generation.size, generation.orientation) == (
        "sora-2-pro",
        10,
        "1280x720",
        "landscape",
    )
    assert (generation.channel_id, generation.parent_channel_id, generation.locale) == (THREAD, CHANNEL, "zh-CN")
    assert generation.interaction_token == "tok-secret"
    assert "tok-secret" not in repr(generation)
    assert generation.token_expires_at == pytest.approx(generation.created_at + INTERACTION_TOKEN_TTL)
    assert generation.created_at == pytest.approx(clock.time(), abs=5)
    assert await ledger_state(db, reservation.generation_id) == LedgerState.RESERVED
    assert await db.unfinished_generations() == [generation]


async def test_the_success_path_charges(db: Database) -> None:
    reservation = await reserve(db, cost=2)
    gid = reservation.generation_id
    assert await db.mark_running(gid)
    assert not await db.mark_running(gid)  # already claimed
    assert await db.update_generation_progress(gid, 40)
    assert await db.update_generation_progress(gid, 20)  # progress never goes back
    assert await db.set_task_id(gid, "video_123", resumable=True)
    settlement = await db.mark_succeeded(
        gid,
        result_url="https://cdn.example/v.mp4",
        result_bytes=123_456,
        thumbnail_url="https://cdn.example/t.png",
        assistant_text='```json\n{"status": "done"}\n```',
    )
    assert settlement.changed and settlement.charged and settlement.credits == 2
    assert settlement.status == GenerationStatus.SUCCEEDED
    generation = await db.get_generation(gid)
    assert generation is not None
    assert (generation.progress, generation.task_id, generation.result_bytes) == (100.0, "video_123", 123_456)
    assert generation.assistant_text == '```json\n{"status": "done"}\n```'
    assert generation.started_at is not None and generation.finished_at is not None
    assert await ledger_state(db, gid) == LedgerState.CHARGED
    assert not await db.update_generation_progress(gid, 50)  # finished: ignored
    assert (await db.quota_status(GUILD, ALICE)).used == 2
    assert await db.unfinished_generations() == []


async def test_settling_twice_is_a_no_op(db: Database) -> None:
    gid = (await reserve(db, cost=3)).generation_id
    first = await db.mark_succeeded(gid, result_url="https://cdn.example/v.mp4")
    again = await db.mark_succeeded(gid, result_url="https://cdn.example/other.mp4")
    failed = await db.mark_failed(gid, "upstream", "late failure")
    cancelled = await db.mark_cancelled(gid)
    assert first.changed and not again.changed and not failed.changed and not cancelled.changed
    assert {s.ledger for s in (first, again, failed, cancelled)} == {LedgerState.CHARGED}
    assert {s.status for s in (again, failed, cancelled)} == {GenerationStatus.SUCCEEDED}
    generation = await db.get_generation(gid)
    assert generation is not None and generation.result_url == "https://cdn.example/v.mp4"
    assert await ledger_total(db) == {"charged": 3}


async def test_racing_settlements_settle_once(db: Database) -> None:
    gid = (await reserve(db, cost=4)).generation_id
    results = await asyncio.gather(
        *(
            call
            for _ in range(20)
            for call in (
                db.mark_succeeded(gid, result_url="u"),
                db.mark_failed(gid, "timeout", "t"),
                db.mark_cancelled(gid),
            )
        )
    )
    assert len(results) == 60
    assert sum(r.changed for r in results) == 1
    assert len({(r.status, r.ledger) for r in results}) == 1
    assert sum((await ledger_total(db)).values()) == 4


async def test_upstream_failures_refund(db: Database) -> None:
    await db.set_default_allowance(GUILD, 1)
    gid = (await reserve(db)).generation_id
    settlement = await db.mark_failed(gid, "timeout", "no progress for 180 s", assistant_text="partial")
    assert settlement.changed and settlement.refunded and settlement.status == GenerationStatus.FAILED
    generation = await db.get_generation(gid)
    assert generation is not None
    assert (generation.error_kind, generation.error_message, generation.assistant_text) == (
        "timeout",
        "no progress for 180 s",
        "partial",
    )
    assert (await db.quota_status(GUILD, ALICE)).used == 0
    await reserve(db)


async def test_moderation_rejections_follow_the_guild_setting(db: Database) -> None:
    refunded = await db.mark_failed((await reserve(db)).generation_id, "moderation", "content policy")
    assert refunded.refunded
    await db.set_charge_moderation(GUILD, True)
    charged = await db.mark_failed((await reserve(db)).generation_id, "moderation", "content policy")
    assert charged.charged
    other = await db.mark_failed((await reserve(db)).generation_id, "upstream", "502")
    assert other.refunded  # only moderation is charged
    overridden = await db.mark_failed((await reserve(db)).generation_id, "moderation", "x", charge=False)
    assert overridden.refunded
    assert await ledger_total(db) == {"refunded": 3, "charged": 1}


async def test_cancel_refunds(db: Database) -> None:
    gid = (await reserve(db, cost=5)).generation_id
    await db.mark_running(gid)
    settlement = await db.mark_cancelled(gid, message="cancelled by the requester")
    assert settlement.changed and settlement.refunded and settlement.status == GenerationStatus.CANCELLED
    assert (await db.quota_status(GUILD, ALICE)).used == 0
    assert (await db.mark_cancelled(gid)).changed is False


async def test_unknown_generations_raise_not_found(db: Database) -> None:
    with pytest.raises(NotFound):
        await db.mark_succeeded(999, result_url="u")
    with pytest.raises(NotFound):
        await db.chain(999)
    assert await db.get_generation(999) is None


async def test_a_missing_parent_records_nothing(db: Database) -> None:
    with pytest.raises(NotFound):
        await db.create_generation(new_generation(parent_id=999))
    assert await ledger_total(db) == {}
    assert await db.unfinished_generations() == []


async def build_chain(db: Database, length: int) -> list[int]:
    ids: list[int] = []
    for turn in range(length):
        reservation = await db.create_generation(
            new_generation(prompt=f"turn {turn}", parent_id=ids[-1] if ids else None)
        )
        assert isinstance(reservation, Reservation)
        await db.mark_succeeded(
            reservation.generation_id, result_url=f"https://cdn.example/{turn}.mp4", assistant_text=f"answer {turn}"
        )
        ids.append(reservation.generation_id)
    return ids


async def test_chain_runs_from_the_root_to_the_generation(db: Database) -> None:
    await db.set_default_allowance(GUILD, None)
    ids = await build_chain(db, 6)
    chain = await db.chain(ids[-1], max_depth=10)
    assert [g.id for g in chain] == ids
    assert [g.prompt for g in chain] == [f"turn {i}" for i in range(6)]
    assert [g.assistant_text for g in chain] == [f"answer {i}" for i in range(6)]
    assert [g.id for g in await db.chain(ids[2], max_depth=10)] == ids[:3]
    assert [g.id for g in await db.chain(ids[0])] == ids[:1]


async def test_a_long_chain_keeps_the_root_and_the_latest_turns(db: Database) -> None:
    await db.set_default_allowance(GUILD, None)
    ids = await build_chain(db, 6)
    assert [g.id for g in await db.chain(ids[-1], max_depth=3)] == [ids[0], ids[4], ids[5]]
    assert [g.id for g in await db.chain(ids[-1], max_depth=2)] == [ids[0], ids[5]]
    assert [g.id for g in await db.chain(ids[-1], max_depth=1)] == [ids[5]]
    assert [g.id for g in await db.chain(ids[-1], max_depth=6)] == ids
    with pytest.raises(ValueError):
        await db.chain(ids[-1], max_depth=0)


async def test_branches_of_the_tree_are_separate_chains(db: Database) -> None:
    await db.set_default_allowance(GUILD, None)
    root, child = await build_chain(db, 2)
    branch = await db.create_generation(new_generation(prompt="other idea", parent_id=root))
    assert isinstance(branch, Reservation)
    assert [g.id for g in await db.chain(branch.generation_id)] == [root, branch.generation_id]
    assert [g.id for g in await db.chain(child)] == [root, child]


async def test_message_lookups(db: Database) -> None:
    gid = (await reserve(db, progress_message_id=500)).generation_id
    await db.mark_succeeded(gid, result_url="u")
    await db.set_result_message(gid, 600, thread_id=600)
    found = await db.generation_by_result_message(600)
    assert found is not None and found.id == gid and found.thread_id == 600
    assert await db.generation_by_result_message(500) is None  # a progress message isn't a result
    progress = await db.generation_by_progress_message(500)
    assert progress is not None and progress.id == gid
    assert await db.generation_by_result_message(12345) is None


async def test_moving_the_progress_message_off_the_interaction(db: Database) -> None:
    gid = (await reserve(db, interaction_token="tok", interaction_created_at=1000.0)).generation_id
    before = await db.get_generation(gid)
    assert before is not None and before.token_expires_at == 1000.0 + INTERACTION_TOKEN_TTL
    await db.set_progress_message(gid, 901, forget_interaction=True)
    after = await db.get_generation(gid)
    assert after is not None
    assert (after.progress_message_id, after.interaction_token, after.token_expires_at) == (901, None, None)
    await db.set_thread(gid, THREAD)
    assert (await db.get_generation(gid)).thread_id == THREAD  # type: ignore[union-attr]


async def test_result_message_can_be_recorded_when_succeeding(db: Database) -> None:
    gid = (await reserve(db)).generation_id
    await db.mark_succeeded(gid, result_url="u", result_message_id=700)
    found = await db.generation_by_result_message(700)
    assert found is not None and found.id == gid


async def test_cancelled_callers_leave_no_half_transactions(db: Database) -> None:
    """Tasks cancelled mid-transaction roll back (or commit whole); the connection stays usable."""
    await db.set_default_allowance(GUILD, None)
    await db.set_concurrency(GUILD, per_member=1000, per_guild=None)
    for delay in (0, 0.0005, 0.001, 0.002, 0.005):
        tasks = [asyncio.create_task(db.create_generation(new_generation())) for _ in range(20)]
        await asyncio.sleep(delay)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    generations = await db._fetchone("SELECT COUNT(*) FROM generations")
    ledger = await db._fetchone("SELECT COUNT(*) FROM ledger")
    assert generations is not None and ledger is not None and generations[0] == ledger[0]
    await reserve(db)
    # Whatever was reserved for a caller that vanished has no live lease: the next sweep claims it.
    for generation in await db.claim_expired("sweeper", 30.0, limit=1000):
        settlement = await db.mark_failed(generation.id, RESTART, "gone", lease=lease_of(generation, "sweeper"))
        assert settlement.refunded
    assert await db.unfinished_generations() == []
