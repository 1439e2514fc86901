"""/sora end to end: real discord.py ↔ Discord double, bot ↔ fake gateway, real SQLite."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from bot.fake_upstream import FakeUpstream
from storage import Database, GenerationStatus, LedgerState
from tests.bot.helpers import MP4, PNG, bot_messages, ledger_states, start_bot, wait_ledger, wait_result
from tests.discord_double import DiscordDouble, MessageFlag, Overwrite, Permission
from tests.fixtures.discord import BotHarness

MIB = 1024 * 1024


async def ephemeral_answer(handle: Any, double: DiscordDouble) -> str:
    """The private answer: an immediate ephemeral reply, or an ephemeral followup after a public deferral."""

    def find() -> str | None:
        for message in [handle.original, *handle.followups]:
            if message is not None and message.flags & MessageFlag.EPHEMERAL and message.content:
                return message.content
        return None

    return await double.wait_for(find, what="an ephemeral answer")


async def test_sora_posts_the_video_attached(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")

    handle = await discord_double.slash("sora", user=alice, prompt="a red fox in the snow @everyone <@&1>")
    assert await handle.wait_response() == 5

    result = await wait_result(discord_double)
    (attachment,) = result.attachments
    assert attachment.data == MP4  # the bytes the gateway served, unchanged
    assert attachment.filename.endswith(".mp4")
    assert "a red fox in the snow" in result.content
    assert "Sora 2" in result.content and f"<@{alice.id}>" in result.content
    assert result.mentions == [] and result.mention_roles == [] and not result.mention_everyone
    progress = await handle.wait_original(lambda m: "Your video is ready" in json.dumps(m.embeds))
    assert result.jump_url in json.dumps(progress.embeds)
    assert progress.components == []  # no Cancel button once finished
    (thread,) = await discord_double.wait_for(discord_double.threads, what="the result's thread")
    assert thread.id == result.id and "a red fox" in thread.name
    await wait_ledger(db, [LedgerState.CHARGED])
    generation = await db.get_generation(1)
    assert generation is not None and generation.status == GenerationStatus.SUCCEEDED
    assert generation.result_message_id == result.id
    chat = fake_upstream.state.requests_to("/v1/chat/completions")
    assert chat[0].json["messages"][-1]["content"].startswith("a red fox")


async def test_progress_is_shown_live(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt="waves fake:steps=6 fake:interval=0.25")
    final = await handle.wait_original(lambda m: "Your video is ready" in json.dumps(m.embeds), timeout=10)
    descriptions = [json.dumps(revision.embeds, ensure_ascii=False) for revision in final.history]
    assert any("Generating" in d and "%" in d for d in descriptions)
    assert any("sora:cancel:" in json.dumps(r.components) for r in final.history)
    times = [revision.monotonic for revision in final.history[1:]]
    assert all(b - a >= 0.2 - 0.02 for a, b in itertools.pairwise(times))  # never faster than the interval


async def test_video_too_large_for_the_server_is_linked(
    bot_harness: BotHarness, discord_double: DiscordDouble, db: Database
) -> None:
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    await discord_double.slash("sora", user=alice, prompt="a big one fake:bytes=11MiB")
    result = await wait_result(discord_double)
    assert result.attachments == []
    assert "11.0 MiB" in result.content and "10.0 MiB" in result.content
    links = [c for row in result.components for c in row["components"] if c.get("url")]
    assert len(links) == 1 and links[0]["url"].endswith(".mp4")
    assert links[0]["url"] in result.content
    await wait_ledger(db, [LedgerState.CHARGED])


async def test_boosted_server_gets_the_same_video_attached(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    discord_double.set_premium_tier(discord_double.guild, 2)
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    await discord_double.slash("sora", user=alice, prompt="a big one fake:bytes=11MiB")
    result = await wait_result(discord_double)
    (attachment,) = result.attachments
    assert attachment.size == 11 * MIB


@pytest.mark.parametrize("api_format", ["chat", "videos"])
async def test_image_attachment_is_sent_upstream(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, api_format: str
) -> None:
    await start_bot(bot_harness, sora_api_format=api_format)
    alice = discord_double.add_member(name="alice")
    await discord_double.slash("sora", user=alice, prompt="make it move", image=("cat.png", PNG))
    await wait_result(discord_double)
    if api_format == "chat":
        (request,) = fake_upstream.state.requests_to("/v1/chat/completions")
        parts = request.json["messages"][-1]["content"]
        assert parts[0]["type"] == "text" and parts[0]["text"].startswith("make it move")
        assert parts[1]["type"] == "image_url"
        assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    else:
        (request,) = fake_upstream.state.requests_to("/v1/videos", "POST")
        assert request.form["input_reference"]["data"] == PNG


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"prompt": "   \u200b  "}, "the prompt is empty"),
        ({"prompt": "x" * 4500}, "4500 characters; the limit is 4000"),
        ({"prompt": "a cat", "seconds": 7}, "4, 8, 10, 12, 15 seconds"),
        ({"prompt": "a cat", "size": "1920x1080"}, "1920x1080"),
        ({"prompt": "a cat", "model": "dall-e-9"}, "no model called “dall-e-9”"),
        ({"prompt": "a cat", "image": ("notes.pdf", b"%PDF-1.7 nope")}, "isn't a supported image"),
        ({"prompt": "a cat", "image": ("huge.png", PNG + bytes(11 * MIB))}, "images can be at most 10 MiB"),
        ({"prompt": "a cat", "image": ("fake.png", b"not really a png at all")}, "isn't a supported image"),
    ],
)
async def test_bad_input_gets_a_short_private_answer_and_costs_nothing(
    bot_harness: BotHarness,
    discord_double: DiscordDouble,
    fake_upstream: FakeUpstream,
    db: Database,
    options: dict[str, Any],
    expected: str,
) -> None:
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, options=options)
    answer = await ephemeral_answer(handle, discord_double)
    assert expected in answer
    assert len(answer) < 300
    assert fake_upstream.state.requests_to("/v1/") == []
    assert await ledger_states(db) == []
    assert bot_messages(discord_double) == []


async def test_quota_exhausted_says_when_it_frees_up(
    bot_harness: BotHarness, discord_double: DiscordDouble, db: Database
) -> None:
    await db.set_default_allowance(discord_double.guild.id, 1)
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    await discord_double.slash("sora", user=alice, prompt="first")
    await wait_result(discord_double)
    await wait_ledger(db, [LedgerState.CHARGED])
    handle = await discord_double.slash("sora", user=alice, prompt="second")
    answer = await ephemeral_answer(handle, discord_double)
    assert "used 1 of your 1 credits" in answer and "<t:" in answer
    await wait_ledger(db, [LedgerState.CHARGED])


async def test_missing_permission_is_named(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    channel = discord_double.add_channel(
        name="no-embeds",
        overwrites=[Overwrite.for_role(discord_double.guild.everyone, deny=Permission.EMBED_LINKS)],
    )
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, channel=channel, prompt="a cat")
    assert "Embed Links" in await ephemeral_answer(handle, discord_double)


async def test_replies_in_the_members_language(bot_harness: BotHarness, discord_double: DiscordDouble) -> None:
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, locale="zh-CN", prompt="一只猫")
    await wait_result(discord_double)
    final = await handle.wait_original(lambda m: "视频已生成" in json.dumps(m.embeds, ensure_ascii=False))
    assert final is not None
    handle = await discord_double.slash("sora", user=alice, locale="zh-CN", prompt="a cat", seconds=7)
    assert "支持的时长" in await ephemeral_answer(handle, discord_double)


async def test_deleted_progress_message_still_gets_the_result(
    bot_harness: BotHarness, discord_double: DiscordDouble, db: Database
) -> None:
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt="slow fake:steps=8 fake:interval=0.1")
    progress = await handle.wait_original(lambda m: "Generating" in json.dumps(m.embeds))
    await discord_double.delete_message(progress)
    result = await wait_result(discord_double)
    assert result.attachments[0].data == MP4
    await wait_ledger(db, [LedgerState.CHARGED])


async def test_job_longer_than_the_interaction_token_is_delivered(
    bot_harness: BotHarness, discord_double: DiscordDouble, db: Database
) -> None:
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora", user=alice, prompt="epic fake:steps=30 fake:interval=0.1")
    await handle.wait_original(lambda m: "Generating" in json.dumps(m.embeds))
    discord_double.advance(14 * 60)  # the token has 1 minute left: the bot moves to a channel message
    moved = await discord_double.wait_for_message(
        predicate=lambda m: m.author.id == discord_double.bot_user.id and not m.interaction and m.embeds
    )
    await handle.wait_original(lambda m: "continues in a new message" in m.content)
    discord_double.advance(3 * 60)  # now the token is dead (17 minutes)
    result = await wait_result(discord_double, timeout=15)
    assert result.attachments[0].data == MP4
    await discord_double.wait_for(
        lambda: "Your video is ready" in json.dumps(discord_double.message(moved.id).embeds),
        what="the moved progress message to show the result",
    )
    assert discord_double.rejections(50027) == []  # never used the dead token
    await wait_ledger(db, [LedgerState.CHARGED])


async def test_fifty_jobs_in_one_channel_without_a_single_429(
    bot_harness: BotHarness, discord_double: DiscordDouble, db: Database
) -> None:
    # Discord's windows, shortened on both sides to keep the test quick; the shape of the limits is unchanged.
    discord_double.set_rate_limit("message_create", limit=5, window=0.5)
    discord_double.set_rate_limit("webhook", limit=5, window=0.4)
    discord_double.set_rate_limit("thread_create", limit=10, window=0.5)
    bot = await start_bot(bot_harness, sora_max_concurrent_jobs=50)
    bot.scheduler.channel_budget = (5, 0.5)
    bot.scheduler.webhook_budget = (5, 0.4)
    bot.scheduler.thread_budget = (10, 0.5)
    members = [discord_double.add_member(name=f"m{i}") for i in range(50)]
    handles = await asyncio.gather(
        *(
            discord_double.slash("sora", user=member, prompt=f"scene {i} fake:steps=6 fake:interval=0.15")
            for i, member in enumerate(members)
        )
    )
    await discord_double.wait_for(
        lambda: len([m for m in bot_messages(discord_double) if m.attachments]) == 50, timeout=60, what="50 results"
    )
    assert [r for r in discord_double.requests if r.status == 429] == []
    for handle in handles:
        original = await handle.wait_original(lambda m: "Your video is ready" in json.dumps(m.embeds), timeout=20)
        times = [revision.monotonic for revision in original.history[1:]]
        assert all(b - a >= 0.2 - 0.02 for a, b in itertools.pairwise(times))
    await wait_ledger(db, [LedgerState.CHARGED] * 50)


async def test_options_are_offered_from_the_models_table(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    await start_bot(bot_harness)
    alice = discord_double.add_member(name="alice")
    models = await discord_double.autocomplete("sora", user=alice, focused="model", prompt="x")
    assert {c["value"] for c in models} == {"sora-2", "sora-2-pro", "sora-2-hd", "veo-3.1", "veo-3.1-fast"}
    veo = await discord_double.autocomplete("sora", user=alice, focused="model", prompt="x", model="veo")
    assert {c["value"] for c in veo} == {"veo-3.1", "veo-3.1-fast"}
    seconds = await discord_double.autocomplete("sora", user=alice, focused="seconds", model="veo-3.1")
    assert [c["value"] for c in seconds] == [4, 6, 8]
    sizes = await discord_double.autocomplete("sora", user=alice, focused="size", model="sora-2-hd")
    assert [c["value"] for c in sizes] == ["landscape", "portrait", "1792x1024", "1024x1792"]
