"""The edit scheduler: coalescing, per-message spacing, shared channel budgets, priorities, final edits."""

from __future__ import annotations

import asyncio
import gc
import itertools
import weakref

from bot.clock import Clock, FakeClock
from bot.streamer import (
    INTERACTION_TOKEN_LIFE,
    SWEEP_EVERY,
    EditScheduler,
    MessagePayload,
    Priority,
    ProgressStreamer,
    webhook_key,
)


class RecordingTarget:
    """An `EditTarget` of our own protocol that records when each edit happened (no Discord involved)."""

    def __init__(self, channel_id: int, clock: Clock, delay: float = 0.0) -> None:
        self.channel_id = channel_id
        self.budget_keys = (f"channel:{channel_id}",)
        self.expires_at = None
        self.clock = clock
        self.delay = delay
        self.edits: list[tuple[float, str | None]] = []

    async def edit(self, payload: MessagePayload) -> None:
        await asyncio.sleep(self.delay)
        self.edits.append((self.clock.monotonic(), payload.content))

    def jump_url(self) -> str | None:
        return None


def max_in_window(times: list[float], window: float) -> int:
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


async def test_updates_coalesce_and_the_final_edit_lands() -> None:
    clock = Clock()
    scheduler = EditScheduler(clock, interval=0.1)
    target = RecordingTarget(1, clock)
    streamer = ProgressStreamer(scheduler, target)
    for percent in range(100):
        streamer.update(MessagePayload(content=f"{percent}%"))
        await asyncio.sleep(0.002)
    assert await streamer.close(MessagePayload(content="done"))
    contents = [content for _, content in target.edits]
    assert contents[-1] == "done"
    assert len(contents) < 10  # coalesced, not one edit per update
    times = [when for when, _ in target.edits]
    assert all(b - a >= 0.1 - 1e-3 for a, b in itertools.pairwise(times))
    await scheduler.close()


async def test_messages_in_one_channel_share_its_budget() -> None:
    clock = Clock()
    scheduler = EditScheduler(clock, interval=0.01, channel_budget=(5, 0.3))
    targets = [RecordingTarget(7, clock) for _ in range(6)]
    streamers = [ProgressStreamer(scheduler, target) for target in targets]
    for round_ in range(15):
        for index, streamer in enumerate(streamers):
            streamer.update(MessagePayload(content=f"{index}:{round_}"))
        await asyncio.sleep(0.02)
    results = await asyncio.gather(*(s.close(MessagePayload(content="final")) for s in streamers))
    assert all(results)
    every_edit = sorted(when for target in targets for when, _ in target.edits)
    assert max_in_window(every_edit, 0.3) <= 5
    assert all(target.edits[-1][1] == "final" for target in targets)
    await scheduler.close()


async def test_other_channels_are_not_held_back() -> None:
    clock = Clock()
    scheduler = EditScheduler(clock, interval=0.01, channel_budget=(1, 10.0))
    busy, free = RecordingTarget(1, clock), RecordingTarget(2, clock)
    busy_streamer, free_streamer = ProgressStreamer(scheduler, busy), ProgressStreamer(scheduler, free)
    busy_streamer.update(MessagePayload(content="a"))
    await asyncio.sleep(0.05)
    busy_streamer.update(MessagePayload(content="b"))  # has to wait ~10 s for channel 1's budget
    assert await free_streamer.close(MessagePayload(content="x"), give_up_after=2.0)
    assert [c for _, c in free.edits] == ["x"]
    assert [c for _, c in busy.edits] == ["a"]
    await scheduler.close()


async def test_state_changes_go_before_progress() -> None:
    clock = Clock()
    scheduler = EditScheduler(clock, interval=0.01, channel_budget=(1, 0.2))
    blocker = RecordingTarget(3, clock)
    ProgressStreamer(scheduler, blocker).update(MessagePayload(content="first"))
    await asyncio.sleep(0.02)
    progress_target, state_target = RecordingTarget(3, clock), RecordingTarget(3, clock)
    progress = ProgressStreamer(scheduler, progress_target)
    state = ProgressStreamer(scheduler, state_target)
    progress.update(MessagePayload(content="p"), Priority.PROGRESS)
    state.update(MessagePayload(content="s"), Priority.STATE)
    await asyncio.wait_for(state.close(MessagePayload(content="s")), 3)
    await asyncio.wait_for(progress.close(MessagePayload(content="p")), 3)
    assert state_target.edits[0][0] < progress_target.edits[0][0]
    await scheduler.close()


def test_budget_learns_from_rate_limit_headers() -> None:
    clock = Clock()
    scheduler = EditScheduler(clock)
    url = "http://127.0.0.1/api/v10/channels/55/messages/66"
    scheduler.observe_response(
        "PATCH", url, 200, {"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "3"}
    )
    window = scheduler.window("channel:55")
    assert window.limit == 2
    assert scheduler.wait_time(("channel:55",)) > 2.5
    scheduler.observe_response("POST", "http://127.0.0.1/api/v10/webhooks/1/tok3n/messages/@original", 429,
                               {"Retry-After": "1.5"})
    assert any(key.startswith("webhook:") and "tok3n" not in key for key in scheduler.windows)


async def test_interaction_edits_are_not_held_to_the_global_budget() -> None:
    clock = Clock()
    scheduler = EditScheduler(clock, interval=0.01, global_budget=(1, 10.0))
    scheduler.consume(("channel:1",))  # the global budget is now spent for 10 s
    assert scheduler.wait_time(("channel:2",)) > 5
    assert scheduler.wait_time(("webhook:abc",)) == 0  # interaction webhooks aren't bound by the global limit
    renders = []

    def render() -> MessagePayload:
        renders.append(1)
        return MessagePayload(content=f"render {len(renders)}")

    target = RecordingTarget(1, clock)
    target.budget_keys = ("webhook:abc",)
    streamer = ProgressStreamer(scheduler, target)
    for _ in range(50):
        streamer.update(render)
    assert await streamer.close(MessagePayload(content="done"), give_up_after=2)
    assert len(renders) <= 2  # rendered only when an edit went out, not per update
    await scheduler.close()


def budget_kinds(scheduler: EditScheduler) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for key in scheduler.windows:
        kind = key.partition(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


async def test_the_scheduler_forgets_what_it_no_longer_needs() -> None:
    """Windows of dead interaction tokens, idle channel and thread windows and finished streamers all go; live
    tokens keep their budget. Time is the fake clock's: five batches of interactions a minute apart."""
    clock = FakeClock()
    scheduler = EditScheduler(clock, interval=0.01, global_budget=(10_000, 1.0))
    finished: list[weakref.ref[ProgressStreamer]] = []
    live_tokens: set[str] = set()
    for batch in range(5):
        streamers = []
        for index in range(40):
            number = batch * 40 + index
            target = RecordingTarget(number, clock)
            target.budget_keys = (webhook_key(f"interaction-token-{number}"),)
            target.expires_at = clock.time() + INTERACTION_TOKEN_LIFE  # type: ignore[assignment]
            await scheduler.reserve(target.budget_keys)  # the first progress state, as `first_target` does
            streamer = ProgressStreamer(scheduler, target)
            streamer.update(MessagePayload(content="50%"))
            streamers.append(streamer)
            await scheduler.reserve((f"channel:{number}",))  # the result message
            await scheduler.reserve((f"threads:{number}",))  # its thread
            followup_token = f"followup-token-{number}"  # an interaction answered without a streamer
            scheduler.observe_response("POST", f"http://127.0.0.1/api/v10/webhooks/1/{followup_token}", 200, {})
            live_tokens |= {target.budget_keys[0], webhook_key(followup_token)}
        results = await asyncio.gather(*(streamer.close(MessagePayload(content="done")) for streamer in streamers))
        assert all(results)
        await asyncio.gather(*scheduler.flushing)
        finished.extend(weakref.ref(streamer) for streamer in streamers)
        del streamers, streamer, target
        clock.advance(60.0)

    assert {key for key in scheduler.windows if key.startswith("webhook:")} == live_tokens
    assert budget_kinds(scheduler)["channel"] <= 40  # earlier batches' channels were idle long enough to go

    clock.advance(SWEEP_EVERY)
    scheduler.wait_time(("channel:1",))  # any use of the budgets looks for windows to forget now and then
    assert budget_kinds(scheduler) == {"webhook": len(live_tokens), "channel": 1}  # tokens still alive: kept

    clock.advance(INTERACTION_TOKEN_LIFE)
    scheduler.wait_time(("channel:1",))
    assert set(scheduler.windows) == {"channel:1"}

    assert not scheduler.waiting and not scheduler.flushing
    gc.collect()
    assert all(ref() is None for ref in finished)  # nothing in the scheduler keeps a finished streamer alive


async def test_forgetting_never_lifts_a_budget_still_in_force() -> None:
    clock = FakeClock()
    scheduler = EditScheduler(clock, interval=0.01)
    url = "http://127.0.0.1/api/v10/channels/55/messages/66"
    scheduler.observe_response("PATCH", url, 429, {"Retry-After": "300"})
    for _ in range(5):
        scheduler.consume(("channel:56",))
    assert scheduler.wait_time(("channel:56",)) > 0  # its five calls are spent

    clock.advance(SWEEP_EVERY + 1)
    scheduler.wait_time(("channel:1",))
    assert scheduler.wait_time(("channel:55",)) > 200  # still backing off after the 429: kept, not forgotten
    assert "channel:56" not in scheduler.windows  # idle longer than its window: forgotten
    assert scheduler.wait_time(("channel:56",)) == 0  # and a fresh window allows what the old one would have

    clock.advance(300)
    scheduler.wait_time(("channel:1",))
    assert "channel:55" not in scheduler.windows
