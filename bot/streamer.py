"""Live progress messages that never trip Discord's rate limits.

- A `ProgressStreamer` owns one message. `update()` only replaces the latest payload (coalescing: the newest
  state wins, nothing queues up); `close()` delivers the final payload and never drops it.
- One `EditScheduler` per bot decides when each streamer may edit: at most once per `interval` per message,
  within every budget the call touches: the channel's message bucket (shared by every bot-token message create
  and edit in that channel), the interaction webhook's bucket (per token), and a global one. State changes
  and final edits go first; otherwise the message that waited longest.
- Budgets start from Discord's observed numbers and follow the rate-limit headers discord.py receives
  (`observe_response`, wired to the client's `http_trace`), so a tighter real limit is respected too.
- Interaction tokens die after 15 minutes: before that, the streamer asks its `handover` callback for an
  ordinary channel message (bot token) and continues there.
- The scheduler forgets what it no longer needs, so a long-running bot doesn't grow with every interaction it
  ever served: a channel or thread window idle for longer than its window, and an interaction webhook's window
  once its token is dead and the window idle. A forgotten window is indistinguishable from a fresh one (no
  grant or back-off in force), except for a stricter limit learnt from headers, which the next response
  teaches again. It holds a streamer only while the streamer waits for or makes an edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol

import aiohttp
import discord

from bot.clock import Clock

log = logging.getLogger(__name__)

CHANNEL_LIMIT, CHANNEL_WINDOW = 5, 5.0  # message create/edit per channel
WEBHOOK_LIMIT, WEBHOOK_WINDOW = 5, 2.0  # per interaction webhook token
THREAD_LIMIT, THREAD_WINDOW = 10, 10.0  # thread creation per channel
GLOBAL_LIMIT, GLOBAL_WINDOW = 30, 1.0  # Discord allows 50/s; discord.py may bunch queued calls, so keep a wide margin
SAFETY = 1.1  # windows are stretched by 10 % (+ a little) so network jitter can't squeeze a sixth call in
# A channel's message and thread buckets are spent by requests that a busy event loop can hold back for a few
# hundred ms after their grant (measured: loop stalls of 300 ms with 500 jobs on 2 cores); a held-back first call
# opens Discord's fixed window late, and a prompt sixth call then lands inside it. Those windows get more room.
BOT_TOKEN_SAFETY = 1.2
INTERACTION_TOKEN_LIFE = 15 * 60.0
HANDOVER_MARGIN = 90.0  # move off the interaction token this long before it expires
SWEEP_EVERY = 30.0  # look for windows to forget at most this often (each look is one pass over them)


class Priority(IntEnum):
    PROGRESS = 0
    STATE = 1
    FINAL = 2


@dataclass(slots=True)
class MessagePayload:
    content: str | None = None
    embeds: list[discord.Embed] = field(default_factory=list)
    view: discord.ui.View | None = None


class EditTarget(Protocol):
    """Something a streamer can edit: an interaction's original response or a channel message."""

    channel_id: int
    budget_keys: tuple[str, ...]
    expires_at: float | None  # clock time after which edits through this target fail

    async def edit(self, payload: MessagePayload) -> None: ...

    def jump_url(self) -> str | None: ...


class InteractionTarget:
    """The deferred interaction response, edited through the interaction webhook."""

    def __init__(self, interaction: discord.Interaction[Any], created_at: float) -> None:
        self.interaction = interaction
        assert interaction.channel_id is not None
        self.channel_id = interaction.channel_id
        # Interaction webhook edits have their own bucket per token (not the channel's message bucket).
        self.budget_keys = (webhook_key(interaction.token),)
        self.expires_at: float | None = created_at + INTERACTION_TOKEN_LIFE
        self.message: discord.InteractionMessage | None = None

    async def edit(self, payload: MessagePayload) -> None:
        self.message = await self.interaction.edit_original_response(
            content=payload.content, embeds=payload.embeds, view=payload.view
        )

    def jump_url(self) -> str | None:
        return self.message.jump_url if self.message is not None else None


class ChannelMessageTarget:
    """An ordinary message the bot sent, edited with the bot token."""

    def __init__(self, message: discord.Message | discord.PartialMessage) -> None:
        self.message = message
        self.channel_id = message.channel.id
        self.budget_keys = (f"channel:{self.channel_id}",)
        self.expires_at: float | None = None

    async def edit(self, payload: MessagePayload) -> None:
        await self.message.edit(content=payload.content, embeds=payload.embeds, view=payload.view)

    def jump_url(self) -> str | None:
        return self.message.jump_url


class SlidingWindow:
    """Never more than `limit` grants in any `window` seconds (a sliding log, the strictest reading)."""

    __slots__ = ("blocked_until", "grants", "last_used", "limit", "stretch", "usable_until", "window")

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        now: float,
        usable_until: float | None = None,
        stretch: float = SAFETY,
    ) -> None:
        self.limit = limit
        self.window = window
        self.stretch = stretch
        self.grants: deque[float] = deque()
        self.blocked_until = float("-inf")
        self.last_used = now  # the last grant, or the last time the server told us something about this bucket
        self.usable_until = usable_until  # monotonic time after which no call can use this budget (a dead token)

    @property
    def span(self) -> float:
        """How long a grant counts against the window."""
        return self.window * self.stretch + 0.05

    def _drop_old(self, now: float) -> None:
        while self.grants and now - self.grants[0] >= self.span:
            self.grants.popleft()

    def wait_time(self, now: float) -> float:
        self._drop_old(now)
        wait = max(0.0, self.blocked_until - now)
        if len(self.grants) >= self.limit:
            wait = max(wait, self.grants[0] + self.span - now)
        return wait

    def grant(self, now: float) -> None:
        self._drop_old(now)  # budgets spent outside `wait_time` (see `EditScheduler.consume`) mustn't pile up
        self.grants.append(now)
        self.last_used = max(self.last_used, now)

    def block(self, until: float, now: float) -> None:
        self.blocked_until = max(self.blocked_until, until)
        self.last_used = max(self.last_used, now)

    def learn(self, limit: int | None, reset_after: float | None, remaining: int | None, now: float) -> None:
        """Follow the server's numbers when they are stricter than ours."""
        self.last_used = max(self.last_used, now)
        if limit is not None and 0 < limit < self.limit:
            self.limit = limit
        if remaining == 0 and reset_after is not None:
            self.block(now + reset_after * SAFETY, now)

    def idle(self, now: float) -> bool:
        """No grant counts any more and no back-off is in force: a fresh window would behave the same."""
        return now >= self.blocked_until and now - self.last_used >= self.span

    def forgettable(self, now: float) -> bool:
        """Idle, and if the budget belongs to a token, the token is dead (its budget can't be needed again)."""
        return self.idle(now) and (self.usable_until is None or now >= self.usable_until)


def webhook_key(token: str) -> str:
    """A budget key for an interaction webhook that doesn't carry the token itself (keys can be logged)."""
    return "webhook:" + hashlib.sha256(token.encode()).hexdigest()[:16]


THREAD_PATH = re.compile(r"/channels/(\d+)/messages/\d+/threads")
WEBHOOK_PATH = re.compile(r"/webhooks/\d+/([^/?]+)")
CHANNEL_PATH = re.compile(r"/channels/(\d+)/messages")


class EditScheduler:
    """Grants edit slots to streamers fairly, within every budget they touch."""

    def __init__(
        self,
        clock: Clock,
        *,
        interval: float = 1.5,
        channel_budget: tuple[int, float] = (CHANNEL_LIMIT, CHANNEL_WINDOW),
        webhook_budget: tuple[int, float] = (WEBHOOK_LIMIT, WEBHOOK_WINDOW),
        global_budget: tuple[int, float] = (GLOBAL_LIMIT, GLOBAL_WINDOW),
        thread_budget: tuple[int, float] = (THREAD_LIMIT, THREAD_WINDOW),
    ) -> None:
        self.clock = clock
        self.interval = interval
        self.channel_budget = channel_budget
        self.webhook_budget = webhook_budget
        self.thread_budget = thread_budget
        self.windows: dict[str, SlidingWindow] = {}
        self.global_window = SlidingWindow(*global_budget, now=clock.monotonic())
        self.waiting: set[ProgressStreamer] = set()
        self.flushing: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_sweep = clock.monotonic() + SWEEP_EVERY
        self._windows_high_water = 0  # the most windows held since the map was last rebuilt

    # --- budgets -------------------------------------------------------------------------------------

    def window(self, key: str) -> SlidingWindow:
        now = self.clock.monotonic()
        if now >= self._next_sweep:
            self.forget_idle(now)
        window = self.windows.get(key)
        if window is None:
            if key.startswith("webhook:"):
                # Whatever interaction this token belongs to was created before we first saw the token, so it is
                # dead 15 minutes from now at the latest (`token_expires` narrows this when the streamer knows).
                window = SlidingWindow(*self.webhook_budget, now=now, usable_until=now + INTERACTION_TOKEN_LIFE)
            elif key.startswith("threads:"):
                window = SlidingWindow(*self.thread_budget, now=now, stretch=BOT_TOKEN_SAFETY)
            else:
                window = SlidingWindow(*self.channel_budget, now=now, stretch=BOT_TOKEN_SAFETY)
            self.windows[key] = window
        return window

    def token_expires(self, keys: tuple[str, ...], expires_at: float) -> None:
        """The interaction token behind these webhook keys dies at `expires_at` (wall clock, like `created_at`)."""
        clock = self.clock
        usable_until = expires_at - clock.time() + clock.monotonic()
        for key in keys:
            if key.startswith("webhook:"):
                window = self.window(key)
                if window.usable_until is None or usable_until < window.usable_until:
                    window.usable_until = usable_until

    def forget_idle(self, now: float | None = None) -> int:
        """Drop the windows nothing needs any more (see the module's docstring); returns how many went."""
        now = self.clock.monotonic() if now is None else now
        self._next_sweep = now + SWEEP_EVERY
        self._windows_high_water = max(self._windows_high_water, len(self.windows))
        gone = [key for key, window in self.windows.items() if window.forgettable(now)]
        for key in gone:
            del self.windows[key]
        if self._windows_high_water > 64 and len(self.windows) < self._windows_high_water // 4:
            # A dict never gives back the table it grew to: after a busy hour, copy what's left into a small one.
            self.windows = dict(self.windows)
            self._windows_high_water = len(self.windows)
        return len(gone)

    def consume(self, keys: tuple[str, ...]) -> None:
        """Count a call the bot makes outside a streamer (e.g. posting the result) against the budgets."""
        now = self.clock.monotonic()
        for key in keys:
            self.window(key).grant(now)
        if counts_globally(keys):
            self.global_window.grant(now)

    def wait_time(self, keys: tuple[str, ...], now: float | None = None) -> float:
        now = self.clock.monotonic() if now is None else now
        waits = [self.window(k).wait_time(now) for k in keys]
        if counts_globally(keys):
            waits.append(self.global_window.wait_time(now))
        return max(waits, default=0.0)

    async def reserve(self, keys: tuple[str, ...]) -> None:
        """Wait for a slot in `keys` and take it (for one-off calls such as the result message)."""
        while (wait := self.wait_time(keys)) > 0:  # noqa: ASYNC110 - budgets free up with time, not events
            await asyncio.sleep(wait)
        self.consume(keys)

    def observe_response(self, method: str, url: str, status: int, headers: Any) -> None:
        """Learn from the rate-limit headers of a response discord.py received."""
        key: str | None = None
        if match := WEBHOOK_PATH.search(url):
            key = webhook_key(match.group(1))
        elif method == "POST" and (match := THREAD_PATH.search(url)):
            key = f"threads:{match.group(1)}"
        elif method in ("POST", "PATCH") and (match := CHANNEL_PATH.search(url)):
            key = f"channel:{match.group(1)}"
        if key is None:
            return
        now = self.clock.monotonic()
        window = self.window(key)
        if status == 429:
            retry_after = _float(headers.get("Retry-After")) or 1.0
            log.warning("rate limited on %s; backing off %.2fs", key, retry_after)
            window.block(now + retry_after * SAFETY, now)
            return
        window.learn(
            _int(headers.get("X-RateLimit-Limit")),
            _float(headers.get("X-RateLimit-Reset-After")),
            _int(headers.get("X-RateLimit-Remaining")),
            now,
        )

    def trace_config(self) -> aiohttp.TraceConfig:
        """An aiohttp trace for discord.py's session (`Client(http_trace=...)`) feeding `observe_response`."""
        trace = aiohttp.TraceConfig()

        async def on_request_end(
            session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
        ) -> None:
            self.observe_response(params.method, str(params.url), params.response.status, params.response.headers)

        trace.on_request_end.append(on_request_end)
        return trace

    # --- dispatch ------------------------------------------------------------------------------------

    def request(self, streamer: ProgressStreamer) -> None:
        self.waiting.add(streamer)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="edit-scheduler")

    def withdraw(self, streamer: ProgressStreamer) -> None:
        self.waiting.discard(streamer)

    async def _run(self) -> None:
        while self.waiting:
            self._wake.clear()
            soonest = self._grant_due()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.01, soonest))

    def _grant_due(self) -> float:
        """One pass: every streamer whose own interval has passed, most urgent first, is granted an edit as long
        as the budgets it touches still allow (grants use up shared budgets as we go). Returns how long until
        the next streamer could be due. (A function of its own so that the streamers it looked at aren't kept
        alive by the loop's frame while it sleeps.)"""
        now = self.clock.monotonic()
        soonest = 5.0
        due = []
        for streamer in self.waiting:
            if streamer.in_flight:
                continue
            wait = streamer.next_allowed - now
            if wait > 0:
                soonest = min(soonest, wait)
            else:
                due.append(streamer)
        due.sort(key=lambda streamer: (-int(streamer.priority), streamer.last_edit))
        for streamer in due:
            wait = self.wait_time(streamer.target.budget_keys, now)
            if wait > 0:
                soonest = min(soonest, wait)
                continue
            self.waiting.discard(streamer)
            self.consume(streamer.target.budget_keys)
            streamer.start_flush()
        return soonest

    async def close(self) -> None:
        self.waiting.clear()
        tasks = [*self.flushing, *([self._task] if self._task is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


HandoverFactory = Callable[[], Awaitable["EditTarget | None"]]
Render = Callable[[], MessagePayload]


def counts_globally(keys: tuple[str, ...]) -> bool:
    """Interaction webhook calls are not bound by the bot's global rate limit (Discord's docs); others are."""
    return not keys or not all(key.startswith("webhook:") for key in keys)


class ProgressStreamer:
    """Owns one progress message: coalesces updates and makes sure the last one lands."""

    def __init__(
        self,
        scheduler: EditScheduler,
        target: EditTarget,
        *,
        handover: HandoverFactory | None = None,
        interval: float | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.target = target
        self.handover = handover
        self.interval = scheduler.interval if interval is None else interval
        self.pending: MessagePayload | Render | None = None
        self.priority = Priority.PROGRESS
        self.last_edit = float("-inf")
        self.next_allowed = float("-inf")
        self.in_flight = False
        self.lost = False  # the message was deleted or can't be edited any more
        self.edits = 0
        self._final: asyncio.Future[bool] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._tell_token_expiry()

    def _tell_token_expiry(self) -> None:
        """Let the scheduler know when the target's token dies, so it can forget that token's budget then."""
        if self.target.expires_at is not None:
            self.scheduler.token_expires(self.target.budget_keys, self.target.expires_at)

    def __hash__(self) -> int:
        return id(self)

    def mark_edited(self) -> None:
        """The message was just written outside the streamer (e.g. when it was posted): space the next edit."""
        now = self.scheduler.clock.monotonic()
        self.last_edit = now
        self.next_allowed = now + self.interval

    def update(self, payload: MessagePayload | Render, priority: Priority = Priority.PROGRESS) -> None:
        """Replace the pending payload with the newest state; never blocks, never queues.

        `payload` may be a function that renders it: it is then called only when an edit actually goes out."""
        if self.lost or self._final is not None:
            return
        self.pending = payload
        self.priority = max(self.priority, priority)
        if not self.in_flight:
            self.scheduler.request(self)

    async def close(self, payload: MessagePayload, *, give_up_after: float = 120.0) -> bool:
        """Deliver the final payload; True if it landed on the message, False if the message is gone."""
        if self.lost:
            return False
        loop = asyncio.get_running_loop()
        self._final = loop.create_future()
        self.pending = payload
        self.priority = Priority.FINAL
        if not self.in_flight:
            self.scheduler.request(self)
        try:
            return await asyncio.wait_for(asyncio.shield(self._final), give_up_after)
        except TimeoutError:
            log.warning("final edit did not land within %.0fs", give_up_after)
            return False

    def start_flush(self) -> None:
        self.in_flight = True
        self._flush_task = asyncio.create_task(self._flush(), name="progress-edit")
        self.scheduler.flushing.add(self._flush_task)
        self._flush_task.add_done_callback(self.scheduler.flushing.discard)

    async def _flush(self) -> None:
        pending, priority = self.pending, self.priority
        self.pending, self.priority = None, Priority.PROGRESS
        landed = False
        try:
            if pending is not None:
                landed = await self._edit(pending() if callable(pending) else pending)
        finally:
            now = self.scheduler.clock.monotonic()
            self.last_edit = now
            self.next_allowed = now + self.interval
            self.in_flight = False
            if self.lost:
                self.pending = None
                self._resolve_final(False)
            elif self.pending is not None:
                self.scheduler.request(self)
            elif self._final is not None and priority is Priority.FINAL:
                self._resolve_final(landed)

    def _resolve_final(self, value: bool) -> None:
        if self._final is not None and not self._final.done():
            self._final.set_result(value)

    async def _edit(self, payload: MessagePayload, attempts: int = 3) -> bool:
        if await self._maybe_handover():
            return True  # the new message was just posted showing the current state
        for attempt in range(attempts):
            try:
                await self.target.edit(payload)
                self.edits += 1
                return True
            except discord.NotFound:
                self.lost = True
                return False
            except discord.HTTPException as exc:
                if exc.code == 50027:  # the interaction token died early: move to a channel message
                    if await self._maybe_handover(force=True):
                        continue
                    self.lost = True
                    return False
                if exc.status == 403 or exc.code in (50083, 50001, 50013):
                    log.warning("cannot edit progress message in channel %s: %s", self.target.channel_id, exc)
                    self.lost = True
                    return False
                if attempt == attempts - 1:
                    log.warning("progress edit failed after %d attempts: %s", attempts, exc)
                    return False
                await asyncio.sleep(0.5 * 2**attempt)
            except (aiohttp.ClientError, TimeoutError) as exc:
                if attempt == attempts - 1:
                    log.warning("progress edit failed after %d attempts: %s", attempts, type(exc).__name__)
                    return False
                await asyncio.sleep(0.5 * 2**attempt)
            except Exception:
                log.exception("progress edit failed in channel %s", self.target.channel_id)
                return False
        return False

    async def _maybe_handover(self, *, force: bool = False) -> bool:
        expires_at = self.target.expires_at
        if expires_at is None or self.handover is None:
            return False
        if not force and self.scheduler.clock.time() < expires_at - HANDOVER_MARGIN:
            return False
        handover, self.handover = self.handover, None
        try:
            new_target = await handover()
        except discord.HTTPException as exc:
            log.warning("could not move progress to a channel message: %s", exc)
            new_target = None
        if new_target is None:
            self.lost = True
            return False
        self.target = new_target
        self._tell_token_expiry()
        return True


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


__all__ = [
    "ChannelMessageTarget",
    "EditScheduler",
    "EditTarget",
    "InteractionTarget",
    "MessagePayload",
    "Priority",
    "ProgressStreamer",
]
