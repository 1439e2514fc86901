"""The bot runs a slice of the shards: it receives only its shards' guilds, and processes sharing a database take
turns to IDENTIFY within one max_concurrency bucket."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from bot.clock import Clock
from bot.fake_upstream import FakeUpstream
from storage import Database
from tests.bot.helpers import start_bot, wait_result
from tests.discord_double import DiscordDouble, Guild
from tests.fixtures.discord import BotHarness
from tests.fixtures.shards import another_process

needs_identify_turn = pytest.mark.skipif(not hasattr(Database, "identify_turn"), reason="needs Database.identify_turn")


def two_guilds(double: DiscordDouble) -> tuple[Guild, Guild]:
    return double.add_guild("On shard 0", shard=(0, 2)), double.add_guild("On shard 1", shard=(1, 2))


def shard_settings(shard_id: int, *guilds: Guild, interval: float = 0.5) -> dict[str, object]:
    return {
        "sora_shard_count": 2,
        "sora_shard_ids": [shard_id],
        "sora_identify_interval": interval,
        "discord_guild_ids": [guild.id for guild in guilds],
    }


async def test_the_bot_receives_only_its_shards_guilds(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    mine, theirs = two_guilds(discord_double)
    bot = await start_bot(bot_harness, **shard_settings(0, mine, theirs))

    assert bot.shard_count == 2 and bot.shard_ids == [0]
    assert bot.get_guild(mine.id) is not None and bot.get_guild(theirs.id) is None
    assert bot.owns_guild(mine.id) and not bot.owns_guild(theirs.id) and bot.owns_guild(None)
    (identify,) = discord_double.identifies
    assert identify.shard == (0, 2)
    assert bot.ws is not None and bot.ws.shard_id == 0
    assert discord_double.requests_to("GET", "/gateway/bot") == []  # shard 0 is in bucket 0 whatever the limits

    alice = discord_double.add_user("alice")
    discord_double.add_member(mine, alice)
    discord_double.add_member(theirs, alice)
    elsewhere = await discord_double.slash("sora", user=alice, channel=theirs.text_channels[0], prompt="a heron")
    handle = await discord_double.slash("sora", user=alice, channel=mine.text_channels[0], prompt="a red fox")
    assert await handle.wait_response() == 5
    result = await wait_result(discord_double, mine.text_channels[0])
    assert "a red fox" in result.content

    # The other guild's interaction went to shard 1's sessions, and there are none: this process never saw it.
    assert elsewhere.callbacks == [] and elsewhere.response_type is None
    assert discord_double.messages(theirs.text_channels[0]) == []


async def test_a_shard_beyond_zero_asks_the_limits_once(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    mine, _ = two_guilds(discord_double)
    bot = await bot_harness.start(settings_overrides=shard_settings(1, mine))

    assert bot.shard_ids == [1] and bot.get_guild(mine.id) is None
    assert await bot.max_concurrency() == 1
    assert len(discord_double.requests_to("GET", "/gateway/bot")) == 1  # asked before identifying, then kept
    (identify,) = discord_double.identifies
    assert identify.shard == (1, 2)


@needs_identify_turn
async def test_two_processes_identify_one_bucket_an_interval_apart(
    bot_harness: BotHarness,
    discord_double: DiscordDouble,
    clock: Clock,
    http_session: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    database_url: str,
    tmp_path: Path,
) -> None:
    interval = 0.5
    discord_double.identify_spacing = interval  # max_concurrency 1: shards 0 and 1 share bucket 0
    mine, theirs = two_guilds(discord_double)
    async with another_process(
        double=discord_double,
        clock=clock,
        session=http_session,
        upstream_url=fake_upstream.base_url,
        database_url=database_url,
        tmp_path=tmp_path,
    ) as second:
        # Started together: discord.py's own hook would let both IDENTIFY at once (each is its process's first).
        zero, one = await asyncio.gather(
            bot_harness.start(settings_overrides=shard_settings(0, mine, interval=interval)),
            second.start(settings_overrides=shard_settings(1, mine, interval=interval)),
        )
        assert zero.get_guild(mine.id) is not None and zero.get_guild(theirs.id) is None
        assert one.get_guild(theirs.id) is not None and one.get_guild(mine.id) is None
        first, then = discord_double.identifies
        assert {first.shard_id, then.shard_id} == {0, 1} and first.bucket == then.bucket == 0
        assert then.gap is not None and then.gap >= interval
        assert discord_double.identify_violations == []
        await bot_harness.stop()


@needs_identify_turn
async def test_shards_in_different_buckets_do_not_wait_for_each_other(
    bot_harness: BotHarness,
    discord_double: DiscordDouble,
    clock: Clock,
    http_session: aiohttp.ClientSession,
    fake_upstream: FakeUpstream,
    database_url: str,
    tmp_path: Path,
) -> None:
    # Long, so that a shard wrongly made to wait for the other's turn shows (a busy machine may start the two bots
    # a few seconds apart, which says nothing about their turns).
    interval = 30.0
    discord_double.max_concurrency = 2  # shard 0 → bucket 0, shard 1 → bucket 1
    mine, _ = two_guilds(discord_double)
    async with another_process(
        double=discord_double,
        clock=clock,
        session=http_session,
        upstream_url=fake_upstream.base_url,
        database_url=database_url,
        tmp_path=tmp_path,
    ) as second:
        await asyncio.gather(
            bot_harness.start(settings_overrides=shard_settings(0, mine, interval=interval)),
            second.start(settings_overrides=shard_settings(1, mine, interval=interval)),
        )
        first, then = discord_double.identifies
        assert {first.bucket, then.bucket} == {0, 1}
        assert then.at - first.at < interval
        assert discord_double.identify_violations == []
        await bot_harness.stop()
