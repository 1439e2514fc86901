"""The double through the real client: login, command sync, and a slash command round trip."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from tests.discord_double import DiscordDouble, MessageFlag
from tests.fixtures.discord import BotHarness

ASSETS = Path(__file__).resolve().parents[2] / "bot" / "fake_upstream" / "assets"
MP4 = (ASSETS / "sample.mp4").read_bytes()
PNG = (ASSETS / "thumb.png").read_bytes()


class Render(commands.Cog):
    """A throwaway command that does what the real /sora does with Discord: defer, edit, post, thread."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str, bytes]] = []

    @app_commands.command(name="render", description="Render a test video")
    @app_commands.describe(prompt="What to render", seconds="How long", style="Look", image="Reference image")
    async def render(
        self,
        interaction: discord.Interaction,
        prompt: str,
        seconds: int = 4,
        style: Literal["film", "anime"] = "film",
        image: discord.Attachment | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        data = await image.read() if image else b""
        self.seen.append((prompt, seconds, style, data))
        await interaction.edit_original_response(content=f"Rendering “{prompt}”…")
        assert isinstance(interaction.channel, discord.TextChannel)
        video = await interaction.channel.send(
            content=f"{interaction.user.mention} here is “{prompt}”",
            file=discord.File(io.BytesIO(MP4), filename="video.mp4"),
        )
        thread = await video.create_thread(name=prompt[:100], auto_archive_duration=1440)
        await thread.send("Reply here to remix.")
        await interaction.edit_original_response(content=f"Done: {video.jump_url}")


async def test_login_and_command_sync(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    bot = await bot_harness.start(setup=lambda bot: bot.add_cog(Render()))

    assert bot.user is not None and bot.user.id == discord_double.bot_user.id
    assert bot.application_id == discord_double.application_id
    keys = [r.key for r in discord_double.requests]
    assert keys[:3] == [
        "GET /users/@me",
        "GET /oauth2/applications/@me",
        "PUT /applications/{application_id}/guilds/{guild_id}/commands",
    ]
    (command,) = discord_double.commands(discord_double.guild)
    assert command.name == "render"
    assert [o["name"] for o in command.options] == ["prompt", "seconds", "style", "image"]
    guild = bot.get_guild(discord_double.guild.id)
    assert guild is not None and guild.me is not None
    assert guild.get_channel(discord_double.channel.id) is not None
    assert guild.filesize_limit == 10 * 1024 * 1024
    session = discord_double.sessions[0]
    assert session.intents & (1 << 15)  # message content, as the bot asked


async def test_slash_round_trip(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    cog = Render()
    await bot_harness.start(setup=lambda bot: bot.add_cog(cog))
    alice = discord_double.add_member(name="alice")

    handle = await discord_double.slash("render", user=alice, prompt="a red fox", seconds=8, style="anime", image=PNG)

    assert await handle.wait_response() == 5
    done = await handle.wait_original(lambda m: m.content.startswith("Done"))
    assert [r.content for r in done.history] == ["", "Rendering “a red fox”…", done.content]
    assert done.history[0].flags & MessageFlag.LOADING
    assert not done.loading
    assert cog.seen == [("a red fox", 8, "anime", PNG)]

    video = await discord_double.wait_for_message(predicate=lambda m: m.attachments, author=discord_double.bot_user)
    (attachment,) = video.attachments
    assert attachment.filename == "video.mp4" and attachment.data == MP4
    assert attachment.content_type == "video/mp4"
    assert video.content == f"{alice.mention} here is “a red fox”"
    assert video.mentions == []  # allowed_mentions=none: the echo pings nobody
    assert done.content == f"Done: {video.jump_url}"

    (thread,) = discord_double.threads()
    assert thread.id == video.id and thread.name == "a red fox" and video.thread is thread
    (note,) = discord_double.messages(thread)
    assert note.content == "Reply here to remix."

    # The CDN serves the bytes back.
    async with bot_harness.session.get(attachment.url) as response:
        assert await response.read() == MP4
