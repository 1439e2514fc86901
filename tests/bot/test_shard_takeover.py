"""Two `sora-bot run` processes, shards 0 and 1 of 2, on one database (each backend; PostgreSQL is what several
machines would use): one is killed with SIGKILL mid-jobs, the other delivers each of its jobs exactly once within
about one lease period; restarted, it serves new jobs, and nothing is processed twice."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bot.fake_upstream import FakeUpstream
from storage import Database, GenerationStatus
from tests.bot.flow import ledger, results, until
from tests.discord_double import DiscordDouble, Guild, Message
from tests.fixtures.discord import BotProcess

LEASE_SECONDS = 2.0


def all_results(double: DiscordDouble, guilds: list[Guild]) -> list[Message]:
    return [m for guild in guilds for m in results(double, guild.text_channels[0])]
StartProcess = Callable[..., Awaitable[BotProcess]]


async def test_a_killed_shard_process_s_jobs_are_delivered_once_by_the_other(
    bot_process: StartProcess, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    guilds = [discord_double.add_guild("zero", shard=(0, 2)), discord_double.add_guild("one", shard=(1, 2))]
    env = {
        "SORA_API_FORMAT": "videos",
        "SORA_LEASE_SECONDS": str(LEASE_SECONDS),
        "SORA_POLL_INTERVAL": "0.05",
        "SORA_EDIT_INTERVAL": "0.3",
        "SORA_SHARD_COUNT": "2",
        "SORA_MAX_CONCURRENT_JOBS": "10",
        "SORA_IDENTIFY_INTERVAL": "0.2",
        "DISCORD_GUILD_IDS": ",".join(str(g.id) for g in guilds),
    }
    doomed = await bot_process(SORA_SHARD_IDS="0", **env)
    survivor = await bot_process(SORA_SHARD_IDS="1", **env)
    for process in (doomed, survivor):
        await discord_double.wait_for(lambda p=process: "logged in as" in p.output, timeout=30, what="a login")
    await discord_double.wait_for(
        lambda: all(discord_double.shard_sessions(i) for i in (0, 1)), timeout=30, what="both shards connected"
    )

    # Three jobs in each guild: each process accepts its own guild's.
    for guild in guilds:
        channel = guild.text_channels[0]
        for number in range(3):
            member = discord_double.add_member(guild, f"m{guild.id % 1000}-{number}")
            await discord_double.slash(
                "sora", user=member, channel=channel, prompt=f"{guild.name} {number} fake:steps=60 fake:interval=0.1"
            )

    async def every_job_upstream() -> bool:
        generations = [await db.get_generation(i) for i in range(1, 7)]
        return all(g is not None and g.task_id is not None for g in generations)

    await until(every_job_upstream, timeout=30, what="every job to reach the gateway")
    by_guild = {
        g.id: [x for x in [await db.get_generation(i) for i in range(1, 7)] if x and x.guild_id == g.id] for g in guilds
    }
    doomed_owner = {g.lease_owner for g in by_guild[guilds[0].id]}
    survivor_owner = {g.lease_owner for g in by_guild[guilds[1].id]}
    assert len(doomed_owner) == 1 and len(survivor_owner) == 1 and doomed_owner != survivor_owner
    assert doomed.process is not None
    loop = asyncio.get_running_loop()
    doomed.process.kill()
    killed_at = loop.time()
    await doomed.process.wait()

    async def taken_over() -> bool:
        jobs = [await db.get_generation(g.id) for g in by_guild[guilds[0].id]]
        return all(j is not None and (j.lease_owner in survivor_owner or j.finished) for j in jobs)

    await until(taken_over, timeout=LEASE_SECONDS + 10, what="the survivor to take the dead one's jobs")
    takeover = loop.time() - killed_at
    assert takeover <= LEASE_SECONDS + 3.0, takeover  # one lease period plus a beat or two

    async def all_succeeded() -> bool:
        jobs = [await db.get_generation(i) for i in range(1, 7)]
        return all(j is not None and j.status is GenerationStatus.SUCCEEDED for j in jobs)

    await until(all_succeeded, timeout=40, what="every job delivered")
    delivered = all_results(discord_double, guilds)
    assert len(delivered) == 6 and len({m.id for m in delivered}) == 6  # each once
    assert await ledger(db) == ["charged"] * 6
    assert len(fake_upstream.state.requests_to("/v1/videos", "POST")) == 6  # resumed by task id, not redone
    for job in by_guild[guilds[0].id]:
        after = await db.get_generation(job.id)
        assert after is not None and after.attempt == 2 and after.lease_owner in survivor_owner

    # The dead shard's process comes back: it serves its guild again, and nothing old is processed twice.
    reborn = await bot_process(SORA_SHARD_IDS="0", **env)
    await discord_double.wait_for(lambda: "logged in as" in reborn.output, timeout=30, what="the restart")
    newcomer = discord_double.add_member(guilds[0], "newcomer")
    await discord_double.slash("sora", user=newcomer, channel=guilds[0].text_channels[0], prompt="after fake:steps=2")
    await until(lambda: db.get_generation(7), what="the new job")

    async def new_job_done() -> bool:
        job = await db.get_generation(7)
        return job is not None and job.status is GenerationStatus.SUCCEEDED

    await until(new_job_done, timeout=30, what="the new job delivered")
    new_job = await db.get_generation(7)
    assert new_job is not None and new_job.attempt == 1 and new_job.lease_owner not in doomed_owner | survivor_owner
    assert len(all_results(discord_double, guilds)) == 7
    assert len(fake_upstream.state.requests_to("/v1/videos", "POST")) == 7
    assert await ledger(db) == ["charged"] * 7
    for process in (survivor, reborn):
        assert await process.stop() == 0, process.output
        assert "Traceback" not in process.output, process.output
