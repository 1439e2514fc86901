"""The REST surface the bot uses beyond the round trip: messages, fetches, DMs, reactions, global sync."""

from __future__ import annotations

import io

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.discord_double import DiscordDouble
from tests.fixtures.discord import BotHarness

PNG = b"\x89PNG\r\n\x1a\n" + b"\1" * 16


async def test_channel_messages_edit_fetch_history_delete(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    # Five creates/edits exhaust the channel's 5 s bucket and discord.py then holds the fifth for the reset.
    discord_double.set_rate_limit("message_create", window=0.2)
    bot = await bot_harness.start()
    channel = bot.get_channel(discord_double.channel.id)
    assert isinstance(channel, discord.TextChannel)
    ivy = discord_double.add_member(name="ivy")
    theirs = await discord_double.send_message(content="from ivy", user=ivy)

    async with channel.typing():
        sent = await channel.send("v1", file=discord.File(io.BytesIO(PNG), "a.png"))
    await sent.edit(content="v2", attachments=[*sent.attachments, discord.File(io.BytesIO(PNG), "b.png")])
    await sent.edit(content="v3", attachments=[])
    await sent.add_reaction("👍")
    fetched = await channel.fetch_message(sent.id)
    history = [m.content async for m in channel.history(limit=10)]
    reply = await fetched.reply("a reply", mention_author=False)

    stored = discord_double.message(sent.id)
    assert [(r.content, r.attachments) for r in stored.history] == [
        ("v1", ("a.png",)),
        ("v2", ("a.png", "b.png")),
        ("v3", ()),
    ]
    assert fetched.content == "v3" and fetched.edited_at is not None
    assert history == ["v3", "from ivy"]
    assert stored.reactions == {"👍": {discord_double.bot_user.id}}
    assert discord_double.message(reply.id).reference is stored

    await sent.delete()
    await discord_double.wait_for(lambda: stored.deleted)
    discord_double.expect_rejections(50005)  # editing someone else's message is the bot's bug, on purpose here
    other = await channel.fetch_message(theirs.id)
    try:
        await other.edit(content="not mine")
    except discord.Forbidden as refused:
        assert refused.code == 50005
    else:
        raise AssertionError("editing another user's message must fail")
    assert [m.content for m in discord_double.messages()] == ["from ivy", "a reply"]


async def test_fetches_and_direct_messages(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    bot = await bot_harness.start()
    jay = discord_double.add_member(name="jay")

    guild = await bot.fetch_guild(discord_double.guild.id)
    channel = await bot.fetch_channel(discord_double.channel.id)
    member = await guild.fetch_member(jay.id)
    user = await bot.fetch_user(jay.id)
    assert (guild.name, channel.id, member.id, user.name) == ("Test Guild", discord_double.channel.id, jay.id, "jay")

    await user.send("a private note")
    dm = discord_double.dm_channel(jay)
    (note,) = discord_double.messages(dm)
    assert note.content == "a private note" and note.author is discord_double.bot_user


async def test_global_command_sync(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    class Ping(commands.Cog):
        @app_commands.command(name="ping", description="Pong")
        async def ping(self, interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pong", ephemeral=True)

    await bot_harness.start(setup=lambda bot: bot.add_cog(Ping()), settings_overrides={"discord_guild_ids": []})
    assert [c.name for c in discord_double.commands()] == ["ping"]
    assert discord_double.commands(discord_double.guild) == []
    handle = await discord_double.slash("ping", user=discord_double.add_member(name="kim"))
    answer = await handle.wait_original()
    assert answer.content == "pong" and answer.ephemeral


async def test_a_429_on_an_interaction_webhook_is_retried(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    class Edit(commands.Cog):
        @app_commands.command(name="edit", description="Defers then edits")
        async def edit(self, interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            await interaction.edit_original_response(content="edited after a 429")

    await bot_harness.start(setup=lambda bot: bot.add_cog(Edit()))
    discord_double.inject_rate_limit("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original")
    handle = await discord_double.slash("edit", user=discord_double.add_member(name="lee"))
    message = await handle.wait_original(lambda m: m.content)
    assert message.content == "edited after a 429"
    statuses = [r.status for r in handle.requests() if r.method == "PATCH"]
    assert statuses == [429, 200]


async def test_message_content_intent_off_in_the_portal(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    discord_double.message_content_enabled = False
    with pytest.raises(discord.PrivilegedIntentsRequired):
        await bot_harness.start()
    assert discord_double.gateway.close_codes == [4014]
    await bot_harness.start(message_content=False)  # without the intent the bot still logs in
    assert bot_harness.bot is not None and bot_harness.bot.is_ready()


async def test_response_with_file_and_thread_archive(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    archived: list[bool] = []

    class Files(commands.Cog):
        @app_commands.command(name="file", description="Answers with a file")
        async def file(self, interaction: discord.Interaction) -> None:
            await interaction.response.send_message(
                "here", file=discord.File(io.BytesIO(PNG), "here.png"), ephemeral=True
            )
            assert isinstance(interaction.channel, discord.TextChannel)
            thread = await interaction.channel.create_thread(name="side", type=discord.ChannelType.public_thread)
            await thread.send("in the thread")
            edited = await thread.edit(archived=True)
            archived.append(edited.archived)

    await bot_harness.start(setup=lambda bot: bot.add_cog(Files()))
    handle = await discord_double.slash("file", user=discord_double.add_member(name="max"))
    answer = await handle.wait_original()
    assert answer.ephemeral and answer.attachments[0].data == PNG and answer.attachments[0].ephemeral
    await discord_double.wait_for(lambda: archived)
    (thread,) = discord_double.threads()
    assert archived == [True] and thread.archived and thread.type == 11
    assert [m.content for m in discord_double.messages(thread)] == ["in the thread"]
