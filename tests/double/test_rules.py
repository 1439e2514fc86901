"""Discord's rules as the double enforces them, seen through the real discord.py client."""

from __future__ import annotations

import asyncio
import io

import discord
import pytest
from discord import app_commands
from discord.ext import commands
from discord.webhook.async_ import async_context, interaction_response_params

from tests.discord_double import MIB, DiscordDouble, Overwrite, Permission
from tests.fixtures.discord import BotHarness

MESSAGES = "/channels/{channel_id}/messages"


def text_channel(bot: commands.Bot, channel_id: int) -> discord.TextChannel:
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


class Gated(commands.Cog):
    """`/slow` waits for the test to open `gate` before it defers, then again before it edits."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.edit_gate = asyncio.Event()
        self.errors: list[discord.HTTPException] = []
        self.done = asyncio.Event()

    @app_commands.command(name="slow", description="Acknowledges when told to")
    async def slow(self, interaction: discord.Interaction) -> None:
        try:
            await self.gate.wait()
            await interaction.response.defer()
            await self.edit_gate.wait()
            await interaction.edit_original_response(content="finally")
        except discord.HTTPException as error:
            self.errors.append(error)
        finally:
            self.done.set()

    @app_commands.command(name="twice", description="Acknowledges twice")
    async def twice(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        # discord.py refuses a second response itself; go through its webhook adapter as a buggy bot might.
        adapter = async_context.get()
        try:
            await adapter.create_interaction_response(
                interaction.id, interaction.token, session=interaction._session, params=interaction_response_params(5)
            )
        except discord.HTTPException as error:
            self.errors.append(error)
        self.done.set()


# --- rate limits ------------------------------------------------------------------------------------------------


async def test_a_429_is_honoured_and_retried(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    bot = await bot_harness.start()
    discord_double.inject_rate_limit(f"POST {MESSAGES}", retry_after=0.05)

    sent = await text_channel(bot, discord_double.channel.id).send("after a 429")

    first, second = discord_double.requests_to("POST", MESSAGES)
    assert first.status == 429
    assert first.response == {"message": "You are being rate limited.", "retry_after": 0.05, "global": False}
    assert first.headers["Via"] and first.headers["X-RateLimit-Scope"] == "user"
    assert first.headers["Retry-After"] == "1" and first.headers["X-RateLimit-Remaining"] == "0"
    assert second.status == 200 and second.monotonic - first.monotonic >= 0.05
    assert [m.content for m in discord_double.messages()] == ["after a 429"]
    assert sent.id == discord_double.messages()[0].id


async def test_channel_bucket_headers_pace_the_client(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    discord_double.set_rate_limit("message_create", limit=5, window=0.3)
    bot = await bot_harness.start()
    channel = text_channel(bot, discord_double.channel.id)

    await asyncio.gather(*(channel.send(f"message {i}") for i in range(12)))

    posts = [r for r in discord_double.requests_to("POST", MESSAGES) if r.status == 200]
    assert len(posts) == 12 and len(discord_double.messages()) == 12
    ok = posts[0]
    assert ok.headers["X-RateLimit-Limit"] == "5" and ok.headers["X-RateLimit-Bucket"]
    assert float(ok.headers["X-RateLimit-Reset-After"]) <= 0.3
    # The client read the headers and paced itself: no 429, and 12 messages at 5 per window took 3 windows.
    assert not discord_double.rejections(), discord_double.rejections()
    assert posts[-1].monotonic - posts[0].monotonic >= 2 * 0.3 - 0.01


async def test_global_limit(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    bot = await bot_harness.start()
    discord_double.limiter.global_limit = 3
    discord_double.limiter.global_window = 0.2
    await asyncio.gather(*(bot.fetch_channel(discord_double.channel.id) for _ in range(6)))

    fetches = discord_double.requests_to("GET", "/channels/{channel_id}")
    assert sum(r.ok for r in fetches) == 6
    limited = [r for r in fetches if r.status == 429]
    assert limited and all(r.response["global"] is True for r in limited)
    assert all(
        r.headers["X-RateLimit-Global"] == "true" and r.headers["X-RateLimit-Scope"] == "global" for r in limited
    )


# --- interaction timing -----------------------------------------------------------------------------------------


async def test_late_acknowledgement_is_unknown_interaction(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    cog = Gated()
    await bot_harness.start(setup=lambda bot: bot.add_cog(cog))
    alice = discord_double.add_member(name="alice")

    handle = await discord_double.slash("slow", user=alice)
    discord_double.advance(4)
    cog.gate.set()
    await asyncio.wait_for(cog.done.wait(), 5)

    (error,) = cog.errors
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert handle.response_type is None
    (record,) = discord_double.rejections(10062)
    assert record.kind == "late_acknowledgement"


async def test_interaction_arriving_old_cannot_be_acknowledged(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    cog = Gated()
    cog.gate.set()
    cog.edit_gate.set()
    await bot_harness.start(setup=lambda bot: bot.add_cog(cog))

    await discord_double.slash("slow", user=discord_double.add_member(name="bob"), age=3.5)
    await asyncio.wait_for(cog.done.wait(), 5)
    assert [e.code for e in cog.errors] == [10062]


async def test_second_acknowledgement_is_refused(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    cog = Gated()
    await bot_harness.start(setup=lambda bot: bot.add_cog(cog))

    handle = await discord_double.slash("twice", user=discord_double.add_member(name="carol"))
    await asyncio.wait_for(cog.done.wait(), 5)
    assert [(e.status, e.code) for e in cog.errors] == [(400, 40060)]
    assert handle.response_type == 5


async def test_expired_token_after_fifteen_minutes(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    cog = Gated()
    cog.gate.set()
    await bot_harness.start(setup=lambda bot: bot.add_cog(cog))

    handle = await discord_double.slash("slow", user=discord_double.add_member(name="dave"))
    assert await handle.wait_response() == 5
    discord_double.advance(16 * 60)
    cog.edit_gate.set()
    await asyncio.wait_for(cog.done.wait(), 5)

    (error,) = cog.errors
    assert (error.status, error.code) == (401, 50027)
    assert handle.original is not None and handle.original.loading  # the edit never landed
    assert bot_harness.bot is not None and bot_harness.bot.clock.time() - handle.interaction.created >= 16 * 60


# --- uploads ----------------------------------------------------------------------------------------------------


async def test_upload_limit_follows_the_boost_tier(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    boosted = discord_double.add_guild("Boosted", premium_tier=2)
    bot = await bot_harness.start()
    big = b"\0" * (11 * MIB)

    plain = text_channel(bot, discord_double.channel.id)
    discord_double.expect_rejections(40005)
    with pytest.raises(discord.HTTPException) as refused:
        await plain.send(file=discord.File(io.BytesIO(big), "big.mp4"))
    assert (refused.value.status, refused.value.code) == (413, 40005)
    assert discord_double.messages() == []

    guild = bot.get_guild(boosted.id)
    assert guild is not None and guild.filesize_limit == 50 * MIB
    message = await text_channel(bot, boosted.text_channels[0].id).send(file=discord.File(io.BytesIO(big), "big.mp4"))
    (stored,) = discord_double.messages(boosted.text_channels[0])
    assert stored.id == message.id and stored.attachments[0].size == 11 * MIB


async def test_interaction_uploads_use_attachment_size_limit(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    results: list[object] = []

    class Upload(commands.Cog):
        @app_commands.command(name="upload", description="Uploads 11 MiB")
        async def upload(self, interaction: discord.Interaction) -> None:
            results.append(interaction.filesize_limit)
            await interaction.response.defer()
            try:
                await interaction.edit_original_response(
                    attachments=[discord.File(io.BytesIO(b"\0" * (11 * MIB)), "big.mp4")]
                )
            except discord.HTTPException as error:
                results.append(error.code)
            else:
                results.append("ok")

    boosted = discord_double.add_guild("Boosted", premium_tier=2)
    await bot_harness.start(
        setup=lambda bot: bot.add_cog(Upload()),
        settings_overrides={"discord_guild_ids": [discord_double.guild.id, boosted.id]},
    )
    discord_double.expect_rejections(40005)
    await discord_double.slash("upload", user=discord_double.add_member(name="erin"))
    await discord_double.wait_for(lambda: len(results) == 2)
    await discord_double.slash(
        "upload", user=discord_double.add_member(boosted, "frank"), channel=boosted.text_channels[0]
    )
    await discord_double.wait_for(lambda: len(results) == 4)
    assert results == [10 * MIB, 40005, 50 * MIB, "ok"]


# --- permissions and threads ------------------------------------------------------------------------------------


async def test_missing_permissions_are_403_50013(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    guild = discord_double.guild
    muted = discord_double.add_channel(
        guild, "read-only", overwrites=[Overwrite.for_role(guild.everyone, deny=Permission.SEND_MESSAGES)]
    )
    no_files = discord_double.add_channel(
        guild, "no-files", overwrites=[Overwrite.for_member(discord_double.bot_user, deny=Permission.ATTACH_FILES)]
    )
    no_embeds = discord_double.add_channel(
        guild, "no-embeds", overwrites=[Overwrite.for_role(guild.everyone, deny=Permission.EMBED_LINKS)]
    )
    no_threads = discord_double.add_channel(
        guild, "no-threads", overwrites=[Overwrite.for_role(guild.everyone, deny=Permission.CREATE_PUBLIC_THREADS)]
    )
    bot = await bot_harness.start()

    attempts = {
        "send": text_channel(bot, muted.id).send("hi"),
        "file": text_channel(bot, no_files.id).send(file=discord.File(io.BytesIO(b"x"), "x.txt")),
        "embed": text_channel(bot, no_embeds.id).send(embed=discord.Embed(title="t")),
    }
    for name, attempt in attempts.items():
        with pytest.raises(discord.Forbidden) as refused:
            await attempt
        assert refused.value.code == 50013, name
    starter = await text_channel(bot, no_threads.id).send("start")
    with pytest.raises(discord.Forbidden) as refused:
        await starter.create_thread(name="nope")
    assert refused.value.code == 50013
    assert [m.content for m in discord_double.messages(no_threads)] == ["start"]
    # Permissions the bot sees match the double's: it could have checked first.
    me = text_channel(bot, muted.id).guild.me
    assert not text_channel(bot, muted.id).permissions_for(me).send_messages


async def test_threads_need_send_in_threads_and_refuse_when_archived(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    guild = discord_double.guild
    everyone = guild.everyone
    channel = discord_double.add_channel(
        guild, "threads-only", overwrites=[Overwrite.for_role(everyone, deny=Permission.SEND_MESSAGES)]
    )
    open_thread = discord_double.add_thread(channel, "open")
    closed_channel = discord_double.add_channel(
        guild, "no-thread-posts", overwrites=[Overwrite.for_role(everyone, deny=Permission.SEND_MESSAGES_IN_THREADS)]
    )
    closed_thread = discord_double.add_thread(closed_channel, "closed")
    bot = await bot_harness.start()

    thread = bot.get_channel(open_thread.id)
    assert isinstance(thread, discord.Thread)
    await thread.send("allowed: Send Messages has no effect in threads")
    other = bot.get_channel(closed_thread.id)
    assert isinstance(other, discord.Thread)
    with pytest.raises(discord.Forbidden) as refused:
        await other.send("refused")
    assert refused.value.code == 50013

    discord_double.archive_thread(open_thread)
    await discord_double.wait_for(lambda: thread.archived)
    with pytest.raises(discord.HTTPException) as archived:
        await thread.send("too late")
    assert (archived.value.status, archived.value.code) == (400, 50083)
    assert [m.content for m in discord_double.messages(open_thread)] == [
        "allowed: Send Messages has no effect in threads"
    ]
