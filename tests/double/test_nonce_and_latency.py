"""`enforce_nonce` on message creates, and latency held before or after the double applies a request."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands
from discord.ext import commands
from discord.http import Route

from tests.discord_double import NONCE_WINDOW, DiscordDouble, Interaction
from tests.discord_double.rules import check_nonce
from tests.fixtures.discord import BotHarness

MESSAGES = "/channels/{channel_id}/messages"
CALLBACK = "/interactions/{interaction_id}/{interaction_token}/callback"


def text_channel(bot: commands.Bot, channel_id: int) -> discord.TextChannel:
    channel = bot.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    return channel


async def raw_create(bot: commands.Bot, channel_id: int, payload: dict[str, Any]) -> Any:
    """A message create with exactly this body, through discord.py's HTTP client (bot token, rate limits)."""
    return await bot.http.request(Route("POST", MESSAGES, channel_id=channel_id), json=payload)


def message_creates(double: DiscordDouble) -> list[str]:
    """Ids of the messages MESSAGE_CREATE announced to the bot."""
    return [f.data["id"] for f in double.gateway_log if f.direction == "out" and f.t == "MESSAGE_CREATE"]


class Defer(commands.Cog):
    """`/defer` acknowledges at once; a refused acknowledgement is kept for the test."""

    def __init__(self) -> None:
        self.errors: list[discord.HTTPException] = []
        self.done = asyncio.Event()

    @app_commands.command(name="defer", description="Thinks")
    async def defer(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.response.defer()
        except discord.HTTPException as error:
            self.errors.append(error)
        finally:
            self.done.set()


# --- enforce_nonce ------------------------------------------------------------------------------------------------


async def test_an_enforced_nonce_returns_the_earlier_message(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    bot = await bot_harness.start()
    channel = text_channel(bot, discord_double.channel.id)

    first = await channel.send("hello", nonce="job-42")
    again = await channel.send("hello, a second time", nonce="job-42")

    assert again.id == first.id and again.content == "hello"
    assert [m.content for m in discord_double.messages()] == ["hello"]
    assert message_creates(discord_double) == [str(first.id)]
    (hit,) = discord_double.deduplicated_requests
    assert hit.status == 200 and hit.body["nonce"] == "job-42" and hit.body["enforce_nonce"] is True
    assert "deduplicated" in repr(hit)

    # Without enforce_nonce a repeated nonce is just a nonce; the enforced check still finds the first message.
    plain = await raw_create(bot, channel.id, {"content": "not enforced", "nonce": "job-42"})
    assert int(plain["id"]) != first.id and plain["nonce"] == "job-42"
    enforced = await raw_create(bot, channel.id, {"content": "x", "nonce": "job-42", "enforce_nonce": True})
    assert int(enforced["id"]) == first.id

    # The same nonce in another channel is another message.
    elsewhere = discord_double.add_channel(name="elsewhere")
    there = await raw_create(bot, elsewhere.id, {"content": "there", "nonce": "job-42", "enforce_nonce": True})
    assert int(there["id"]) != first.id

    # An integer nonce works too, and after the window a nonce is unique again.
    numbered = await raw_create(bot, channel.id, {"content": "n", "nonce": 1234567, "enforce_nonce": True})
    assert numbered["nonce"] == 1234567
    discord_double.advance(NONCE_WINDOW + 1)
    later = await channel.send("five minutes later", nonce="job-42")
    assert later.id != first.id and later.content == "five minutes later"
    assert len(discord_double.deduplicated_requests) == 2
    assert len(message_creates(discord_double)) == 5


async def test_an_enforced_nonce_of_a_deleted_message_is_not_found(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    bot = await bot_harness.start()
    channel = text_channel(bot, discord_double.channel.id)
    sent = await channel.send("soon gone", nonce="gone")
    await sent.delete()

    with pytest.raises(discord.NotFound) as refused:
        await channel.send("soon gone", nonce="gone")

    assert refused.value.code == 10008
    (hit,) = discord_double.deduplicated_requests
    assert hit.status == 404
    assert discord_double.messages() == []


@pytest.mark.parametrize(
    ("nonce", "code", "message"),
    [
        ("n" * 26, "NONCE_TYPE_TOO_LONG", "Must be 25 or fewer characters long."),
        (1.5, "NONCE_TYPE_INVALID_TYPE", "This field must be a string or integer."),
        (True, "NONCE_TYPE_INVALID_TYPE", "This field must be a string or integer."),
        (["a"], "NONCE_TYPE_INVALID_TYPE", "This field must be a string or integer."),
        (2**63, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {2**63 - 1}."),
    ],
    ids=["26-characters", "float", "bool", "list", "beyond-int64"],
)
async def test_a_malformed_nonce_is_an_invalid_form_body(
    discord_double: DiscordDouble, nonce: Any, code: str, message: str
) -> None:
    discord_double.expect_rejections(50035)
    url = f"{discord_double.api_base}/channels/{discord_double.channel.id}/messages"
    body = {"content": "hi", "nonce": nonce, "enforce_nonce": True}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bot {discord_double.token}"}) as session,
        session.post(url, json=body) as response,
    ):
        assert response.status == 400
        assert await response.json() == {
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {"nonce": {"_errors": [{"code": code, "message": message}]}},
        }
    assert discord_double.messages() == []


def test_nonce_rules_on_their_own() -> None:
    for fine in ({}, {"nonce": None}, {"nonce": "n" * 25}, {"nonce": 0}, {"nonce": -(2**63)}):
        assert check_nonce(fine) == []
    assert [i.keyword for i in check_nonce({"nonce": -(2**63) - 1})] == ["NUMBER_TYPE_MIN"]


async def test_interaction_followups_take_no_nonce(discord_double: DiscordDouble) -> None:
    """Execute Webhook has no `nonce`/`enforce_nonce` on Discord: the fields are ignored, each call posts."""
    user = discord_double.add_member(name="raw").user
    interaction = discord_double.world.create_interaction(2, user=user, channel=discord_double.channel, data={})
    callback = f"{discord_double.api_base}/interactions/{interaction.id}/{interaction.token}/callback"
    followup = f"{discord_double.api_base}/webhooks/{discord_double.application_id}/{interaction.token}?wait=true"
    body = {"content": "again", "nonce": "same", "enforce_nonce": True}
    async with aiohttp.ClientSession() as session:
        async with session.post(callback, json={"type": 4, "data": {"content": "original"}}) as response:
            assert response.status == 204
        ids = []
        for _ in range(2):
            async with session.post(followup, json=body) as response:
                assert response.status == 200
                ids.append((await response.json())["id"])
    assert ids[0] != ids[1]
    assert [m.content for m in interaction.followups] == ["again", "again"]
    assert discord_double.deduplicated_requests == []


# --- latency ------------------------------------------------------------------------------------------------------


async def test_a_defer_held_before_commit_is_not_applied_until_released(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    cog = Defer()
    await bot_harness.start(setup=lambda bot: bot.add_cog(cog))
    delay = discord_double.delay(f"POST {CALLBACK}", None)

    handle = await discord_double.slash("defer", user=discord_double.add_member(name="ada"))
    record = await delay.wait_held()

    assert record.held == "before_commit" and record.status == 0
    assert await discord_double.wait_held(f"POST {CALLBACK}") is record
    assert handle.response_type is None and discord_double.messages() == []
    assert not cog.done.is_set()
    delay.release()
    assert await handle.wait_response() == 5
    await asyncio.wait_for(cog.done.wait(), 5)
    assert cog.errors == [] and delay.holding == [] and delay.held == [record]


async def test_a_defer_held_past_three_seconds_is_too_late(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    cog = Defer()
    await bot_harness.start(setup=lambda bot: bot.add_cog(cog))
    delay = discord_double.delay(f"POST {CALLBACK}", None)

    handle = await discord_double.slash("defer", user=discord_double.add_member(name="bea"))
    await delay.wait_held()
    discord_double.advance(3.5)  # Discord takes its time to process the callback; the 3 s pass meanwhile
    delay.release()
    await asyncio.wait_for(cog.done.wait(), 5)

    (error,) = cog.errors
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert handle.response_type is None
    (refused,) = discord_double.rejections(10062)
    assert refused.kind == "late_acknowledgement" and refused.held == "before_commit"


async def test_a_message_held_after_commit_exists_before_the_bot_hears_of_it(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    bot = await bot_harness.start()
    delay = discord_double.delay(f"POST {MESSAGES}", None, after_commit=True)
    send = asyncio.create_task(text_channel(bot, discord_double.channel.id).send("your video", nonce="job-7"))

    record = await delay.wait_held()

    assert record.held == "after_commit" and record.status == 200 and not send.done()
    (stored,) = discord_double.messages()
    assert stored.content == "your video" and record.response["id"] == str(stored.id)
    await discord_double.wait_for(lambda: message_creates(discord_double) == [str(stored.id)])

    # The bot dies before the answer arrives; its successor resends the job's message with the same nonce.
    send.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await send
    bot = await bot_harness.restart()
    resent = await text_channel(bot, discord_double.channel.id).send("your video", nonce="job-7")

    assert resent.id == stored.id and len(discord_double.messages()) == 1
    (hit,) = discord_double.deduplicated_requests
    assert hit.held is None  # the delay held one request only
    delay.release()
    await discord_double.wait_for(lambda: not delay.holding)


async def test_a_refusal_held_after_commit_carries_its_answer(discord_double: DiscordDouble) -> None:
    user = discord_double.add_member(name="old").user
    interaction: Interaction = discord_double.world.create_interaction(
        2, user=user, channel=discord_double.channel, data={}, age=5
    )
    delay = discord_double.delay(f"POST {CALLBACK}", None, after_commit=True)
    callback = f"{discord_double.api_base}/interactions/{interaction.id}/{interaction.token}/callback"
    async with aiohttp.ClientSession() as session:
        answer = asyncio.create_task(session.post(callback, json={"type": 5}))
        record = await delay.wait_held()
        assert (record.status, record.code, record.held) == (404, 10062, "after_commit") and not answer.done()
        delay.release()
        async with await answer as response:
            assert response.status == 404 and (await response.json())["code"] == 10062


async def test_a_delay_takes_only_requests_that_reach_the_handler(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    with pytest.raises(ValueError, match="serves no route"):
        discord_double.delay("POST /channels/{channel_id}/nowhere", 1)
    bot = await bot_harness.start()
    channel = text_channel(bot, discord_double.channel.id)
    discord_double.inject_rate_limit(f"POST {MESSAGES}", retry_after=0.01)
    delay = discord_double.delay(f"post {MESSAGES}", 0, times=2)

    for text in ("one", "two", "three"):
        await channel.send(text)

    limited, *created = discord_double.requests_to("POST", MESSAGES)
    assert limited.status == 429 and limited.held is None
    assert [r.held for r in created] == ["before_commit", "before_commit", None]
    assert delay.held == created[:2] and delay.remaining == 0
    assert [m.content for m in discord_double.messages()] == ["one", "two", "three"]
    assert "0 left, 2 held, 0 holding" in repr(delay)
