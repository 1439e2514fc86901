"""Shards through the real client: a session gets only its shard's guilds, /gateway/bot tells the shard count
and the session start limit, and IDENTIFYs of one max_concurrency bucket must be spaced."""

from __future__ import annotations

import asyncio

import aiohttp
import discord

from bot.clock import Clock
from tests.discord_double import DiscordDouble, shard_of
from tests.fixtures.shards import ShardClient, connected


def _two_guilds(double: DiscordDouble) -> tuple[int, int]:
    first = double.add_guild("On shard 0", shard=(0, 2))
    second = double.add_guild("On shard 1", shard=(1, 2))
    assert shard_of(first.id, 2) == 0 and shard_of(second.id, 2) == 1
    return first.id, second.id


async def test_guild_ids_land_on_the_shard_asked_for(discord_double: DiscordDouble) -> None:
    for count in (1, 2, 3, 16):
        for shard_id in range(count):
            guild = discord_double.add_guild(f"{shard_id}/{count}", shard=(shard_id, count))
            assert (guild.id >> 22) % count == shard_id
    ids = [guild_id for guild_id in discord_double.world.guilds]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)  # still unique, still in creation order


async def test_each_shard_receives_only_its_guilds(discord_double: DiscordDouble) -> None:
    first_id, second_id = _two_guilds(discord_double)
    discord_double.max_concurrency = 2  # shards 0 and 1 in buckets of their own: no spacing needed
    default_shard = shard_of(discord_double.guild.id, 2)
    zero = ShardClient(shard_count=2, shard_ids=[0])
    one = ShardClient(shard_count=2, shard_ids=[1])

    async with connected(zero, discord_double), connected(one, discord_double):
        assert first_id in zero.guild_ids and second_id not in zero.guild_ids
        assert second_id in one.guild_ids and first_id not in one.guild_ids
        assert discord_double.guild.id in (zero, one)[default_shard].guild_ids
        (session_zero,) = discord_double.shard_sessions(0)
        (session_one,) = discord_double.shard_sessions(1)
        assert session_zero.shard == [0, 2] and session_one.shard == [1, 2]

        alice = discord_double.add_user("alice")
        first, second = discord_double.world.guilds[first_id], discord_double.world.guilds[second_id]
        discord_double.add_member(first, alice)
        discord_double.add_member(second, alice)
        await discord_double.send_message(first.text_channels[0], "in the first", user=alice)
        await discord_double.send_message(second.text_channels[0], "in the second", user=alice)
        await discord_double.send_message(discord_double.dm_channel(alice), "a DM", user=alice)
        await discord_double.wait_for(lambda: len(zero.message_guilds) == 2 and len(one.message_guilds) == 1)

        assert zero.message_guilds == [first_id, None]  # DMs belong to shard 0
        assert one.message_guilds == [second_id]
        late = discord_double.add_guild("Joined later", shard=(1, 2))
        await discord_double.wait_for(lambda: late.id in one.guild_ids)
        assert late.id not in zero.guild_ids
    assert discord_double.identify_violations == []


async def test_interactions_go_to_the_guilds_shard(discord_double: DiscordDouble) -> None:
    first_id, second_id = _two_guilds(discord_double)
    discord_double.max_concurrency = 2
    zero = ShardClient(shard_count=2, shard_ids=[0])
    one = ShardClient(shard_count=2, shard_ids=[1])
    tree = discord.app_commands.CommandTree(zero)

    @tree.command(name="ping", description="Ping")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    async with connected(zero, discord_double), connected(one, discord_double):
        for guild_id in (first_id, second_id):  # any process may sync commands to any guild (REST, not gateway)
            tree.copy_global_to(guild=discord.Object(guild_id))
            await tree.sync(guild=discord.Object(guild_id))
        first, second = discord_double.world.guilds[first_id], discord_double.world.guilds[second_id]
        member = discord_double.add_member(second, "bob")

        handle = await discord_double.slash("ping", user=member, channel=second.text_channels[0])
        await discord_double.wait_for(lambda: one.interaction_guilds)
        assert one.interaction_guilds == [second_id]
        assert zero.interaction_guilds == [] and handle.response_type is None  # shard 1's process would answer

        cy = discord_double.add_member(first, "cy")
        handle = await discord_double.slash("ping", user=cy, channel=first.text_channels[0])
        assert await handle.wait_response() == 4
        assert zero.interaction_guilds == [first_id]


async def test_a_session_without_a_shard_receives_every_guild(discord_double: DiscordDouble) -> None:
    first_id, second_id = _two_guilds(discord_double)
    client = ShardClient(shard_count=1)  # shard [0, 1]: the same as sending none

    async with connected(client, discord_double):
        assert {first_id, second_id, discord_double.guild.id} <= client.guild_ids
    plain = discord.Client(intents=discord.Intents.default())  # no `shard` in its IDENTIFY at all

    async with connected(plain, discord_double):
        assert {first_id, second_id, discord_double.guild.id} <= {g.id for g in plain.guilds}
    identify = [f for f in discord_double.gateway_log if f.direction == "in" and f.op == 2][-1]
    assert "shard" not in identify.data


async def test_gateway_bot_recommends_shards_and_tells_the_session_start_limit(clock: Clock) -> None:
    async with DiscordDouble(clock=clock, shards=3, max_concurrency=2) as double:
        client = ShardClient()  # no shard_count: discord.py asks /gateway/bot

        async with connected(client, double):
            assert client.shard_count == 3
            assert sorted(client.shards) == [0, 1, 2]
            limits = await client.fetch_session_start_limits()
            assert limits.max_concurrency == 2 and limits.total == 1000 and limits.remaining == 1000 - 3
        assert double.requests_to("GET", "/gateway/bot")
        assert [(record.shard, record.bucket) for record in double.identifies] == [
            ((0, 3), 0),
            ((1, 3), 1),
            ((2, 3), 0),
        ]
        # The client's hook does not wait: shard 2 came right after shard 0, in the same bucket.
        (violation,) = double.identify_violations
        assert violation.shard_id == 2 and violation.gap is not None and violation.gap < double.identify_spacing
        assert not violation.refused


async def test_identifies_spaced_by_the_interval_are_fine(clock: Clock) -> None:
    async with DiscordDouble(clock=clock, identify_spacing=0.3) as double:

        async def spaced(shard_id: int | None, initial: bool) -> None:
            if not initial:
                await asyncio.sleep(0.35)

        client = ShardClient(shard_count=2, hook=spaced)
        async with connected(client, double):
            pass
        first, second = double.identifies
        assert first.bucket == second.bucket == 0
        assert second.gap is not None and second.gap >= 0.3
        assert double.identify_violations == []


async def test_an_identify_too_soon_is_refused_with_op_9_when_enforced(clock: Clock) -> None:
    async with DiscordDouble(clock=clock, identify_spacing=0.3) as double:
        double.enforce_identify_spacing = True

        async def hurried(shard_id: int | None, initial: bool) -> None:
            if not initial:
                await asyncio.sleep(0.05)  # discord.py's hook would wait 5 s; this one retries too early

        client = ShardClient(shard_count=2, hook=hurried)
        async with connected(client, double):
            assert sorted(client.shards) == [0, 1]
        refused = [record for record in double.identifies if record.refused]
        assert refused and all(record.shard_id == 1 and record.session_id is None for record in refused)
        accepted = [record for record in double.identifies if not record.refused]
        assert [record.shard_id for record in accepted] == [0, 1]
        assert accepted[1].gap is not None and accepted[1].gap >= 0.3
        answers = [f for f in double.gateway_log if f.direction == "out" and f.op == 9]
        assert len(answers) == len(refused)
        assert sum(1 for session in double.sessions if session.shard_id == 1) == 1  # no session for a refusal


async def test_an_invalid_shard_closes_4010(discord_double: DiscordDouble, http_session: aiohttp.ClientSession) -> None:
    # On the wire: discord.py never sends a shard id outside 0..count-1.
    async with http_session.ws_connect(discord_double.gateway_url) as ws:
        hello = await ws.receive_json()
        assert hello["op"] == 10
        await ws.send_json({"op": 2, "d": {"token": discord_double.token, "intents": 1, "shard": [2, 2]}})
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE and message.data == 4010
    await discord_double.wait_for(lambda: discord_double.gateway.close_codes)
    assert discord_double.gateway.close_codes == [4010]
    assert discord_double.identifies == [] and discord_double.sessions == []
