"""This process's share of Discord's global limit: the rate bucket on a fake clock, then the real bot against the
double (a burst keeps to the rate as the double sees it; interaction responses don't wait for the budget)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from bot.clock import Clock
from bot.ratelimit import RateBucket
from tests.discord_double import DiscordDouble
from tests.fixtures.discord import BotHarness


class FakeTime:
    """A clock (`time()`) with an asyncio `sleep` that only returns when the test moves time past its end."""

    def __init__(self) -> None:
        self.now = 0.0
        self._order = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking the sleepers due on the way in order (each runs before the next wakes)."""
        target = self.now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, future = heapq.heappop(self._sleepers)
            self.now = due
            if not future.done():
                future.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self.now = target


def slots_of(bucket: RateBucket, fake: FakeTime, count: int) -> list[float]:
    """Reserve `count` slots at the current fake time; returns when each starts."""
    return [fake.now + bucket.reserve() for _ in range(count)]


def most_in_any_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(sum(1 for t in ordered if start <= t < start + window) for start in ordered)


# --- the bucket ---------------------------------------------------------------------------------------------


def test_a_burst_of_the_limit_goes_at_once_and_the_rest_a_window_later() -> None:
    fake = FakeTime()
    bucket = RateBucket(10, clock=fake)
    assert (bucket.limit, bucket.window) == (10, 1.0)

    assert slots_of(bucket, fake, 25) == [0.0] * 10 + [1.0] * 10 + [2.0] * 5


def test_no_window_ever_holds_more_than_the_limit() -> None:
    fake = FakeTime()
    bucket = RateBucket(7, clock=fake)
    chance = random.Random(11)
    slots: list[float] = []
    for _ in range(500):
        fake.now += chance.choice([0.0, 0.0, 0.01, 0.05, 0.3, 1.5])  # bursts, trickles and pauses
        slots.extend(slots_of(bucket, fake, chance.choice([1, 1, 2, 9])))

    assert slots == sorted(slots)  # first come, first served
    gaps = [later - earlier for earlier, later in zip(slots, slots[7:], strict=False)]
    assert min(gaps) == pytest.approx(bucket.window)  # the 8th is always a full window after the 1st
    assert most_in_any_window(slots, bucket.window - 1e-9) == 7  # and the whole share is usable


@pytest.mark.parametrize(
    ("rate", "limit", "window"),
    [(50, 50, 1.0), (12.5, 12, 1.0), (16.67, 16, 1.0), (1, 1, 1.0), (0.5, 1, 2.0), (0.25, 1, 4.0)],
)
def test_fractional_and_slow_rates_never_exceed_the_rate(rate: float, limit: int, window: float) -> None:
    fake = FakeTime()
    bucket = RateBucket(rate, clock=fake)
    assert (bucket.limit, bucket.window) == (limit, window)
    slots = slots_of(bucket, fake, 40)
    span = slots[-1] - slots[0]
    assert len(slots) - 1 <= rate * span + limit  # on average no faster than `rate`
    for start in slots:
        assert sum(1 for t in slots if start <= t < start + 1.0) <= max(1, rate)


def test_the_rate_must_be_positive() -> None:
    for rate in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            RateBucket(rate)


async def test_waiters_are_served_in_the_order_they_asked() -> None:
    fake = FakeTime()
    bucket = RateBucket(3, clock=fake, sleep=fake.sleep)
    served: list[tuple[int, float]] = []

    async def request(number: int) -> None:
        await bucket.acquire()
        served.append((number, fake.now))

    tasks = [asyncio.create_task(request(n)) for n in range(10)]
    await asyncio.sleep(0)
    assert [n for n, _ in served] == [0, 1, 2]  # the burst went at once, nobody slept
    await fake.advance(5)
    await asyncio.gather(*tasks)

    assert [n for n, _ in served] == list(range(10))
    assert [at for _, at in served] == [0.0] * 3 + [1.0] * 3 + [2.0] * 3 + [3.0]


async def test_a_cancelled_waiter_lets_nobody_overtake_or_exceed() -> None:
    fake = FakeTime()
    bucket = RateBucket(2, clock=fake, sleep=fake.sleep)
    served: list[tuple[int, float]] = []

    async def request(number: int) -> None:
        await bucket.acquire()
        served.append((number, fake.now))

    tasks = [asyncio.create_task(request(n)) for n in range(6)]
    await asyncio.sleep(0)
    tasks[2].cancel()  # waiting for the slot at 1.0
    await fake.advance(3)
    await asyncio.gather(*tasks, return_exceptions=True)

    assert served == [(0, 0.0), (1, 0.0), (3, 1.0), (4, 2.0), (5, 2.0)]  # its slot stays unused


# --- the bot against the double ----------------------------------------------------------------------------


class Ping(commands.Cog):
    @app_commands.command(name="ping", description="Answer at once")
    async def ping(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")


async def test_a_burst_of_sends_keeps_to_the_configured_rate(
    bot_harness: BotHarness, discord_double: DiscordDouble, clock: Clock
) -> None:
    rate, burst = 10, 25
    discord_double.set_rate_limit("message_create", limit=1000, window=1.0)  # only the global budget holds it
    bot = await bot_harness.start(settings_overrides={"sora_discord_global_rate": rate})
    assert (bot.global_rate.limit, bot.global_rate.window) == (rate, 1.0)
    channel = bot.get_channel(discord_double.channel.id)
    assert isinstance(channel, discord.TextChannel)
    start = clock.monotonic()

    await asyncio.gather(*(channel.send(f"message {n}") for n in range(burst)))

    seen = [r.monotonic for r in discord_double.requests if r.authorized and r.monotonic >= start]
    posts = [r for r in discord_double.requests_to("POST", "/channels/{channel_id}/messages") if r.monotonic >= start]
    assert len(posts) == burst and all(r.status == 200 for r in posts)
    # The bot spaces its slots a full second; arrival at the double may jitter by a little.
    assert most_in_any_window(seen, 0.75) <= rate
    assert max(seen) - min(seen) >= (burst // rate) - 0.25  # it was held back, not just lucky
    assert discord_double.rejections(kind="rate_limited") == []


async def test_interaction_responses_do_not_wait_for_the_budget(
    bot_harness: BotHarness, discord_double: DiscordDouble
) -> None:
    # One message in each of four channels: four route buckets, so discord.py sends them all at once and only the
    # budget (one per second) holds them back.
    channels = [discord_double.add_channel(name=f"queue-{n}") for n in range(4)]
    bot = await bot_harness.start(settings_overrides={"sora_discord_global_rate": 1}, setup=lambda b: b.add_cog(Ping()))
    targets = [bot.get_channel(channel.id) for channel in channels]
    assert all(isinstance(target, discord.TextChannel) for target in targets)
    sends = asyncio.gather(*(target.send("queued") for target in targets if isinstance(target, discord.TextChannel)))
    await asyncio.sleep(0.05)  # they have taken their slots, the last one 3+ s ahead
    try:
        # A callback that waited behind them would come after Discord's 3 s and be refused with 10062.
        handle = await discord_double.slash("ping", user=discord_double.add_member(name="dee"))
        assert await handle.wait_response() == 4
        assert not sends.done()
    finally:
        await sends
    callbacks = discord_double.requests_to("POST", "/interactions/{interaction_id}/{interaction_token}/callback")
    assert [(r.authorized, r.status) for r in callbacks] == [(False, 200)]
