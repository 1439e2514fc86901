"""The leased job lifecycle end to end (the real bot, the Discord double, the fake gateway, real SQLite): Cancel
at every phase boundary never gives a free video nor says "refunded" about a charged one; a slow download
neither blocks other members nor refuses Cancel; a busy database delays a settlement but never wedges a member."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from bot.fake_upstream import FakeUpstream
from storage import Database, Generation, GenerationStatus, Lease
from tests.bot.flow import ephemeral, ledger, results, settled, start, until
from tests.discord_double import DiscordDouble, InteractionHandle, Message
from tests.fixtures.discord import BotHarness

POST_MESSAGE = "POST /channels/{channel_id}/messages"
CALLBACK = "POST /interactions/{interaction_id}/{interaction_token}/callback"
REFUNDED = "refunded"


def description(message: Message) -> str:
    return str(message.embeds[0].get("description", "")) if message.embeds else ""


async def cancellable(handle: InteractionHandle, generation_id: int = 1) -> Message:
    return await handle.wait_original(lambda m: f"sora:cancel:{generation_id}" in json.dumps(m.components))


def said_refunded(double: DiscordDouble) -> bool:
    """Did the bot ever tell anyone (progress message, answer) that a credit came back?"""
    for message in double.world.messages.values():
        if message.author.id == double.bot_user.id:
            for revision in message.history:
                if REFUNDED in revision.content.lower() or REFUNDED in json.dumps(revision.embeds).lower():
                    return True
    return False


async def consistent(double: DiscordDouble, db: Database) -> None:
    """The invariant of every cancel race: a posted video is charged and never called refunded; a job that
    wasn't delivered is refunded."""
    generation = await db.get_generation(1)
    assert generation is not None and generation.finished
    posted = results(double)
    if generation.status is GenerationStatus.SUCCEEDED:
        assert len(posted) == 1 and await ledger(db) == ["charged"]
        assert not said_refunded(double)
    else:
        assert generation.status is GenerationStatus.CANCELLED
        assert posted == [] and await ledger(db) == ["refunded"]


async def test_cancel_while_waiting_for_a_slot_refunds_and_never_reaches_the_gateway(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format="videos", sora_max_concurrent_jobs=1)
    alice = discord_double.add_member(name="alice")
    bob = discord_double.add_member(name="bob")
    await discord_double.slash("sora", user=alice, prompt="a lighthouse fake:steps=30 fake:interval=0.05")
    waiting = await discord_double.slash("sora", user=bob, prompt="a harbour at dawn")
    progress = await waiting.wait_original(lambda m: "Waiting for a free slot" in json.dumps(m.embeds))
    await discord_double.click(progress, "sora:cancel:2", user=bob)
    final = await waiting.wait_original(lambda m: "Cancelled" in description(m))
    assert "refunded" in description(final) and final.components == []
    await settled(bot_harness, db, jobs=2)
    assert await ledger(db) == ["charged", "refunded"]
    assert len(fake_upstream.state.requests_to("/v1/videos", "POST")) == 1  # bob's never went upstream


async def test_cancel_once_the_upload_started_is_refused_truthfully_and_the_video_charged(
    bot_harness: BotHarness, discord_double: DiscordDouble, db: Database
) -> None:
    await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    post = discord_double.delay(POST_MESSAGE, None)  # the result post hangs until released
    handle = await discord_double.slash("sora", user=alice, prompt="a lighthouse fake:steps=3 fake:interval=0.05")
    progress = await cancellable(handle)
    await post.wait_held()
    press = await discord_double.click(progress, "sora:cancel:1", user=alice)
    answer = await until(lambda: press.followups, what="the answer to the late Cancel")
    assert ephemeral(answer[0]) and answer[0].content == "Too late to cancel: the video is being posted right now."
    post.release()
    await settled(bot_harness, db)
    await consistent(discord_double, db)
    assert (await db.get_generation(1)).status is GenerationStatus.SUCCEEDED  # type: ignore[union-attr]


@pytest.mark.parametrize("defer_latency", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("press_after", [0.05, 0.15, 0.25, 0.35])
async def test_cancel_at_any_moment_with_a_slow_defer_never_gives_a_free_video(
    defer_latency: float,
    press_after: float,
    bot_harness: BotHarness,
    discord_double: DiscordDouble,
    db: Database,
) -> None:
    await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt="a lighthouse fake:steps=4 fake:interval=0.05")
    progress = await cancellable(handle)
    if defer_latency:
        discord_double.delay(CALLBACK, defer_latency)  # the press's acknowledgement is slow to land
    await asyncio.sleep(press_after)  # somewhere between generating, downloading, posting and done
    current = discord_double.world.messages[progress.id]
    press = None
    if current.find_component("sora:cancel:1") is not None:
        press = await discord_double.click(current, "sora:cancel:1", user=alice)
    await settled(bot_harness, db)
    if press is not None:
        await press.wait_response(timeout=5)

        async def answered() -> bool:
            generation = await db.get_generation(1)
            assert generation is not None
            # Cancelled: the progress message says so; too late or finished: a short private answer.
            private = press.response_type == 4 or bool(press.followups)
            return generation.status is GenerationStatus.CANCELLED or private

        await until(answered, what="the press to be answered")
    await consistent(discord_double, db)


async def test_a_crawling_download_fails_after_its_deadline_frees_the_slot_and_can_be_cancelled(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(
        bot_harness,
        sora_api_format="videos",
        sora_max_concurrent_jobs=1,
        sora_download_timeout=3.0,
        sora_download_min_rate_kib=0,
    )
    alice = discord_double.add_member(name="alice")
    bob = discord_double.add_member(name="bob")
    carol = discord_double.add_member(name="carol")
    slow = await discord_double.slash("sora", user=alice, prompt="a lighthouse fake:slowdownload=1024")
    # The gateway finished alice's video; its download crawls at 1 KiB/s, and meanwhile bob's job runs and is
    # delivered: the gateway slot was freed when the gateway said "done".
    await slow.wait_original(lambda m: "fetching the video" in description(m))
    await discord_double.slash("sora", user=bob, prompt="a harbour at dawn")
    delivered = await discord_double.wait_for_message(
        predicate=lambda m: "a harbour at dawn" in m.content and bool(m.attachments), timeout=10
    )
    assert delivered.attachments
    final = await slow.wait_original(lambda m: m.components == [] and "fetching" not in description(m), timeout=10)
    assert "downloaded too slowly" in description(final) and "longer than 3 s" in description(final)
    assert "refunded" in description(final)

    # Cancel works during a download too.
    crawling = await discord_double.slash("sora", user=carol, prompt="a meadow fake:slowdownload=1024")
    progress = await crawling.wait_original(lambda m: "fetching the video" in description(m))
    await discord_double.click(progress, "sora:cancel:3", user=carol)
    cancelled = await crawling.wait_original(lambda m: "Cancelled" in description(m))
    assert "refunded" in description(cancelled)
    await settled(bot_harness, db, jobs=3)
    assert await ledger(db) == ["refunded", "charged", "refunded"]


async def test_a_database_locked_at_settlement_delays_it_and_the_member_goes_on_at_once(
    bot_harness: BotHarness, discord_double: DiscordDouble, db: Database, db_path: Path
) -> None:
    await start(bot_harness, sora_api_format="videos")
    await db.set_concurrency(discord_double.guild.id, per_member=1, per_guild=None)
    alice = discord_double.add_member(name="alice")
    post = discord_double.delay(POST_MESSAGE, None)
    await discord_double.slash("sora", user=alice, prompt="a lighthouse fake:steps=3 fake:interval=0.05")
    await post.wait_held()

    other = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # an admin's sqlite3 shell, a backup: the write lock is taken for 2 s
    post.release()
    await asyncio.sleep(2.0)
    generation = await db.get_generation(1)
    assert generation is not None and generation.status is GenerationStatus.DELIVERING  # waiting, not failed
    other.execute("COMMIT")
    other.close()

    await settled(bot_harness, db)
    assert (await db.get_generation(1)).status is GenerationStatus.SUCCEEDED  # type: ignore[union-attr]
    assert await ledger(db) == ["charged"] and len(results(discord_double)) == 1
    nxt = await discord_double.slash("sora", user=alice, prompt="a second one")
    await nxt.wait_original(lambda m: "sora:cancel:2" in json.dumps(m.components) or "Your video" in str(m.embeds))
    assert "already have" not in json.dumps(nxt.original.embeds if nxt.original else [])  # type: ignore[union-attr]
    await settled(bot_harness, db, jobs=2)
    assert await ledger(db) == ["charged", "charged"]


async def test_a_runner_whose_job_was_claimed_by_a_newer_attempt_stops_without_writing(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    bot = await start(bot_harness, sora_api_format="videos", sora_lease_seconds=0.9)
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt="a lighthouse fake:steps=40 fake:interval=0.05")
    await cancellable(handle)
    # Another process claims the job (as if this one had paused past its lease): attempt 2 is now the owner.
    await db._execute("UPDATE generations SET lease_expires_at = 0 WHERE id = 1")
    # (On PostgreSQL a claim skips a row the runner is writing at that instant: ask until it is free.)
    (claimed,) = await until(lambda: db.claim_expired("another-process", 600.0), what="the claim")
    assert claimed.attempt == 2

    await until(lambda: 1 not in bot.jobs.jobs, what="the stale runner to stop")
    await asyncio.sleep(0.5)  # anything the stale runner still had in flight would have landed by now
    generation = await db.get_generation(1)
    assert generation is not None and (generation.attempt, generation.lease_owner) == (2, "another-process")
    assert not generation.finished and results(discord_double) == []  # no post, no settlement by attempt 1
    assert await ledger(db) == ["reserved"]  # the new owner settles it
    await db.mark_cancelled(1, lease=claimed_lease(claimed))


def claimed_lease(generation: Generation) -> Lease:
    return Lease(generation.id, generation.attempt, generation.lease_owner or "")
