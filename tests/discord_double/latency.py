"""Latency injection: `double.delay(route, seconds, times=, after_commit=)` holds requests to a route.

A held request waits real seconds (asyncio), either before the double applies it (a slow defer: the interaction
is still unacknowledged meanwhile) or after it applied it but before it answers (the message exists on Discord
and was dispatched to the gateway, but the client has not heard back: what a bot killed at that moment leaves
behind). A test learns that a request is being held with `await delay.wait_held()` or
`await double.wait_held(route)`, and can end the hold early with `delay.release()`.
"""

# `timeout=` on the waiting helpers reads best in a test, as in double.py.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .wire import ApiError, RecordedRequest

if TYPE_CHECKING:
    from .double import DiscordDouble

BEFORE_COMMIT = "before_commit"
AFTER_COMMIT = "after_commit"

Outcome = tuple[int, Any]


class Delay:
    """What `double.delay(...)` returns: which requests it held, which it holds now, and a way to let them go.

    A request takes one of the `times` slots when it reaches its handler, i.e. after routing, auth, injected
    errors, rate limits and body validation, so a 429 or a 400 does not use up the delay.
    """

    def __init__(
        self,
        double: DiscordDouble,
        method: str,
        template: str,
        seconds: float | None,
        *,
        times: int,
        after_commit: bool,
    ) -> None:
        if seconds is not None and seconds < 0:
            raise ValueError("seconds must be ≥ 0 (or None to hold until release())")
        if times < 1:
            raise ValueError("times must be ≥ 1")
        self.double = double
        self.method = method
        self.template = template
        self.seconds = seconds  # None: until release()
        self.after_commit = after_commit
        self.remaining = times
        self.held: list[RecordedRequest] = []  # every request this delay took, in the order they reached it
        self.holding: list[RecordedRequest] = []  # those waiting right now
        self._released = asyncio.Event()

    @property
    def route(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def phase(self) -> str:
        return AFTER_COMMIT if self.after_commit else BEFORE_COMMIT

    def matches(self, method: str, template: str) -> bool:
        return self.method == method and self.template == template

    def take(self) -> bool:
        """Claim a slot for one more request; False once `times` requests were taken (or after release())."""
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    def release(self) -> None:
        """End every hold now and let the requests still to come through without waiting."""
        self.remaining = 0
        self._released.set()

    async def run(self, record: RecordedRequest, apply: Callable[[], Awaitable[Outcome]]) -> Outcome:
        """Apply the request with the hold before or after; the record carries the answer while it is held."""
        if not self.after_commit:
            await self._hold(record)
            return await apply()
        try:
            outcome = await apply()
        except ApiError as refused:  # Discord refused it on its state (10062, 50013, ...): the answer still waits
            record.status, record.response, record.kind = refused.status, refused.body(), refused.kind
            await self._hold(record)
            raise
        record.status, record.response = outcome
        await self._hold(record)
        return outcome

    async def _hold(self, record: RecordedRequest) -> None:
        record.held = self.phase
        self.held.append(record)
        self.holding.append(record)
        self.double._notify()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), self.seconds)
        finally:
            self.holding.remove(record)
            self.double._notify()

    async def wait_held(self, count: int = 1, timeout: float = 5.0) -> RecordedRequest:
        """The `count`-th request this delay held (1 = the first), once it is being held: after commit, it has
        been applied by then. It may have been let go since; `record in delay.holding` tells."""
        if count < 1:
            raise ValueError("count starts at 1")
        return await self.double.wait_for(
            lambda: self.held[count - 1] if len(self.held) >= count else None,
            timeout,
            what=f"request #{count} held by the delay on {self.route}",
        )

    def __repr__(self) -> str:
        wait = "until released" if self.seconds is None else f"{self.seconds} s"
        return (
            f"<Delay {self.route} {wait} {self.phase}: {self.remaining} left, "
            f"{len(self.held)} held, {len(self.holding)} holding>"
        )


__all__ = ["AFTER_COMMIT", "BEFORE_COMMIT", "Delay"]
