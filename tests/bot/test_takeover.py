"""Processes die: `sora-bot run` killed with SIGKILL at the worst moments, and another process (or the next
start) on the same database (each backend) takes its jobs over from the expired leases — each delivered and
charged once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.fake_upstream import FakeUpstream
from storage import Database, GenerationStatus
from tests.bot.flow import ledger, results, until
from tests.discord_double import DiscordDouble
from tests.fixtures.discord import BotProcess

POST_MESSAGE = "POST /channels/{channel_id}/messages"
LEASE = {
    "SORA_API_FORMAT": "videos",
    "SORA_LEASE_SECONDS": "2",
    "SORA_POLL_INTERVAL": "0.05",
    "SORA_EDIT_INTERVAL": "0.3",
}
StartProcess = Callable[..., Awaitable[BotProcess]]


async def logged_in(double: DiscordDouble, process: BotProcess) -> None:
    await double.wait_for(lambda: "logged in as" in process.output, timeout=30, what="the bot to log in")


async def kill(process: BotProcess) -> None:
    assert process.process is not None
    process.process.kill()  # SIGKILL: no clean-up of any kind
    await process.process.wait()


async def all_succeeded(db: Database, count: int) -> bool:
    generations = [await db.get_generation(i) for i in range(1, count + 1)]
    return all(g is not None and g.status is GenerationStatus.SUCCEEDED for g in generations)


async def test_killed_between_posting_the_video_and_recording_it_the_next_start_posts_nothing_new(
    bot_process: StartProcess, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    post = discord_double.delay(POST_MESSAGE, None, after_commit=True)  # the video is in Discord, unheard of
    first = await bot_process(**LEASE)
    await logged_in(discord_double, first)
    alice = discord_double.add_member(name="alice")
    await discord_double.slash("sora", user=alice, prompt="a lighthouse fake:steps=3 fake:interval=0.05")
    await post.wait_held(timeout=30)
    await kill(first)
    post.release()
    assert len(results(discord_double)) == 1  # posted, but never recorded
    generation = await db.get_generation(1)
    assert generation is not None and generation.status is GenerationStatus.DELIVERING

    second = await bot_process(**LEASE)
    await until(lambda: all_succeeded(db, 1), timeout=30, what="the job to be settled by the next start")

    (result,) = results(discord_double)  # the repeated post found the message that exists (the job's nonce)
    (dedup,) = discord_double.deduplicated_requests
    assert dedup.path.endswith(f"/channels/{discord_double.channel.id}/messages")
    generation = await db.get_generation(1)
    assert generation is not None and generation.result_message_id == result.id and generation.attempt == 2
    assert await ledger(db) == ["charged"]
    assert len(fake_upstream.state.requests_to("/v1/videos", "POST")) == 1
    assert await second.stop() == 0, second.output


async def test_two_processes_on_one_database_the_survivor_delivers_the_dead_ones_jobs_once(
    bot_process: StartProcess, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    doomed = await bot_process(**LEASE)
    await logged_in(discord_double, doomed)
    members = [discord_double.add_member(name=name) for name in ("alice", "bob", "carol")]
    for number, member in enumerate(members):
        await discord_double.slash("sora", user=member, prompt=f"scene {number} fake:steps=80 fake:interval=0.1")

    async def all_upstream() -> bool:
        generations = [await db.get_generation(i) for i in (1, 2, 3)]
        return all(g is not None and g.task_id is not None for g in generations)

    await until(all_upstream, timeout=30, what="every job to reach the gateway")
    survivor = await bot_process(**LEASE)
    await logged_in(discord_double, survivor)
    await kill(doomed)
    await until(lambda: all_succeeded(db, 3), timeout=30, what="the survivor to deliver every job")

    delivered = results(discord_double)
    assert sorted(m.content.split("**")[1].split(" fake:")[0] for m in delivered) == ["scene 0", "scene 1", "scene 2"]
    assert await ledger(db) == ["charged", "charged", "charged"]
    assert len(fake_upstream.state.requests_to("/v1/videos", "POST")) == 3  # resumed by task id, not redone
    for generation_id in (1, 2, 3):
        generation = await db.get_generation(generation_id)
        assert generation is not None and generation.attempt == 2 and generation.result_message_id is not None
    assert await survivor.stop() == 0, survivor.output
    assert "Traceback" not in survivor.output, survivor.output
