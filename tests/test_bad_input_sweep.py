"""Hostile input, table-driven, through the Discord double: every case gets a clear answer (or, where the bot can't
know it was addressed, silence), nothing pings anyone, nothing crashes (no ERROR log, no traceback) and nothing
is charged unless a video was legitimately asked for.

Run through `bench/bad_inputs.py` to write `bench/results/bad_inputs.json` (`bad_inputs_tried`,
`bad_inputs_crashed`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.client import INITIAL_EXTENSIONS, SoraBot
from bot.fake_upstream import FakeUpstream
from storage import Database, GenerationStatus
from tests.bot.flow import until
from tests.discord_double import (
    Channel,
    DiscordDouble,
    InteractionHandle,
    InteractionType,
    Member,
    Message,
    Upload,
)
from tests.fixtures.discord import BotHarness

ASSETS = Path(__file__).resolve().parents[1] / "bot" / "fake_upstream" / "assets"
PNG = (ASSETS / "thumb.png").read_bytes()
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
MIB = 1024 * 1024
QUICK = "fake:steps=2 fake:interval=0.01"
RESULTS_ENV = "BENCH_BAD_INPUTS_OUT"

# Catalogue sentences (English) a member should see.
EMPTY = "the prompt is empty"
TOO_LONG = "the limit is"
UNKNOWN_MODEL = "There's no model called"
NOT_IMAGE = "isn't a supported image"
IMAGE_TOO_BIG = "images can be at most"
SECONDS = "makes videos of"
NOT_YOURS = "can do that"
GONE = "can't find that video"
STALE = "This button no longer works"
BANNED = "not allowed to make videos"
CHANNEL_CLOSED = "Videos can only be made in"
BUSY = "queue is full"
BUTTON_GONE = "(the button is no longer on the message)"

# The double's windows (5/5 s per channel, 5/2 s per webhook) shortened on both sides so a case takes a moment.
CHANNEL_WINDOW, WEBHOOK_WINDOW = 0.5, 0.2


# --- the world a case acts in ------------------------------------------------------------------------------------


@dataclass
class Sweep:
    harness: BotHarness
    double: DiscordDouble
    fake: FakeUpstream
    db: Database
    member: Member
    other: Member
    answers: list[str] = field(default_factory=list)  # what the bot said back, per step of the case

    @property
    def channel(self) -> Channel:
        return self.double.channel

    async def slash(self, *, user: Member | None = None, **options: Any) -> InteractionHandle:
        handle = await self.double.slash("sora", user=user or self.member, **options)
        await handle.wait_response()
        return handle

    async def stale_slash(self, options: list[dict[str, Any]], *, user: Member | None = None) -> InteractionHandle:
        """What a stale or modified client can send: options Discord's own client would have refused."""
        command = self.double.find_command("sora", self.channel.guild)
        data = {"id": str(command.id), "name": "sora", "type": 1, "options": options, "guild_id": str(command.guild_id)}
        interaction = self.double.world.create_interaction(
            InteractionType.APPLICATION_COMMAND, user=(user or self.member).user, channel=self.channel, data=data
        )
        handle = InteractionHandle(self.double, interaction)
        await handle.wait_response()
        return handle

    async def stale_click(self, message: Message, custom_id: str, *, user: Member) -> InteractionHandle:
        """A button press from a client still showing an older state of `message` (the button may be gone now)."""
        data = {"custom_id": custom_id, "component_type": 2}
        interaction = self.double.world.create_interaction(
            InteractionType.MESSAGE_COMPONENT, user=user.user, channel=message.channel, data=data, message=message
        )
        handle = InteractionHandle(self.double, interaction)
        await handle.wait_response()
        return handle

    async def answer_of(self, handle: InteractionHandle, *, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        """The text the member sees in answer to an interaction (ephemeral reply or followup)."""

        def text() -> str | None:
            parts = [m.content + json.dumps(m.embeds, ensure_ascii=False) for m in handle.followups]
            original = handle.original
            if original is not None and not original.deleted and not original.loading:
                parts.append(original.content + json.dumps(original.embeds, ensure_ascii=False))
            return "\n".join(p for p in parts if p.strip()) or None

        answer = await self.double.wait_for(text, timeout, what=f"an answer to interaction {handle.id}")
        self.answers.append(answer)
        return answer

    async def video(self, *, user: Member | None = None) -> Message:
        """A finished video of `user` (default: the member) to reply to or press buttons on."""
        before = {m.id for m in self.results()}
        await self.slash(user=user, prompt=f"a paper boat on a river {QUICK}")
        message: Message = await self.double.wait_for(
            lambda: next((m for m in self.results() if m.id not in before), None), 15, what="a result message"
        )
        # The bot records the result message right after posting it: wait for that, as a member's reply would.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while await self.db.generation_by_result_message(message.id) is None and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        return message

    def results(self) -> list[Message]:
        return [m for m in self.bot_messages() if any(c.startswith("sora:remix:") for c in m.custom_ids())]

    def bot_messages(self) -> list[Message]:
        bot_id = self.double.bot_user.id
        return [m for m in self.double.world.messages.values() if m.author.id == bot_id]

    async def settle(self) -> None:
        """Let the bot finish whatever the last input started (a silent case has nothing to wait for)."""
        await asyncio.sleep(0.8)
        await self.double.wait_for(lambda: not self.bot.jobs.jobs, 20, what="every job to finish")

    @property
    def bot(self) -> SoraBot:
        assert self.harness.bot is not None
        return self.harness.bot

    async def ledger_rows(self) -> int:
        row = await self.db._fetchone("SELECT COUNT(*) AS n FROM ledger")
        return int(row["n"]) if row is not None else 0


@dataclass(frozen=True)
class Case:
    name: str
    act: Callable[[Sweep], Awaitable[str | None]]  # returns the answer the member saw (None: silence expected)
    expect: str | tuple[str, ...] | None  # (one of) the expected answer's fragment(s); None: the bot stays silent
    charges: int = 0  # videos legitimately asked for: at most this many charges (each for a delivered video)


# --- the cases -----------------------------------------------------------------------------------------------


async def empty_prompt_stale_client(s: Sweep) -> str:
    return await s.answer_of(await s.stale_slash([{"name": "prompt", "type": 3, "value": ""}]))


async def blank_prompt(s: Sweep) -> str:
    return await s.answer_of(await s.slash(prompt="   \n\t  "))


async def invisible_prompt(s: Sweep) -> str:
    return await s.answer_of(await s.slash(prompt="\u200b\u200d\u2060\ufeff\u202e\u202c"))


async def huge_prompt_stale_client(s: Sweep) -> str:
    return await s.answer_of(await s.stale_slash([{"name": "prompt", "type": 3, "value": "a" * 100_000}]))


async def long_prompt(s: Sweep) -> str:
    return await s.answer_of(await s.slash(prompt="a cat " * 1000))


async def mention_storm(s: Sweep) -> str:
    role = s.double.add_role(s.double.guild, "mods")
    prompt = (
        f"@everyone @here <@&{role.id}> <@{s.other.id}> <@!{s.other.id}> <@&{s.double.guild.id}> a dancing robot "
        f"{QUICK}"
    )
    handle = await s.slash(prompt=prompt)
    await s.settle()
    return await s.answer_of(handle)


async def markdown_bomb(s: Sweep) -> str:
    prompt = "**__~~`" + "||spoiler|| *x* _y_ > quote\n# big\n" * 60 + "``` [link](https://evil.example) " + QUICK
    handle = await s.slash(prompt=prompt[:5900])
    await s.settle()
    return await s.answer_of(handle)


async def bidi_and_zero_width(s: Sweep) -> str:
    handle = await s.slash(prompt=f"a c\u200bat \u202egnp.exe\u202c on a \u2066boat\u2069 {QUICK}")
    await s.settle()
    sent = json.dumps([r.json for r in s.fake.state.requests if r.json], ensure_ascii=False)
    assert "gnp.exe" in sent and "\u202e" not in sent and "\u200b" not in sent, "invisible characters went upstream"
    return await s.answer_of(handle)


async def pdf_attachment(s: Sweep) -> str:
    upload = Upload("notes.pdf", PDF, "application/pdf")
    return await s.answer_of(await s.slash(prompt="animate this", image=upload))


async def pdf_renamed_png(s: Sweep) -> str:
    upload = Upload("photo.png", PDF, "image/png")
    return await s.answer_of(await s.slash(prompt="animate this", image=upload))


async def garbage_png(s: Sweep) -> str:
    upload = Upload("broken.png", os.urandom(4096), "image/png")
    return await s.answer_of(await s.slash(prompt="animate this", image=upload))


async def truncated_png(s: Sweep) -> str:
    upload = Upload("cut.png", PNG[:40], "image/png")
    return await s.answer_of(await s.slash(prompt="animate this", image=upload))


async def huge_image(s: Sweep) -> str:
    upload = Upload("huge.png", PNG + bytes(50 * MIB), "image/png")
    return await s.answer_of(await s.slash(prompt="animate this", image=upload))


async def unknown_model_stale_client(s: Sweep) -> str:
    return await s.answer_of(await s.slash(prompt="a fox", model="sora-9-ultra"))


async def odd_duration(s: Sweep) -> str:
    return await s.answer_of(await s.slash(prompt="a fox", seconds=7))


async def odd_size(s: Sweep) -> str:
    return await s.answer_of(await s.slash(prompt="a fox", size="99999x1"))


async def reply_to_deleted_member_message(s: Sweep) -> None:
    message = await s.double.send_message(content="look at this", user=s.other)
    await s.double.delete_message(message)
    await s.double.reply(message, "make it pink", user=s.member)
    await s.settle()
    return None


async def reply_to_deleted_progress(s: Sweep) -> None:
    handle = await s.slash(prompt=f"a kite {QUICK}")
    progress = await handle.wait_original(lambda m: not m.loading)
    await s.settle()
    await s.double.delete_message(progress)
    await s.double.reply(progress, "now in blue", user=s.member)
    await s.settle()
    return None


async def blank_reply_to_video(s: Sweep) -> str:
    video = await s.video()
    charged = await s.ledger_rows()
    reply = await s.double.reply(video, "\u200b  \u200d", user=s.member)
    answer = await s.double.wait_for_message(
        predicate=lambda m: m.reference is reply and m.author.id == s.double.bot_user.id, timeout=10
    )
    assert await s.ledger_rows() == charged
    return answer.content


async def cancel_by_other_member(s: Sweep) -> str:
    handle = await s.slash(prompt="a slow sunrise fake:steps=40 fake:interval=0.1")
    progress = await handle.wait_original(lambda m: "sora:cancel:" in str(m.components))
    custom_id = next(c for c in progress.custom_ids() if c.startswith("sora:cancel:"))
    answer = await s.answer_of(await s.double.click(progress, custom_id, user=s.other))
    await s.settle()
    return answer


async def reroll_by_other_member(s: Sweep) -> str:
    video = await s.video()
    custom_id = next(c for c in video.custom_ids() if c.startswith("sora:reroll:"))
    return await s.answer_of(await s.double.click(video, custom_id, user=s.other))


async def reached_the_gateway(s: Sweep, progress: Message) -> None:
    """Wait until the job behind a progress message was sent upstream (before that, a restart simply runs it)."""
    custom_id = next(c for c in progress.custom_ids() if c.startswith("sora:cancel:"))
    generation_id = int(custom_id.rsplit(":", 1)[1])

    async def running() -> bool:
        generation = await s.db.get_generation(generation_id)
        return generation is not None and generation.status is GenerationStatus.RUNNING

    await until(running, timeout=15, what="the job to reach the gateway")


async def cancel_from_before_restart(s: Sweep) -> str:
    handle = await s.slash(prompt="a long voyage fake:steps=200 fake:interval=0.05")
    progress = await handle.wait_original(lambda m: "sora:cancel:" in str(m.components))
    await reached_the_gateway(s, progress)
    await s.harness.restart()  # the chat stream can't be resumed: refunded and told
    await s.settle()
    custom_id = next((c for c in progress.custom_ids() if c.startswith("sora:cancel:")), None)
    if custom_id is None:
        return BUTTON_GONE  # the message no longer offers it: Discord's client can't press it
    return await s.answer_of(await s.double.click(progress, custom_id, user=s.member))


async def reroll_from_before_restart_by_other(s: Sweep) -> str:
    video = await s.video()
    await s.harness.restart()
    custom_id = next(c for c in video.custom_ids() if c.startswith("sora:reroll:"))
    return await s.answer_of(await s.double.click(video, custom_id, user=s.other))


async def forget_generation(s: Sweep, custom_id: str) -> None:
    """The database no longer knows the generation a button names (restored from an older backup)."""
    generation_id = int(custom_id.rsplit(":", 1)[1])
    await s.db._execute("DELETE FROM ledger WHERE generation_id = ?", (generation_id,))
    await s.db._execute("DELETE FROM generations WHERE id = ?", (generation_id,))


async def reroll_of_forgotten_generation(s: Sweep) -> str:
    video = await s.video()
    custom_id = next(c for c in video.custom_ids() if c.startswith("sora:reroll:"))
    await s.harness.restart()
    await forget_generation(s, custom_id)
    return await s.answer_of(await s.double.click(video, custom_id, user=s.member))


async def cancel_of_forgotten_generation(s: Sweep) -> str:
    handle = await s.slash(prompt="a long voyage fake:steps=200 fake:interval=0.05")
    progress = await handle.wait_original(lambda m: "sora:cancel:" in str(m.components))
    custom_id = next(c for c in progress.custom_ids() if c.startswith("sora:cancel:"))
    await reached_the_gateway(s, progress)
    await s.harness.restart()
    await s.settle()
    await forget_generation(s, custom_id)
    if custom_id not in progress.custom_ids():
        return BUTTON_GONE
    return await s.answer_of(await s.double.click(progress, custom_id, user=s.member))


# --- forged, foreign and stale presses; access before anything is spent ------------------------------------------


def forged(
    s: Sweep, kind: int, channel: Channel, data: dict[str, Any], *, user: Member | None = None
) -> InteractionHandle:
    """An interaction a modified client (or another guild's member) can make up: any custom_id, anywhere. A press
    comes from a message carrying that button (a webhook's, say), as Discord requires."""
    author = (user or s.member).user
    message = None
    if kind == InteractionType.MESSAGE_COMPONENT:
        button = {"type": 2, "style": 1, "label": "x", "custom_id": data["custom_id"]}
        row = {"type": 1, "components": [button]}
        message = s.double.world.create_message(channel, author, content="x", components=[row])
    interaction = s.double.world.create_interaction(kind, user=author, channel=channel, data=data, message=message)
    return InteractionHandle(s.double, interaction)


def modal_data(custom_id: str, change: str) -> dict[str, Any]:
    text_input = {"type": 4, "custom_id": "change", "value": change}
    return {"custom_id": custom_id, "components": [{"type": 1, "components": [text_input]}]}


async def upstream_calls(s: Sweep) -> int:
    return len([r for r in s.fake.state.requests if r.method == "POST"])


async def remix_modal_from_another_guild(s: Sweep) -> str:
    video = await s.video()
    generation = await s.db.generation_by_result_message(video.id)
    assert generation is not None
    elsewhere = s.double.add_guild("elsewhere")
    intruder = s.double.add_member(elsewhere, "intruder")
    before = await upstream_calls(s)
    handle = forged(
        s,
        InteractionType.MODAL_SUBMIT,
        elsewhere.text_channels[0],
        modal_data(f"sora:remix-modal:{generation.id}", "now in guild 2"),
        user=intruder,
    )
    answer = await s.answer_of(handle)
    assert await upstream_calls(s) == before, "a forged submit reached the gateway"
    return answer


async def cancel_from_another_guild(s: Sweep) -> str:
    handle = await s.slash(prompt="a slow sunrise fake:steps=30 fake:interval=0.05")
    progress = await handle.wait_original(lambda m: "sora:cancel:" in str(m.components))
    custom_id = next(c for c in progress.custom_ids() if c.startswith("sora:cancel:"))
    elsewhere = s.double.add_guild("elsewhere")
    intruder = s.double.add_member(elsewhere, "intruder", permissions=8)  # an admin — of another guild
    data = {"custom_id": custom_id, "component_type": 2}
    press = forged(s, InteractionType.MESSAGE_COMPONENT, elsewhere.text_channels[0], data, user=intruder)
    answer = await s.answer_of(press)
    await s.settle()
    assert (await s.db.get_generation(1)).status == "succeeded"  # type: ignore[union-attr]
    return answer


async def reroll_from_another_channel(s: Sweep) -> str:
    video = await s.video()
    custom_id = next(c for c in video.custom_ids() if c.startswith("sora:reroll:"))
    other_channel = s.double.add_channel(name="elsewhere")
    data = {"custom_id": custom_id, "component_type": 2}
    return await s.answer_of(forged(s, InteractionType.MESSAGE_COMPONENT, other_channel, data))


async def button_of_an_older_version(s: Sweep) -> str:
    data = {"custom_id": "sora:regenerate:12", "component_type": 2}
    return await s.answer_of(forged(s, InteractionType.MESSAGE_COMPONENT, s.channel, data))


async def button_of_another_bot_scheme(s: Sweep) -> str:
    data = {"custom_id": "persistent_view:retry", "component_type": 2}
    return await s.answer_of(forged(s, InteractionType.MESSAGE_COMPONENT, s.channel, data))


async def modal_of_an_older_version(s: Sweep) -> str:
    return await s.answer_of(forged(s, InteractionType.MODAL_SUBMIT, s.channel, modal_data("sora:edit:3", "x")))


async def remix_modal_empty_change(s: Sweep) -> str:
    video = await s.video()
    generation = await s.db.generation_by_result_message(video.id)
    assert generation is not None
    handle = forged(s, InteractionType.MODAL_SUBMIT, s.channel, modal_data(f"sora:remix-modal:{generation.id}", " "))
    return await s.answer_of(handle)


async def remix_modal_huge_change(s: Sweep) -> str:
    video = await s.video()
    generation = await s.db.generation_by_result_message(video.id)
    assert generation is not None
    change = "z" * 50_000
    handle = forged(s, InteractionType.MODAL_SUBMIT, s.channel, modal_data(f"sora:remix-modal:{generation.id}", change))
    return await s.answer_of(handle)


async def remix_modal_of_unknown_video(s: Sweep) -> str:
    handle = forged(s, InteractionType.MODAL_SUBMIT, s.channel, modal_data("sora:remix-modal:999999", "hi"))
    return await s.answer_of(handle)


async def banned_member_with_image(s: Sweep) -> str:
    await s.db.ban_member(s.double.guild.id, s.member.id, reason="spam")
    handle = await s.slash(prompt="animate this", image=Upload("cat.png", PNG, "image/png"))
    answer = await s.answer_of(handle)
    assert handle.response_type == 4, "deferred publicly before refusing"
    assert s.double.cdn_requests == [], "the attachment was downloaded for a banned member"
    return answer


async def closed_channel_with_image(s: Sweep) -> str:
    elsewhere = s.double.add_channel(name="videos-only")
    await s.db.allow_channel(s.double.guild.id, elsewhere.id)
    handle = await s.slash(prompt="animate this", image=Upload("cat.png", PNG, "image/png"))
    answer = await s.answer_of(handle)
    assert handle.response_type == 4 and s.double.cdn_requests == []
    return answer


async def banned_member_replies_with_image(s: Sweep) -> str:
    video = await s.video()
    await s.db.ban_member(s.double.guild.id, s.member.id, reason="spam")
    downloads = len(s.double.cdn_requests)
    reply = await s.double.reply(
        video, "make it pink", user=s.member, attachments=[Upload("cat.png", PNG, "image/png")]
    )
    answer = await s.double.wait_for_message(
        reply.channel, predicate=lambda m: m.reference is reply and m.author.id == s.double.bot_user.id, timeout=10
    )
    assert len(s.double.cdn_requests) == downloads
    return answer.content


async def mention_of_the_bot(s: Sweep) -> None:
    await s.double.send_message(content=f"<@{s.double.bot_user.id}> hello there", user=s.member)
    await s.settle()
    return None


async def cancel_pressed_twice(s: Sweep) -> str:
    handle = await s.slash(prompt="a slow sunrise fake:steps=200 fake:interval=0.05")
    progress = await handle.wait_original(lambda m: "sora:cancel:" in str(m.components))
    custom_id = next(c for c in progress.custom_ids() if c.startswith("sora:cancel:"))
    await s.stale_click(progress, custom_id, user=s.member)
    second = await s.stale_click(progress, custom_id, user=s.member)  # from a client that didn't update yet
    await s.settle()
    return await s.answer_of(second)


async def masked_link_in_the_prompt(s: Sweep) -> str:
    handle = await s.slash(prompt=f"[free nitro](https://evil.example) # HEADER {QUICK}")
    await s.settle()
    for message in s.bot_messages():
        text = message.content + json.dumps(message.embeds)
        assert "[free nitro](https://evil.example)" not in text, "a masked link was reposted live"
    for thread in s.double.threads():
        assert "](" not in thread.name and not thread.name.startswith("#"), thread.name
    return await s.answer_of(handle)


async def queue_full(s: Sweep) -> str:
    await s.harness.restart(
        settings_overrides={"sora_edit_interval": 0.2, "sora_max_concurrent_jobs": 1, "sora_max_queued_jobs": 1}
    )
    first = await s.slash(prompt="the first fake:steps=200 fake:interval=0.05")
    await first.wait_original(lambda m: "sora:cancel:" in str(m.components) and "Waiting" not in json.dumps(m.embeds))
    second = await s.slash(prompt="the second fake:steps=200 fake:interval=0.05", user=s.other)
    await second.wait_original(lambda m: "Waiting for a free slot" in json.dumps(m.embeds))  # the queue is full
    handle = await s.slash(prompt="the third", user=s.double.add_member(name="carol"))
    answer = await s.answer_of(handle)
    assert handle.response_type == 4
    for job in list(s.bot.jobs.jobs):
        await s.bot.jobs.request_cancel(job, s.member.id)
    return answer


async def reply_with_a_text_file(s: Sweep) -> str:
    video = await s.video()
    notes = Upload("notes.txt", b"hi", "text/plain")
    reply = await s.double.reply(video, "use this", user=s.member, attachments=[notes])
    answer = await s.double.wait_for_message(
        reply.channel, predicate=lambda m: m.reference is reply and m.author.id == s.double.bot_user.id, timeout=10
    )
    return answer.content


# --- what the gateway sends back: links to elsewhere, endless bodies, signed links ----------------------------


async def failing_upstream(s: Sweep, directive: str) -> str:
    handle = await s.slash(prompt=f"a harbour {QUICK} {directive}")
    await s.settle()
    answer = await s.answer_of(handle)
    assert "Traceback" not in answer and len(answer) < 3000
    return answer


async def result_on_a_private_host(s: Sweep) -> str:
    answer = await failing_upstream(s, "fake:result_host=localhost")
    said = [m for m in s.bot_messages() if m.embeds]
    sentences = " ".join(str(m.embeds[0].get("description", "")) for m in said)
    assert "localhost" not in sentences and "127.0.0" not in sentences  # the refused host is never named
    return answer


async def redirect_to_a_private_host(s: Sweep) -> str:
    return await failing_upstream(s, "fake:redirect_host=localhost")


async def endless_error_body(s: Sweep) -> str:
    answer = await failing_upstream(s, "fake:hugeerror")
    assert s.fake.state.huge_finished is False, "the whole endless body was read"
    return answer


async def endless_json_answer(s: Sweep) -> str:
    return await failing_upstream(s, "fake:hugejson")


async def endless_stream_event(s: Sweep) -> str:
    return await failing_upstream(s, "fake:hugeevent")


async def signed_link_too_big_to_attach(s: Sweep) -> str:
    handle = await s.slash(prompt=f"a harbour {QUICK} fake:signed fake:huge")
    await s.settle()
    for message in s.bot_messages():
        text = message.content + json.dumps(message.embeds) + json.dumps(message.components)
        assert "sig=" not in text, "a signed link was published"
    return await s.answer_of(handle)


CASES = [
    Case("empty prompt (stale client)", empty_prompt_stale_client, EMPTY),
    Case("whitespace prompt", blank_prompt, EMPTY),
    Case("zero-width / bidi-only prompt", invisible_prompt, EMPTY),
    Case("100,000-char prompt (stale client)", huge_prompt_stale_client, TOO_LONG),
    Case("6,000-char prompt", long_prompt, TOO_LONG),
    Case("@everyone, @here, role and user mentions", mention_storm, "a dancing robot", charges=1),
    Case("markdown bomb", markdown_bomb, "spoiler", charges=1),
    Case("zero-width and RTL override inside the prompt", bidi_and_zero_width, "gnp.exe", charges=1),
    Case("PDF attachment", pdf_attachment, NOT_IMAGE),
    Case("PDF renamed .png", pdf_renamed_png, NOT_IMAGE),
    Case("random bytes as image/png", garbage_png, NOT_IMAGE),
    Case("truncated PNG (valid signature)", truncated_png, NOT_IMAGE),
    Case("50 MiB image", huge_image, IMAGE_TOO_BIG),
    Case("unknown model (stale client)", unknown_model_stale_client, UNKNOWN_MODEL),
    Case("duration the model doesn't make", odd_duration, SECONDS),
    Case("size the model doesn't make", odd_size, "99999x1"),
    Case("reply to a deleted member message", reply_to_deleted_member_message, None),
    Case("reply to a deleted progress message", reply_to_deleted_progress, None, charges=1),
    Case("blank reply to a video", blank_reply_to_video, EMPTY, charges=1),
    Case("Cancel pressed by another member", cancel_by_other_member, NOT_YOURS, charges=1),
    Case("Re-roll pressed by another member", reroll_by_other_member, NOT_YOURS, charges=1),
    Case("Cancel from before a restart", cancel_from_before_restart, (GONE, "already finished", BUTTON_GONE)),
    Case("Re-roll of a video the database forgot", reroll_of_forgotten_generation, GONE),
    Case("Cancel of a job the database forgot", cancel_of_forgotten_generation, (GONE, BUTTON_GONE)),
    Case("Re-roll from before a restart, by another member", reroll_from_before_restart_by_other, NOT_YOURS, charges=1),
    Case("remix modal forged from another guild", remix_modal_from_another_guild, GONE, charges=1),
    Case("Cancel forged by another guild's admin", cancel_from_another_guild, GONE, charges=1),
    Case("Re-roll forged in another channel", reroll_from_another_channel, GONE, charges=1),
    Case("button of an older version", button_of_an_older_version, STALE),
    Case("button of another bot's scheme", button_of_another_bot_scheme, STALE),
    Case("modal of an older version", modal_of_an_older_version, STALE),
    Case("remix modal with a blank change", remix_modal_empty_change, EMPTY, charges=1),
    Case("remix modal with 50,000 characters", remix_modal_huge_change, TOO_LONG, charges=1),
    Case("remix modal of an unknown video", remix_modal_of_unknown_video, GONE),
    Case("banned member with an image", banned_member_with_image, BANNED),
    Case("closed channel with an image", closed_channel_with_image, CHANNEL_CLOSED),
    Case("banned member replies to a video with an image", banned_member_replies_with_image, BANNED, charges=1),
    Case("a plain mention of the bot", mention_of_the_bot, None),
    Case("Cancel pressed twice", cancel_pressed_twice, ("already being cancelled", "already finished")),
    Case("masked link and header in the prompt", masked_link_in_the_prompt, "free nitro", charges=1),
    Case("the queue is full", queue_full, BUSY),
    Case("reply to a video with a text file", reply_with_a_text_file, NOT_IMAGE, charges=1),
    Case("video link on a private host", result_on_a_private_host, "refunded"),
    Case("video link redirecting to a private host", redirect_to_a_private_host, "refunded"),
    Case("endless error body", endless_error_body, "refunded"),
    Case("endless JSON answer", endless_json_answer, "refunded"),
    Case("endless stream event", endless_stream_event, "refunded"),
    Case("signed link to a video too big to attach", signed_link_too_big_to_attach, "harbour", charges=1),
]


# --- running a case ------------------------------------------------------------------------------------------------

_OUTCOMES: dict[str, dict[str, bool]] = {}  # case name -> {"crashed", "passed"}


def _tune(bot: SoraBot) -> None:
    bot.scheduler.channel_budget = (5, CHANNEL_WINDOW)
    bot.scheduler.webhook_budget = (5, WEBHOOK_WINDOW)


def _crashes(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or (r.exc_info and r.levelno >= logging.WARNING)]


@pytest.fixture(scope="module", autouse=True)
def _write_figures() -> Any:
    yield
    out = os.environ.get(RESULTS_ENV)
    if out and _OUTCOMES:
        figures = {
            "bad_inputs_tried": len(_OUTCOMES),
            "bad_inputs_crashed": sum(o["crashed"] for o in _OUTCOMES.values()),
            "bad_inputs_failed": sum(not o["passed"] for o in _OUTCOMES.values()),
            "crashed_cases": sorted(name for name, o in _OUTCOMES.items() if o["crashed"]),
            "failed_cases": sorted(name for name, o in _OUTCOMES.items() if not o["passed"]),
        }
        Path(out).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_bad_input(
    case: Case,
    bot_harness: BotHarness,
    discord_double: DiscordDouble,
    fake_upstream: FakeUpstream,
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    discord_double.set_rate_limit("message_create", window=CHANNEL_WINDOW)
    discord_double.set_rate_limit("webhook", window=WEBHOOK_WINDOW)
    await bot_harness.start(
        extensions=INITIAL_EXTENSIONS,
        settings_overrides={"sora_edit_interval": 0.2, "sora_poll_interval": 0.02},
        setup=_tune,
    )
    sweep = Sweep(
        bot_harness,
        discord_double,
        fake_upstream,
        db,
        member=discord_double.add_member(name="alice"),
        other=discord_double.add_member(name="mallory"),
    )
    await db.set_concurrency(discord_double.guild.id, per_member=3, per_guild=None)
    _OUTCOMES[case.name] = {"crashed": True, "passed": False}  # until proven otherwise
    answer = await case.act(sweep)  # a TimeoutError here (no answer at all) counts as a crash
    await sweep.settle()

    crashes = _crashes(caplog)
    _OUTCOMES[case.name]["crashed"] = bool(crashes)
    assert not crashes, f"{case.name}: the bot logged errors: {[r.getMessage() for r in crashes]}"
    if case.expect is None:
        assert answer is None
    else:
        fragments = (case.expect,) if isinstance(case.expect, str) else case.expect
        assert answer is not None and any(f in answer for f in fragments), f"{case.name}: answered {answer!r}"

    # Nothing pings anyone else: no bot message mentions a role, @everyone/@here, or a user other than the member
    # who asked (the "the bot restarted, your credit was refunded" notice pings its requester on purpose).
    for message in sweep.bot_messages():
        assert (message.mention_roles, message.mention_everyone) == ([], False), message
        assert all(user.id == sweep.member.id for user in message.mentions), (message, message.mentions)

    # Nothing is charged beyond the videos the case legitimately asked for; nothing is left reserved.
    rows = await db._fetchall(
        "SELECT g.status, l.state FROM generations AS g JOIN ledger AS l ON l.generation_id = g.id"
    )
    charged = [r for r in rows if r["state"] == "charged"]
    assert len(charged) <= case.charges, f"{case.name}: {[tuple(r) for r in rows]}"
    assert all(r["state"] != "reserved" for r in rows), [tuple(r) for r in rows]
    assert all(r["status"] == "succeeded" for r in charged)
    _OUTCOMES[case.name]["passed"] = True
