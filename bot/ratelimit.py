"""This process's share of Discord's global request limit, kept with a first-come-first-served rate limiter.

Discord allows a bot 50 requests per second over all of its processes; interaction responses (and webhook calls
made with the interaction's token) don't count. Every process gets a share by configuration
(`Settings.discord_global_rate`), and `limit_bot_requests` makes each request discord.py sends with the bot
token wait for a `RateBucket` first.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import aiohttp

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[object]]


class RateBucket:
    """At most `limit` requests in any `window` seconds, taken in the order they ask.

    A classic token bucket that holds R tokens and refills R per second lets 2R requests through within one
    second (the full bucket, then its refill), and Discord counts per second. So each request here gets a slot
    `window` seconds after the slot `limit` places before it: a burst of `limit` goes at once, and no window of
    that length ever holds more. Slots are handed out when `acquire()` is called, so nobody overtakes an earlier
    caller, and a caller waits for its slot asleep. A caller cancelled while waiting leaves its slot unused (that
    errs on the safe side).

    `rate` requests per second becomes `floor(rate)` per second (rates below 1: one per `1 / rate` seconds), so
    the shares of several processes never add up to more than their sum.
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic, sleep: Sleep = asyncio.sleep):
        if not rate > 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.window = max(1.0, 1.0 / rate)
        self.limit = max(1, math.floor(rate * self.window + 1e-9))
        self._clock = clock
        self._sleep = sleep
        self._slots: deque[float] = deque(maxlen=self.limit)  # the latest `limit` slots, oldest first

    def reserve(self) -> float:
        """Take the next slot; returns the seconds until it (0: now)."""
        now = self._clock()
        slot = now
        if len(self._slots) == self.limit:
            slot = max(now, self._slots[0] + self.window)
        self._slots.append(slot)
        return slot - now

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)

    def __repr__(self) -> str:
        return f"<RateBucket {self.limit} per {self.window:g} s>"


def limit_bot_requests(trace: aiohttp.TraceConfig, bucket: RateBucket) -> None:
    """Make every request sent with the bot token (`Authorization: Bot …`) on the session `trace` is attached to
    (discord.py's, through `Client(http_trace=...)`) wait for `bucket` before it leaves.

    A trace hook rather than a subclass of discord.py's HTTPClient: it sees every request actually sent, retries
    after a 429 or a 5xx included, and needs nothing private. Interaction callbacks and webhook calls with a token
    carry no Authorization header, and Discord doesn't count them against the global limit either. The wait
    counts against the request's total timeout (discord.py's session: 5 minutes).
    """

    async def on_request_start(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        if params.headers.get("Authorization", "").startswith("Bot "):
            await bucket.acquire()

    trace.on_request_start.append(on_request_start)


__all__ = ["RateBucket", "limit_bot_requests"]
