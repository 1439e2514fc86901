"""Gateway events through the real client: messages and the Message Content intent, components and modals,
followups, RESUME after op 7, and a bot restart."""

from __future__ import annotations

import asyncio
import io

import discord
from discord import app_commands
from discord.ext import commands

from tests.discord_double import DiscordDouble, Message, MessageFlag, Upload
from tests.fixtures.discord import BotHarness

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


class Listener(commands.Cog):
    """Records what the client receives."""

    def __init__(self) -> None:
        self.messages: list[discord.Message] = []
        self.contents: list[str] = []  # as received (discord.py updates cached messages in place on edits)
        self.edits: list[discord.RawMessageUpdateEvent] = []
        self.deletes: list[int] = []
        self.threads: list[discord.Thread] = []
        self.resumed = 0

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        self.messages.append(message)
        self.contents.append(message.content)

    @commands.Cog.listener()
    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        self.edits.append(payload)

    @commands.Cog.listener()
    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.deletes.append(payload.message_id)

    @commands.Cog.listener()
    async def on_thread_create(self, thread: discord.Thread) -> None:
        self.threads.append(thread)

    @commands.Cog.listener()
    async def on_resumed(self) -> None:
        self.resumed += 1

    def from_user(self) -> list[discord.Message]:
        return [m for m in self.messages if not m.author.bot]


async def _bot_post(harness: BotHarness, double: DiscordDouble, text: str) -> Message:
    assert harness.bot is not None
    channel = harness.bot.get_channel(double.channel.id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send(text)
    return double.message(sent.id)


async def test_replies_without_the_ping_arrive_empty_without_the_intent(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    listener = Listener()
    await bot_harness.start(message_content=False, setup=lambda bot: bot.add_cog(listener))
    assert not discord_double.sessions[0].intents & (1 << 15)
    alice = discord_double.add_member(name="alice")
    video = await _bot_post(bot_harness, discord_double, "your video")

    await discord_double.reply(video, "make it blue", user=alice, ping=False, attachments=[PNG])
    await discord_double.reply(video, "make it red", user=alice, ping=True)
    await discord_double.send_message(content="just chatting", user=alice)
    await discord_double.send_message(content=f"{discord_double.bot_user.mention} hello", user=alice)
    await discord_double.wait_for(lambda: len(listener.from_user()) == 4)

    silent, pinged, chat, mention = listener.from_user()
    assert (silent.content, silent.attachments) == ("", [])
    assert silent.type is discord.MessageType.reply and silent.reference is not None
    assert silent.reference.message_id == video.id
    assert isinstance(silent.reference.resolved, discord.Message)
    assert silent.reference.resolved.content == "your video"  # the bot's own message keeps its content
    assert pinged.content == "make it red" and pinged.mentions[0].id == discord_double.bot_user.id
    assert chat.content == ""
    assert mention.content.endswith("hello")

    # With the intent (a restart that asks for it), the same reply arrives whole.
    listener.messages.clear()
    await bot_harness.restart(message_content=True)
    await discord_double.reply(video, "make it green", user=alice, ping=False, attachments=[PNG])
    message = await discord_double.wait_for(lambda: listener.from_user() and listener.from_user()[0])
    assert message.content == "make it green" and message.attachments[0].filename == "file0.png"
    assert await message.attachments[0].read() == PNG


async def test_message_update_delete_and_thread_create_events(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    listener = Listener()
    await bot_harness.start(setup=lambda bot: bot.add_cog(listener))
    bob = discord_double.add_member(name="bob")

    posted = await discord_double.send_message(content="first", user=bob, attachments=[Upload("ref.png", PNG)])
    await discord_double.wait_for(lambda: listener.messages)
    await discord_double.edit_message(posted, "second")
    thread = discord_double.add_thread(discord_double.channel, "side", owner=bob)
    await discord_double.delete_message(posted)
    await discord_double.wait_for(lambda: listener.deletes)

    (received,) = listener.from_user()
    assert listener.contents == ["first"] and received.id == posted.id
    assert received.attachments[0].url.startswith(discord_double.base_url)
    assert listener.edits[0].data["content"] == "second"
    assert listener.threads[0].id == thread.id and listener.threads[0].owner_id == bob.id
    assert listener.deletes == [posted.id]
    assert [r.content for r in posted.history] == ["first", "second"] and posted.deleted


class Panel(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=None)
        self.log: list[str] = []

    @discord.ui.button(label="Again", custom_id="panel:again", style=discord.ButtonStyle.primary)
    async def again(self, interaction: discord.Interaction, button: discord.ui.Button[Panel]) -> None:
        self.log.append("again")
        await interaction.response.edit_message(content="again pressed", view=self)

    @discord.ui.button(label="Quiet", custom_id="panel:quiet")
    async def quiet(self, interaction: discord.Interaction, button: discord.ui.Button[Panel]) -> None:
        await interaction.response.defer()
        await interaction.edit_original_response(content="quietly edited")

    @discord.ui.button(label="Remix", custom_id="panel:remix")
    async def remix(self, interaction: discord.Interaction, button: discord.ui.Button[Panel]) -> None:
        await interaction.response.send_modal(RemixModal(self.log))

    @discord.ui.select(custom_id="panel:style", options=[discord.SelectOption(label=s) for s in ("film", "anime")])
    async def style(self, interaction: discord.Interaction, select: discord.ui.Select[Panel]) -> None:
        self.log.append(f"style={select.values[0]}")
        await interaction.response.send_message(f"style {select.values[0]}", ephemeral=True)


class RemixModal(discord.ui.Modal, title="Remix"):
    prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
        label="New prompt", custom_id="remix:prompt", max_length=4000, style=discord.TextStyle.paragraph
    )

    def __init__(self, log: list[str]) -> None:
        super().__init__(custom_id="remix:modal")
        self.log = log

    async def on_submit(self, interaction: discord.Interaction) -> None:
        self.log.append(f"remix={self.prompt.value}")
        await interaction.response.send_message(f"Remixing: {self.prompt.value}")


class PanelCog(commands.Cog):
    def __init__(self, view: Panel) -> None:
        self.view = view

    @app_commands.command(name="panel", description="Shows buttons")
    async def panel(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pick one", view=self.view)


async def test_buttons_selects_and_modals(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    view = Panel()
    await bot_harness.start(setup=lambda bot: bot.add_cog(PanelCog(view)))
    carol = discord_double.add_member(name="carol")

    handle = await discord_double.slash("panel", user=carol)
    panel = await handle.wait_original()
    assert handle.response_type == 4 and panel.custom_ids() == [
        "panel:again",
        "panel:quiet",
        "panel:remix",
        "panel:style",
    ]

    pressed = await discord_double.click(panel, "panel:again", user=carol)
    assert await pressed.wait_response() == 7
    assert panel.content == "again pressed" and pressed.original is panel

    quiet = await discord_double.click(panel, "panel:quiet", user=carol)
    assert await quiet.wait_response() == 6
    await discord_double.wait_for(lambda: panel.content == "quietly edited")

    picked = await discord_double.select(panel, "panel:style", ["anime"], user=carol)
    answer = await picked.wait_original()
    assert answer.ephemeral and answer.content == "style anime"
    assert answer not in discord_double.messages(include_ephemeral=False)

    opened = await discord_double.click(panel, "panel:remix", user=carol)
    assert await opened.wait_response() == 9
    assert opened.modal is not None and opened.modal["title"] == "Remix"
    submitted = await discord_double.submit_modal(panel, "remix:modal", {"remix:prompt": "now at night"})
    reply = await submitted.wait_original()
    assert reply.content == "Remixing: now at night"
    assert view.log == ["again", "style=anime", "remix=now at night"]


class Followups(commands.Cog):
    def __init__(self) -> None:
        self.done = asyncio.Event()

    @app_commands.command(name="follow", description="Defers, then follows up")
    async def follow(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        first = await interaction.followup.send("replaces the thinking message", wait=True)
        second = await interaction.followup.send("a second one", file=discord.File(io.BytesIO(PNG), "p.png"), wait=True)
        await second.edit(content="second, edited")
        original = await interaction.original_response()
        assert original.id == first.id
        extra = await interaction.followup.send("short-lived", wait=True)
        await extra.delete()
        await interaction.edit_original_response(attachments=[discord.File(io.BytesIO(PNG), "late.png")])
        self.done.set()


async def test_followups_and_original(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    cog = Followups()
    discord_double.set_rate_limit("webhook", window=0.2)  # 7 webhook calls: keep the client's pause short
    await bot_harness.start(setup=lambda bot: bot.add_cog(cog))
    handle = await discord_double.slash("follow", user=discord_double.add_member(name="dora"))
    await asyncio.wait_for(cog.done.wait(), 5)

    original = handle.original
    assert original is not None and not original.loading
    assert original.content == "replaces the thinking message"
    assert [a.filename for a in original.attachments] == ["late.png"]
    second, extra = handle.followups
    assert second.content == "second, edited" and second.attachments[0].data == PNG
    assert extra.deleted
    assert original.history[0].flags & MessageFlag.LOADING


async def test_op7_reconnect_resumes_and_replays(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    listener = Listener()
    bot = await bot_harness.start(setup=lambda bot: bot.add_cog(listener))
    erin = discord_double.add_member(name="erin")
    (session,) = discord_double.sessions

    assert discord_double.force_reconnect() == 1
    # Sent while the client is between sockets: it must arrive after the RESUME.
    await discord_double.send_message(content="while you were away", user=erin)
    await discord_double.wait_for(lambda: session.resumes == 1 and session.connected)
    await discord_double.wait_for(lambda: listener.from_user() and listener.resumed)

    assert [m.content for m in listener.from_user()] == ["while you were away"]
    resume = next(f for f in discord_double.gateway_log if f.direction == "in" and f.op == 6)
    assert resume.data["session_id"] == session.id
    assert len(discord_double.sessions) == 1  # resumed, not re-identified
    assert bot.ws is not None and str(bot.ws.gateway).startswith(discord_double.resume_gateway_url)


async def test_restart_identifies_again(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    first = await bot_harness.start(setup=lambda bot: bot.add_cog(PanelCog(Panel())))
    second = await bot_harness.restart()

    assert first is not second and first.is_closed() and second.is_ready()
    old, new = discord_double.sessions  # a fresh IDENTIFY, not a RESUME
    await discord_double.wait_for(lambda: not old.connected, timeout=2)
    assert new.connected and new.resumes == 0
    # An AutoShardedBot closes its shard cleanly (1000): the session ends, as on Discord.
    assert discord_double.gateway.close_codes == [1000]
    assert [names for _, names in discord_double.command_syncs] == [["panel"], ["panel"]]
    handle = await discord_double.slash("panel", user=discord_double.add_member(name="gus"))
    assert await handle.wait_response() == 4
