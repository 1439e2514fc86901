"""Edit scheduler memory: what one `EditScheduler` still holds after 100,000 interactions have come and gone.

    .venv/bin/python bench/scheduler_memory.py          # full run (≈ 2 min): bench/results/scheduler_memory.json
    .venv/bin/python bench/scheduler_memory.py --quick  # smoke run

The real `EditScheduler` and `ProgressStreamer`, on the project's fake clock (no Discord: each progress message is
a target whose edit just counts). One interaction arrives every 0.1 s of fake time, each in the next of 400
channels; it reserves its webhook budget for the first progress state, gets a streamer on its interaction token,
is updated every 30 s for a two-minute job (about one job in a hundred runs 20 minutes and so is handed over to a
channel message before its token dies), then closes with its final state, posts its result (channel budget) and
opens a thread (thread budget). One in ten interactions also sends an ephemeral followup on a token of its own.
Every call is also fed to `observe_response` as discord.py's trace would. After the last job, the clock moves past
every token's 15 minutes and one more call is made, as the next interaction would.

- `tracemalloc_growth_after_expiry_kib`: Python memory still allocated then, against a baseline taken after a
  warm-up (same traffic, expired the same way), and that per interaction (`bytes_per_interaction_after_expiry`).
- `rss_growth_after_expiry_mib`: the same in process RSS (freed memory isn't always given back to the system, so
  this lags; tracemalloc is the figure that shows a leak).
- `windows_peak` / `windows_after_expiry`: how many rate-limit windows the scheduler held at most and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import RESULTS, print_figures, proc_status, write_results  # noqa: E402
from bot.clock import FakeClock  # noqa: E402
from bot.streamer import (  # noqa: E402
    INTERACTION_TOKEN_LIFE,
    EditScheduler,
    EditTarget,
    MessagePayload,
    Priority,
    ProgressStreamer,
    webhook_key,
)

STEP = 0.2  # fake seconds per step of the simulation
ARRIVALS_PER_STEP = 2  # so one interaction every 0.1 s
CHANNELS = 400
JOB_STEPS = 600  # a two-minute job
LONG_JOB_STEPS = 6000  # twenty minutes: outlives its interaction token
UPDATE_STEPS = 150  # progress every 30 s
RATE_HEADERS = {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset-After": "2.0"}
API = "http://127.0.0.1/api/v10"


class SimulatedTarget:
    """An `EditTarget` whose edit only counts (the scheduler's bookkeeping is what's measured)."""

    def __init__(self, channel_id: int, budget_keys: tuple[str, ...], expires_at: float | None) -> None:
        self.channel_id = channel_id
        self.budget_keys = budget_keys
        self.expires_at = expires_at
        self.edits = 0

    async def edit(self, payload: MessagePayload) -> None:
        self.edits += 1

    def jump_url(self) -> str | None:
        return None


@dataclass
class Counters:
    edits: int = 0
    handovers: int = 0
    finals_landed: int = 0
    windows_peak: int = 0


class Traffic:
    """Drives interactions through one scheduler on a fake clock, step by step."""

    def __init__(self, scheduler: EditScheduler, clock: FakeClock, counters: Counters) -> None:
        self.scheduler = scheduler
        self.clock = clock
        self.counters = counters
        self.step = 0
        self.serial = 0
        self.due: defaultdict[int, list[tuple[ProgressStreamer, int, bool]]] = defaultdict(list)
        self.finishing: set[asyncio.Task[None]] = set()

    async def run(self, interactions: int) -> None:
        for arrival in range(interactions):
            await self.arrive()
            if arrival % ARRIVALS_PER_STEP == ARRIVALS_PER_STEP - 1:
                await self.next_step()
            if arrival % 1000 == 0:
                self.counters.windows_peak = max(self.counters.windows_peak, len(self.scheduler.windows))
        while self.due:  # the last jobs run to their end; steps where nothing would happen are skipped
            await self.next_step()
            if self.due and not self.finishing:
                skip = min(self.due) - self.step
                self.clock.advance(STEP * skip)
                self.step += skip
        while self.finishing:  # the last finals and results (the scheduler's loop may be sleeping in real time)
            self.clock.advance(STEP)
            await asyncio.sleep(0.001)

    async def next_step(self) -> None:
        self.tick()
        self.clock.advance(STEP)
        self.step += 1
        await asyncio.sleep(0)

    async def arrive(self) -> None:
        self.serial += 1
        serial, channel_id = self.serial, 10_000 + self.serial % CHANNELS
        token = f"interaction-token-{serial:012d}-{os.urandom(8).hex()}"
        target = SimulatedTarget(channel_id, (webhook_key(token),), self.clock.time() + INTERACTION_TOKEN_LIFE)
        await self.scheduler.reserve(target.budget_keys)  # the first progress state, as the job's origin does
        await target.edit(MessagePayload(content="queued"))
        self.scheduler.observe_response("PATCH", f"{API}/webhooks/1/{token}/messages/@original", 200, RATE_HEADERS)

        async def handover() -> EditTarget | None:
            await self.scheduler.reserve((f"channel:{channel_id}",))
            self.scheduler.observe_response("POST", f"{API}/channels/{channel_id}/messages", 200, RATE_HEADERS)
            self.counters.handovers += 1
            return SimulatedTarget(channel_id, (f"channel:{channel_id}",), None)

        streamer = ProgressStreamer(self.scheduler, target, handover=handover)
        streamer.mark_edited()
        length = LONG_JOB_STEPS if serial % 101 == 0 else JOB_STEPS  # 101: spread over the channels
        self.due[self.step + UPDATE_STEPS].append((streamer, length - UPDATE_STEPS, False))
        if serial % 10 == 0:  # an ephemeral followup (a refusal, a button answer) on a token of its own
            followup = f"followup-token-{serial:012d}"
            self.scheduler.observe_response("POST", f"{API}/webhooks/1/{followup}", 200, RATE_HEADERS)

    def tick(self) -> None:
        for streamer, steps_left, last in self.due.pop(self.step, ()):
            if last:
                self.start_finishing(streamer)
                continue
            streamer.update(MessagePayload(content=f"{self.step % 100}%"), Priority.PROGRESS)
            wait = min(UPDATE_STEPS, steps_left)
            self.due[self.step + wait].append((streamer, steps_left - wait, steps_left - wait <= 0))

    def start_finishing(self, streamer: ProgressStreamer) -> None:
        task = asyncio.create_task(self.finish(streamer))
        self.finishing.add(task)
        task.add_done_callback(self.finishing.discard)

    async def finish(self, streamer: ProgressStreamer) -> None:
        landed = await streamer.close(MessagePayload(content="done"))
        self.counters.finals_landed += landed
        self.counters.edits += streamer.edits
        channel_id = streamer.target.channel_id
        await self.scheduler.reserve((f"channel:{channel_id}",))  # the result message
        self.scheduler.observe_response("POST", f"{API}/channels/{channel_id}/messages", 200, RATE_HEADERS)
        await self.scheduler.reserve((f"threads:{channel_id}",))  # its thread
        self.scheduler.observe_response("POST", f"{API}/channels/{channel_id}/messages/1/threads", 200, RATE_HEADERS)


async def let_everything_expire(scheduler: EditScheduler, clock: FakeClock) -> None:
    clock.advance(INTERACTION_TOKEN_LIFE + 60.0)
    await scheduler.reserve(("channel:1",))  # the next interaction's first call, long after the last one
    gc.collect()


def rss_mib() -> float:
    return round(proc_status(os.getpid()).get("VmRSS", 0) / 1024, 1)


async def measure(interactions: int, warm_up: int) -> dict[str, Any]:
    clock = FakeClock()
    scheduler = EditScheduler(clock)  # the bot's defaults: 1.5 s per message, Discord's budgets
    tracemalloc.start()
    await Traffic(scheduler, clock, Counters()).run(warm_up)
    await let_everything_expire(scheduler, clock)
    baseline, _ = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    rss_before = rss_mib()
    counters = Counters()
    traffic = Traffic(scheduler, clock, counters)  # the driver's own bookkeeping goes with it before the end
    started = time.perf_counter()
    await traffic.run(interactions)
    elapsed = time.perf_counter() - started
    _, traced_peak = tracemalloc.get_traced_memory()
    del traffic
    await let_everything_expire(scheduler, clock)
    traced_after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = rss_mib()
    growth = traced_after - baseline
    figures = {
        "interactions": interactions,
        "fake_hours": round(interactions * STEP / ARRIVALS_PER_STEP / 3600, 2),
        "tracemalloc_growth_after_expiry_kib": round(growth / 1024, 1),
        "bytes_per_interaction_after_expiry": round(growth / interactions, 2),
        "tracemalloc_peak_mib": round((traced_peak - baseline) / 2**20, 1),
        "rss_before_mib": rss_before,
        "rss_after_expiry_mib": rss_after,
        "rss_growth_after_expiry_mib": round(rss_after - rss_before, 1),
        "rss_peak_mib": round(proc_status(os.getpid()).get("VmHWM", 0) / 1024, 1),
        "windows_peak": counters.windows_peak,
        "windows_after_expiry": len(scheduler.windows),
        "waiting_after_expiry": len(scheduler.waiting),
        "edits": counters.edits,
        "finals_landed": counters.finals_landed,
        "handovers": counters.handovers,
        "elapsed_s": round(elapsed, 1),
    }
    await scheduler.close()
    return figures


def git_state() -> dict[str, Any]:
    """The commit measured, and whether tracked files differed from it."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD") or "?",
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "cpus": os.cpu_count() or 0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--interactions", type=int, help="default 100,000 (2,000 with --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS / "scheduler_memory.json")
    args = parser.parse_args(argv)
    interactions = args.interactions or (2_000 if args.quick else 100_000)
    figures = asyncio.run(measure(interactions, warm_up=min(2_000, interactions)))
    figures["mode"] = "quick" if args.quick else "full"
    figures.update(git_state())
    print_figures(f"edit scheduler after {interactions:,} interactions, all expired", figures)
    path = write_results("scheduler_memory", figures, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
