"""Soak with faults: a steady stream of /sora requests (chat and videos formats) while both doubles misbehave, one
kill -9 of the bot and a restart in the middle; then the ledger is checked against what members saw.

    .venv/bin/python -m bench.soak            # full run (≤ 10 min: 5 min of load, then drain), bench/results/soak.json
    .venv/bin/python -m bench.soak --quick    # CI run (≈ 1 min)

Faults:
- upstream (per request, in the prompt): 429 and 500 on create, stalled and dropped streams, garbage, moderation,
  a job that fails halfway, an HTML page instead of the video, a poll answering 429 (videos format);
- Discord (at fixed points of the run): 429s on progress edits and on channel messages (one of them global), 500
  and 502 answers, a gateway reconnect (op 7, twice), a deleted progress message (twice), a member cancelling;
- the bot process is killed with SIGKILL halfway and started again (chat jobs are refunded and told, videos jobs
  resume, jobs still waiting for a slot run): the new process claims them once their leases expire;
- the database: another connection holds SQLite's write lock for 2 s, three times.

Afterwards, for every request: accepted (a generation exists) → it must have ended succeeded + charged + exactly one
result message, or failed/cancelled + refunded; refused → nothing reserved. Counted: `soak_lost` (accepted jobs
whose ledger disagrees with what the member got: succeeded with no video posted, failed but charged, or refunded
although the video was posted), `soak_double_charged` (a request charged more than once), `soak_delivered_twice`
(charged once, video posted twice), `soak_stuck` (still queued/running, or a reservation never settled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import BotSubprocess, World, environment, job_ids_from_text, print_figures, write_results  # noqa: E402
from storage import Database  # noqa: E402
from tests.discord_double import Channel, Member, Message  # noqa: E402

MODELS = '{"sora-2-pro": {"api_format": "videos"}}'  # sora-2: chat stream (not resumable); sora-2-pro: videos
CHAT_FAULTS = ("429", "500", "stall", "drop", "garbage", "moderation", "fail", "html")
VIDEOS_FAULTS = ("429", "500", "moderation", "moderation_late", "fail", "html", "poll429", "drop", "garbage")
EDIT_ROUTE = "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original"
SEND_ROUTE = "POST /channels/{channel_id}/messages"


@dataclass
class Sent:
    tag: int
    model: str
    fault: str | None
    channel: Channel
    member: Member
    at: float
    bot_alive: bool


@dataclass
class Soak:
    world: World
    args: argparse.Namespace
    rng: random.Random
    channels: list[Channel] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    bot: BotSubprocess | None = None
    bots: list[BotSubprocess] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    restarted_at: float | None = None
    killed_at: float | None = None
    ready_again_at: float | None = None

    def note(self, text: str) -> None:
        self.events.append(text)
        print(f"  [{time.monotonic() - self.started:6.1f} s] {text}", file=sys.stderr)

    started: float = 0.0

    async def start_bot(self) -> None:
        self.bot = await self.world.start_bot(
            ready_timeout=60,
            sora_models=MODELS,
            sora_poll_interval="0.2",
            sora_stall_timeout="3",
            sora_job_timeout="60",
            sora_retry_attempts="2",
            sora_max_concurrent_jobs="8",
            sora_edit_interval="1.0",
            sora_lease_seconds="3",  # a killed process's jobs are taken over within seconds
            log_level="INFO",
        )
        self.bots.append(self.bot)

    # --- load ------------------------------------------------------------------------------------------------

    async def send_one(self, tag: int) -> None:
        rng = self.rng
        videos = rng.random() < 0.4
        model = "sora-2-pro" if videos else "sora-2"
        fault = None
        if rng.random() < self.args.fault_share:
            fault = rng.choice(VIDEOS_FAULTS if videos else CHAT_FAULTS)
        steps = rng.randint(2, 8)
        directives = f"fake:steps={steps} fake:interval={rng.choice((0.1, 0.25, 0.4))}"
        if fault:
            directives += f" fake:{fault}"
        seconds = 10 if videos else rng.choice((4, 8, 10))
        channel = rng.choice(self.channels)
        member = rng.choice(self.members)
        prompt = f"soak job-{tag} {rng.choice(PROMPTS)} {directives}"
        await self.world.double.slash("sora", user=member, channel=channel, prompt=prompt, model=model, seconds=seconds)
        alive = self.bot is not None and self.bot.alive
        self.sent.append(Sent(tag, model, fault, channel, member, time.monotonic(), alive))

    async def load(self) -> None:
        tag = 0
        end = self.started + self.args.duration
        while time.monotonic() < end:
            await self.send_one(tag)
            tag += 1
            await asyncio.sleep(self.rng.expovariate(self.args.rate))

    # --- faults ----------------------------------------------------------------------------------------------

    def running_progress(self) -> list[tuple[Sent, Message]]:
        """Requests whose progress message exists and shows a running job."""
        found = []
        for sent in self.sent:
            interaction = self.world.interaction_of(sent.tag)
            message = interaction.original if interaction is not None else None
            if message is not None and not message.deleted and "sora:cancel:" in str(message.components):
                found.append((sent, message))
        return found

    async def some_running(self) -> list[tuple[Sent, Message]]:
        """Running jobs with their progress messages, waiting (bounded) for one if none runs right now."""
        for _ in range(20):
            running = self.running_progress()
            if running:
                return running
            await asyncio.sleep(0.25)
        return []

    async def delete_progress(self) -> None:
        running = await self.some_running()
        if running:
            sent, message = self.rng.choice(running)
            await self.world.double.delete_message(message)
            self.note(f"deleted the progress message of job-{sent.tag}")

    async def cancel_one(self) -> None:
        running = await self.some_running()
        if running:
            sent, message = self.rng.choice(running)
            custom_id = next(c for c in message.custom_ids() if c.startswith("sora:cancel:"))
            await self.world.double.click(message, custom_id, user=sent.member)
            self.note(f"job-{sent.tag}'s member pressed Cancel")

    async def lock_database(self, seconds: float = 2.0) -> None:
        """Another connection (a backup, an admin's sqlite3 shell) holds the write lock for a while."""

        def hold() -> None:
            with contextlib.closing(sqlite3.connect(self.world.db_path, isolation_level=None, timeout=30)) as conn:
                conn.execute("BEGIN IMMEDIATE")
                time.sleep(seconds)
                conn.execute("COMMIT")

        self.note(f"database write lock held by another connection for {seconds:.0f} s")
        await asyncio.to_thread(hold)

    async def restart(self) -> None:
        assert self.bot is not None
        await self.bot.kill()
        self.killed_at = time.monotonic()
        self.note("bot killed (SIGKILL)")
        await asyncio.sleep(1.0)
        self.restarted_at = time.monotonic()
        await self.start_bot()
        assert self.bot is not None
        self.ready_again_at = await self.bot.wait_line("logged in as")
        self.note("bot started again and ready")

    async def faults(self) -> None:
        double = self.world.double

        def say(text: str, action: Callable[[], Any]) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                action()
                self.note(text)

            return run

        plan: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            (0.08, say("Discord: 429 on the next 3 progress edits", lambda: double.inject_rate_limit(
                EDIT_ROUTE, retry_after=0.3, times=3))),
            (0.12, say("Discord: 500 on the next 2 channel messages", lambda: double.inject_error(
                SEND_ROUTE, status=500, times=2))),
            (0.18, say("Discord: 429 on the next 2 channel messages", lambda: double.inject_rate_limit(
                SEND_ROUTE, retry_after=0.5, times=2))),
            (0.22, self.lock_database),
            (0.25, say("Discord: gateway reconnect (op 7)", double.force_reconnect)),
            (0.30, self.delete_progress),
            (0.35, say("Discord: 502 on the next 2 progress edits", lambda: double.inject_error(
                EDIT_ROUTE, status=502, times=2))),
            (0.40, self.cancel_one),
            (0.50, self.restart),
            (0.56, self.lock_database),
            (0.62, self.delete_progress),
            (0.70, say("Discord: a global 429 on the next channel message", lambda: double.inject_rate_limit(
                SEND_ROUTE, retry_after=0.2, times=1, is_global=True))),
            (0.80, say("Discord: gateway reconnect (op 7)", double.force_reconnect)),
            (0.85, self.cancel_one),
            (0.88, self.lock_database),
            (0.90, say("Discord: 503 on the next progress edit", lambda: double.inject_error(
                EDIT_ROUTE, status=503, times=1))),
        ]  # fmt: skip
        for fraction, action in plan:
            await asyncio.sleep(max(0.0, self.started + fraction * self.args.duration - time.monotonic()))
            await action()

    def kind_of(self, problem: str) -> str:
        """Which known window a problem falls in (see BENCHMARKS.md), from the job's times."""
        tags = job_ids_from_text(problem)
        sent = next((x for x in self.sent if tags and x.tag == tags[0]), None)
        if sent is None or self.killed_at is None:
            return "other"
        if self.ready_again_at is not None and self.killed_at <= sent.at <= self.ready_again_at:
            return "accepted before on_ready after the restart"
        posted_part = problem.split("video posted at")[-1].split("; asked")[0]
        posted = [float(t) + self.started for t in re.findall(r"(\d+\.\d+)", posted_part)]
        if "video posted at" in problem and any(self.killed_at - 2.0 <= t <= self.killed_at for t in posted):
            return "killed between posting the video and recording it"
        return "other"

    # --- afterwards ------------------------------------------------------------------------------------------

    def unfinished(self) -> int:
        with sqlite3.connect(f"file:{self.world.db_path}?mode=ro", uri=True, timeout=10) as conn:
            (count,) = conn.execute(
            "SELECT COUNT(*) FROM generations WHERE status IN ('queued', 'running', 'delivering')"
        ).fetchone()
        return int(count)

    async def drain(self) -> float:
        """Wait (bounded) until no job is queued or running; returns how long it took."""
        started = time.monotonic()
        deadline = started + self.args.drain
        await asyncio.sleep(2.0)
        while time.monotonic() < deadline:
            if self.unfinished() == 0:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(3.0)  # final edits, threads
        return time.monotonic() - started


PROMPTS = (
    "a red fox in the snow",
    "timelapse of a city at night, neon @everyone",
    "**bold** _cat_ `code` ~~strike~~ on a skateboard",
    "un chat qui joue du piano",
    "一只在雪地里奔跑的小狐狸",
    "waves crashing on a lighthouse <@&123456789012345678>",
)


def results_by_job(world: World) -> dict[int, list[Message]]:
    found: dict[int, list[Message]] = {}
    for message in world.bot_messages():
        if message.deleted or not any(c.startswith("sora:remix:") for c in message.custom_ids()):
            continue
        for tag in set(job_ids_from_text(message.content)):
            found.setdefault(tag, []).append(message)
    return found


def told_of_failure(world: World, tag: int) -> bool:
    """A member whose job failed can see it: on the progress message, or in a message in the channel."""
    needle = f"job-{tag} "
    for message in world.bot_messages():
        text = f"{message.content} {message.embeds} "
        if message.interaction is not None and needle in str(message.interaction.data):
            text += " ".join(str(r.embeds) for r in message.history[-1:])
        if (needle in text or needle in f"{message.content} ") and ("refunded" in text or "credit" in text):
            return True
    return False


async def audit(soak: Soak) -> dict[str, Any]:
    world = soak.world
    async with Database.open(world.db_path) as db:
        rows = await db._fetchall(
            "SELECT g.id, g.prompt, g.status, g.error_kind, g.cost, l.state AS ledger, l.credits "
            "FROM generations AS g LEFT JOIN ledger AS l ON l.generation_id = g.id"
        )
        orphans = await db._fetchall(
            "SELECT l.id FROM ledger AS l LEFT JOIN generations AS g ON g.id = l.generation_id "
            "WHERE l.state = 'reserved' OR g.id IS NULL"
        )
    by_tag: dict[int, list[Any]] = {}
    for row in rows:
        for tag in set(job_ids_from_text(row["prompt"])):
            by_tag.setdefault(tag, []).append(row)
    results = results_by_job(world)
    outcome: Counter[str] = Counter()
    lost: list[str] = []
    double_charged: list[str] = []
    delivered_twice: list[str] = []
    stuck: list[str] = []
    untold: list[int] = []
    for sent in soak.sent:
        generations = by_tag.get(sent.tag, [])
        posted = len(results.get(sent.tag, []))
        interaction = world.interaction_of(sent.tag)
        if not generations:
            answered = interaction is not None and interaction.response_type is not None
            outcome["refused" if answered else "unanswered"] += 1
            if posted:
                lost.append(f"job-{sent.tag}: a video was posted without a generation")
            continue
        outcome["accepted"] += 1
        charged = [g for g in generations if g["ledger"] == "charged"]
        detail = ", ".join(
            f"generation {g['id']} {g['status']}/{g['ledger']} {g['error_kind'] or ''}" for g in generations
        )
        if posted:
            times = [f"{m.history[0].monotonic - soak.started:.2f}" for m in results[sent.tag]]
            detail += f"; video posted at {', '.join(times)} s"
        detail += f"; asked at {sent.at - soak.started:.2f} s"
        if soak.killed_at is not None:
            detail += f"; bot killed at {soak.killed_at - soak.started:.2f} s"

        if len(charged) > 1:
            double_charged.append(f"job-{sent.tag}: {len(charged)} charges, {posted} videos posted ({detail})")
        elif posted > 1:
            delivered_twice.append(f"job-{sent.tag}: charged once, {posted} videos posted ({detail})")
        for g in generations:
            status, ledger = g["status"], g["ledger"]
            outcome[f"{status}/{ledger}"] += 1
            if status in ("queued", "running", "delivering") or ledger == "reserved":
                stuck.append(f"job-{sent.tag}: generation {g['id']} {status}, ledger {ledger}")
            elif status == "succeeded":
                if ledger != "charged" or posted == 0:
                    lost.append(f"job-{sent.tag}: succeeded, ledger {ledger}, {posted} videos posted")
            elif ledger != "refunded":
                lost.append(f"job-{sent.tag}: {status} ({g['error_kind']}) but ledger {ledger}")
            elif posted:
                lost.append(f"job-{sent.tag}: {status} and refunded, yet a video was posted ({detail})")
            elif not told_of_failure(world, sent.tag):
                untold.append(sent.tag)
    stuck.extend(f"ledger row {row['id']} still reserved / without generation" for row in orphans)
    problems = lost + double_charged + delivered_twice + stuck
    kinds = Counter(soak.kind_of(line) for line in problems)
    for line in problems[:20]:
        print(f"  ! [{soak.kind_of(line)}] {line}", file=sys.stderr)
    requests = world.double.requests
    errors = [line for bot in soak.bots for line in bot.errors()]
    return {
        "soak_jobs": outcome["accepted"],
        "soak_lost": len(lost),
        "soak_double_charged": len(double_charged),
        "soak_stuck": len(stuck),
        "soak_delivered_twice": len(delivered_twice),
        "soak_requests": len(soak.sent),
        "soak_refused": outcome["refused"],
        "soak_unanswered": outcome["unanswered"],
        "soak_delivered": sum(1 for s in soak.sent if results.get(s.tag)),
        "soak_failed_untold": len(untold),
        "soak_outcomes": {k: v for k, v in sorted(outcome.items()) if "/" in k},
        "soak_orphan_reservations": len(orphans),
        "soak_discord_429": sum(1 for r in requests if r.status == 429),
        "soak_discord_5xx": sum(1 for r in requests if r.status >= 500),
        "soak_bot_errors_logged": len(errors),
        "soak_bot_restarts": len(soak.bots) - 1,
        "soak_problem_kinds": dict(kinds),
        "soak_problems": problems[:20],
        "soak_untold_jobs": untold[:20],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with World(steps=4, interval=0.25, validate_bodies=True, echo_bot=args.echo) as world:
        double = world.double
        soak = Soak(world, args, random.Random(args.seed))
        soak.channels = [double.channel] + [double.add_channel(name=f"soak-{i}") for i in range(1, args.channels)]
        soak.members = [double.add_member(name=f"member{i}") for i in range(args.members)]
        await world.open_guild(per_member=2)
        await soak.start_bot()
        soak.started = time.monotonic()
        print(f"soak: {args.duration:.0f} s of load at {args.rate}/s ...", file=sys.stderr)
        await asyncio.gather(soak.load(), soak.faults())
        soak.note("load over; draining")
        drained = await soak.drain()
        soak.note(f"drained in {drained:.1f} s ({soak.unfinished()} unfinished)")
        assert soak.bot is not None
        await soak.bot.stop()
        figures = await audit(soak)
        errors = [line for bot in soak.bots for line in bot.errors()]
        if errors:
            print("bot errors (first 10):\n  " + "\n  ".join(errors[:10]), file=sys.stderr)
    figures.update(
        {
            "soak_duration_s": args.duration,
            "soak_wall_s": round(time.monotonic() - soak.started, 1),
            "soak_events": soak.events,
            "mode": "quick" if args.quick else "full",
            **environment(),
        }
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI run: 15 s of load")
    parser.add_argument("--duration", type=float, help="seconds of load (default 300, 15 with --quick)")
    parser.add_argument("--rate", type=float, help="requests per second (default 1.5, 2 with --quick)")
    parser.add_argument("--drain", type=float, help="at most this many seconds to finish (default 150, 25 quick)")
    parser.add_argument("--fault-share", type=float, default=0.45, help="share of requests with an upstream fault")
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--members", type=int, default=80)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--echo", action="store_true", help="copy the bot's log to stderr")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.duration = args.duration or (15.0 if args.quick else 300.0)
    args.rate = args.rate or (2.0 if args.quick else 1.5)
    args.drain = args.drain or (25.0 if args.quick else 150.0)
    figures = asyncio.run(run(args))
    shown = {k: v for k, v in figures.items() if k not in ("soak_events", "soak_problems", "soak_untold_jobs")}
    print_figures(f"soak: {figures['soak_requests']} requests over {args.duration:.0f} s with faults:", shown)
    print(f"wrote {write_results('soak', figures, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
