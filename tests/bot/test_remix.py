"""Reply-to-remix and the Remix / Re-roll buttons, end to end: real discord.py ↔ Discord double, bot ↔ fake
gateway, real SQLite."""

from __future__ import annotations

import base64
import json
import logging

import pytest

from bot.fake_upstream import FakeUpstream
from storage import Database
from tests.bot.flow import (
    ephemeral,
    ledger,
    next_result,
    settled,
    start,
    streamed_text,
    text_of,
    until,
)
from tests.bot.helpers import PNG
from tests.discord_double import DiscordDouble, Message
from tests.fixtures.discord import BotHarness

HINTS = "\n\nduration: {seconds} seconds, orientation: {orientation}"  # how the chat format sends the parameters
CHAT = "/v1/chat/completions"


def hints(seconds: int = 10, orientation: str = "landscape") -> str:
    return HINTS.format(seconds=seconds, orientation=orientation)


def no_errors_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


async def make_video(
    bot_harness: BotHarness, double: DiscordDouble, db: Database, prompt: str, *, user: object, jobs: int = 1, **options
) -> Message:
    """/sora → the result message, once the job has settled."""
    channel = options.pop("channel", None)
    latest = max((m.id for m in double.messages(channel)), default=0)
    await double.slash("sora", user=user, channel=channel, prompt=prompt, **options)
    result = await next_result(double, latest, channel)
    await settled(bot_harness, db, jobs=jobs)
    return result


async def remix_by_reply(
    bot_harness: BotHarness,
    double: DiscordDouble,
    db: Database,
    message: Message,
    text: str,
    *,
    user: object,
    jobs: int,
) -> Message:
    await double.reply(message, text, user=user, ping=False)
    result = await next_result(double, message.id)  # in the video's thread, when it has one
    await settled(bot_harness, db, jobs=jobs)
    return result


# --- reply-to-remix -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["channel", "thread"])
async def test_reply_chain_two_levels_deep_sends_the_whole_history(
    where: str, bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness)  # the message-content intent on; every reply below has its ping off
    alice = discord_double.add_member(name="alice")
    channel = discord_double.channel if where == "channel" else discord_double.add_thread(name="ideas", owner=alice)

    root = await make_video(bot_harness, discord_double, db, "a red fox in the snow", user=alice, channel=channel)
    second = await remix_by_reply(bot_harness, discord_double, db, root, "make it night", user=alice, jobs=2)
    third = await remix_by_reply(bot_harness, discord_double, db, second, "add falling stars", user=alice, jobs=3)

    first_id, second_id, _ = fake_upstream.state.videos
    requests = fake_upstream.state.requests_to(CHAT)
    assert [r.json["messages"] for r in requests[:2]] == [
        [{"role": "user", "content": "a red fox in the snow" + hints()}],
        [
            {"role": "user", "content": "a red fox in the snow"},
            {"role": "assistant", "content": streamed_text(fake_upstream, first_id)},
            {"role": "user", "content": "make it night" + hints()},
        ],
    ]
    assert requests[2].json["messages"] == [
        {"role": "user", "content": "a red fox in the snow"},
        {"role": "assistant", "content": streamed_text(fake_upstream, first_id)},
        {"role": "user", "content": "make it night"},
        {"role": "assistant", "content": streamed_text(fake_upstream, second_id)},
        {"role": "user", "content": "add falling stars" + hints()},
    ]
    assert len(requests) == 3
    # A remix of a video with a conversation thread continues in that thread (a video in a thread has none).
    home = root.thread if where == "channel" else channel
    assert home is not None and second.channel is home and third.channel is home
    assert "add falling stars" in third.content and third.attachments
    assert await ledger(db) == ["charged"] * 3


async def test_without_the_message_content_intent_a_reply_with_the_ping_still_remixes(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    discord_double.message_content_enabled = False  # the Developer Portal toggle is off
    await start(bot_harness, message_content=False)
    alice = discord_double.add_member(name="alice")
    root = await make_video(bot_harness, discord_double, db, "a red fox in the snow", user=alice)

    await discord_double.reply(root, "make it night", user=alice, ping=True)  # mentions the bot: content arrives
    second = await next_result(discord_double, root.id)
    await settled(bot_harness, db, jobs=2)
    (_, remix) = fake_upstream.state.requests_to(CHAT)
    assert [m["content"] for m in remix.json["messages"]][::2] == ["a red fox in the snow", "make it night" + hints()]

    silent = await discord_double.reply(second, "add falling stars", user=alice, ping=False)  # blanked by Discord
    answer = await discord_double.wait_for_message(second.channel, predicate=lambda m: m.reference is silent)
    assert "reply ping" in answer.content and answer.mentions == []
    assert len(fake_upstream.state.requests_to(CHAT)) == 2
    assert await ledger(db) == ["charged", "charged"]


async def test_a_reply_with_an_image_sends_it_with_the_change(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness)
    alice = discord_double.add_member(name="alice")
    root = await make_video(bot_harness, discord_double, db, "a red fox in the snow", user=alice)
    await discord_double.reply(root, "make it look like this", user=alice, ping=False, attachments=[("ref.png", PNG)])
    await next_result(discord_double, root.id)
    await settled(bot_harness, db, jobs=2)

    *history, change = fake_upstream.state.requests_to(CHAT)[1].json["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert change == {
        "role": "user",
        "content": [
            {"type": "text", "text": "make it look like this" + hints()},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
        ],
    }


async def test_videos_format_remixes_through_the_remix_endpoint(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    root = await make_video(bot_harness, discord_double, db, "a red fox in the snow", user=alice)
    second = await remix_by_reply(bot_harness, discord_double, db, root, "make it night", user=alice, jobs=2)
    await remix_by_reply(bot_harness, discord_double, db, second, "add falling stars", user=alice, jobs=3)

    creates = [(r.path, r.json) for r in fake_upstream.state.requests if r.method == "POST"]
    assert creates[1:] == [
        ("/v1/videos/video_000001/remix", {"prompt": "make it night"}),
        ("/v1/videos/video_000002/remix", {"prompt": "add falling stars"}),
    ]
    assert fake_upstream.state.videos["video_000003"].remixed_from == "video_000002"
    assert await ledger(db) == ["charged"] * 3


async def test_task_format_combines_the_chain_into_one_prompt_and_says_so(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format="task")
    alice = discord_double.add_member(name="alice")
    root = await make_video(bot_harness, discord_double, db, "a red fox in the snow", user=alice)
    assert "combined" not in root.content
    second = await remix_by_reply(bot_harness, discord_double, db, root, "make it night", user=alice, jobs=2)
    third = await remix_by_reply(bot_harness, discord_double, db, second, "add falling stars", user=alice, jobs=3)

    prompts = [r.json["prompt"] for r in fake_upstream.state.requests_to("/sora/v1/video/create")]
    assert prompts == [
        "a red fox in the snow",
        "a red fox in the snow\nmake it night",
        "a red fox in the snow\nmake it night\nadd falling stars",
    ]
    for result in (second, third):
        assert "can't remix, so I combined the earlier prompts" in result.content
    assert third.content.startswith("🎬 **add falling stars**")


# --- the Remix and Re-roll buttons ----------------------------------------------------------------------------


async def test_remix_button_opens_a_modal_and_remixes_with_its_text(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness)
    alice = discord_double.add_member(name="alice")
    bob = discord_double.add_member(name="bob")
    root = await make_video(bot_harness, discord_double, db, "a red fox in the snow", user=alice)
    assert root.custom_ids()[:2] == ["sora:remix:1", "sora:reroll:1"]

    # Two members open the modal for the same video before either submits: both submits count.
    alice_press = await discord_double.click(root, "sora:remix:1", user=alice)
    bob_press = await discord_double.click(root, "sora:remix:1", user=bob)
    await alice_press.wait_modal()
    await bob_press.wait_modal()
    alice_submit = await discord_double.submit_modal(alice_press, values={"change": "make it night"})
    assert await alice_submit.wait_response() == 5
    first = await next_result(discord_double, root.id)
    await settled(bot_harness, db, jobs=2)
    bob_submit = await discord_double.submit_modal(bob_press, values={"change": "make it rain"})
    assert await bob_submit.wait_response() == 5
    await next_result(discord_double, first.id)
    await settled(bot_harness, db, jobs=3)

    requests = fake_upstream.state.requests_to(CHAT)
    for request, change in zip(requests[1:], ("make it night", "make it rain"), strict=True):
        assert request.json["messages"] == [
            {"role": "user", "content": "a red fox in the snow"},
            {"role": "assistant", "content": streamed_text(fake_upstream, "task_000001")},
            {"role": "user", "content": change + hints()},
        ]
    # The video has a thread: the remix's progress and result went there, and bob was told so privately.
    pointer = await bob_submit.wait_original(lambda m: "thread" in m.content)
    assert ephemeral(pointer) and root.thread is not None and str(root.thread.id) in pointer.content
    progress = [m for m in discord_double.messages(root.thread) if m.content == f"Requested by <@{bob.id}>"]
    assert len(progress) == 1
    assert await ledger(db) == ["charged"] * 3


async def test_reroll_repeats_the_prompt_and_parameters_for_the_requester_only(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness)
    alice = discord_double.add_member(name="alice")
    bob = discord_double.add_member(name="bob")
    root = await make_video(
        bot_harness, discord_double, db, "a red fox in the snow", user=alice, seconds=4, size="portrait"
    )

    refused = await discord_double.click(root, "sora:reroll:1", user=bob)
    answer = await refused.wait_original()
    assert ephemeral(answer) and answer.content == f"Only <@{alice.id}> or a server admin can do that."

    press = await discord_double.click(root, "sora:reroll:1", user=alice)
    assert await press.wait_response() == 5
    again = await next_result(discord_double, root.id)
    await settled(bot_harness, db, jobs=2)

    first, second = fake_upstream.state.requests_to(CHAT)
    assert second.json == first.json
    assert first.json["messages"] == [{"role": "user", "content": "a red fox in the snow" + hints(4, "portrait")}]
    assert "4 s · 720x1280" in again.content and "4 s · 720x1280" in root.content
    assert await ledger(db) == ["charged", "charged"]  # bob's press cost nothing


async def test_reroll_of_a_remix_keeps_its_place_in_the_chain(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    root = await make_video(bot_harness, discord_double, db, "a red fox in the snow", user=alice)
    remix = await remix_by_reply(bot_harness, discord_double, db, root, "make it night", user=alice, jobs=2)
    await discord_double.click(remix, "sora:reroll:2", user=alice)
    await next_result(discord_double, remix.id)
    await settled(bot_harness, db, jobs=3)

    remixes = [(r.path, r.json) for r in fake_upstream.state.requests_to("/v1/videos/video_000001/remix")]
    assert remixes == [("/v1/videos/video_000001/remix", {"prompt": "make it night"})] * 2
    assert (await db.get_generation(3)).parent_id == 1


async def test_buttons_and_the_modal_work_after_a_restart(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    await start(bot_harness)
    alice = discord_double.add_member(name="alice")
    root = await make_video(bot_harness, discord_double, db, "a red fox in the snow", user=alice)
    opened_before = await discord_double.click(root, "sora:remix:1", user=alice)
    await opened_before.wait_modal()

    await bot_harness.restart()

    submit = await discord_double.submit_modal(opened_before, values={"change": "make it night"})
    assert await submit.wait_response() == 5
    remix = await next_result(discord_double, root.id)
    await settled(bot_harness, db, jobs=2)
    press = await discord_double.click(remix, "sora:remix:2", user=alice)
    await press.wait_modal()
    await discord_double.submit_modal(press, values={"change": "add falling stars"})
    deeper = await next_result(discord_double, remix.id)
    await settled(bot_harness, db, jobs=3)
    await discord_double.click(root, "sora:reroll:1", user=alice)
    await next_result(discord_double, deeper.id)
    await settled(bot_harness, db, jobs=4)

    requests = fake_upstream.state.requests_to(CHAT)
    assert [m["content"] for m in requests[2].json["messages"]][::2] == [
        "a red fox in the snow",
        "make it night",
        "add falling stars" + hints(),
    ]
    assert requests[3].json == requests[0].json
    assert await ledger(db) == ["charged"] * 4


async def test_pressing_and_replying_the_moment_the_video_appears(
    bot_harness: BotHarness, discord_double: DiscordDouble, fake_upstream: FakeUpstream, db: Database
) -> None:
    """The result message exists a moment before the database records it: a press or reply in that moment
    waits for the job instead of calling the video unfinished."""
    await start(bot_harness, sora_api_format="videos")
    alice = discord_double.add_member(name="alice")
    bob = discord_double.add_member(name="bob")  # one job at a time per member: bob remixes, alice re-rolls
    await discord_double.slash("sora", user=alice, prompt="a red fox in the snow")
    root = await next_result(discord_double, 0)  # no waiting for the job to settle
    press = await discord_double.click(root, "sora:reroll:1", user=alice)
    await discord_double.reply(root, "make it night", user=bob, ping=False)
    assert await press.wait_response() == 5
    await settled(bot_harness, db, jobs=3)

    creates = sorted((r.path, r.json["prompt"]) for r in fake_upstream.state.requests if r.method == "POST")
    assert creates == [
        ("/v1/videos", "a red fox in the snow"),
        ("/v1/videos", "a red fox in the snow"),
        ("/v1/videos/video_000001/remix", "make it night"),
    ]
    assert await ledger(db) == ["charged"] * 3


# --- replies to anything else ----------------------------------------------------------------------------------


async def test_replies_to_anything_else_are_ignored_or_answered_briefly(
    bot_harness: BotHarness,
    discord_double: DiscordDouble,
    fake_upstream: FakeUpstream,
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await start(bot_harness)
    alice = discord_double.add_member(name="alice")
    bob = discord_double.add_member(name="bob")
    root = await make_video(bot_harness, discord_double, db, "a red fox in the snow", user=alice)
    failed = await discord_double.slash("sora", user=alice, prompt="a red fox fake:moderation")
    await settled(bot_harness, db, jobs=2)
    running = await discord_double.slash("sora", user=bob, prompt="slow waves fake:steps=200 fake:interval=0.05")
    progress = await running.wait_original(lambda m: "sora:cancel:3" in json.dumps(m.components))
    await until(lambda: len(fake_upstream.state.requests_to(CHAT)) == 3, what="the third job upstream")
    finished_progress = discord_double.message((await db.get_generation(1)).progress_message_id)

    async def answer_to(message: Message, text: str = "make it night") -> str:
        reply = await discord_double.reply(message, text, user=alice, ping=False)
        answer = await discord_double.wait_for_message(predicate=lambda m: m.reference is reply)
        assert answer.mentions == [] and not ephemeral(answer)
        return answer.content

    assert await answer_to(progress) == "That video isn't finished, so it can't be remixed yet."
    assert await answer_to(failed.original) == (
        "That video couldn't be made, so there's nothing to remix. Try /sora again."
    )
    assert await answer_to(finished_progress) == (
        "That's the progress message — reply to the video itself to remix it."
    )

    chatter = await discord_double.send_message(content="nice one", user=bob)
    await discord_double.reply(chatter, "make it night", user=alice, ping=False)
    await discord_double.delete_message(chatter)
    await discord_double.reply(chatter, "make it night", user=alice, ping=False)
    await discord_double.delete_message(root)
    assert await answer_to(root) == "I can't find that video any more."

    await discord_double.click(progress, "sora:cancel:3", user=bob)
    await settled(bot_harness, db, jobs=3)
    to_chatter = [m for m in discord_double.messages() if m.reference is not None and m.reference.id == chatter.id]
    assert [m.author.id for m in to_chatter] == [alice.id, alice.id]  # the bot never answered those
    assert len(fake_upstream.state.requests_to(CHAT)) == 3  # nothing new went upstream
    assert await ledger(db) == ["charged", "refunded", "refunded"]  # and nothing was charged
    assert "Traceback" not in "\n".join(text_of(m) for m in discord_double.messages())
    no_errors_logged(caplog)
