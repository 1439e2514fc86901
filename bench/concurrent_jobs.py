"""Launch day: 500 /sora jobs in flight across 20 channels of one guild, the fake gateway streaming progress every
0.5 s for 60 s. Measures what members see (edit rate and delay, delivery exactly once) and what the host pays
(event-loop lag, memory per job), with the real bot in its own process against the Discord double.

    .venv/bin/python bench/concurrent_jobs.py            # full run (≈ 3 min), writes bench/results/concurrent_jobs.json
    .venv/bin/python bench/concurrent_jobs.py --quick    # smoke run (≈ 20 s)

How the delay is measured: the fake gateway notes when it streamed each progress percent of each job (the jobs
carry a `job-N` tag in their prompt), the double notes when each edit of each progress message arrived and what
percent it shows. For every progress event, the delay is the time until the first edit showing that percent or a
later state — what a member waits to see it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RssSampler,
    World,
    environment,
    job_ids_from_text,
    percentile,
    print_figures,
    shown_percent,
    write_results,
)
from tests.discord_double import Message  # noqa: E402

WARMUP_TAG = 900_000


def result_messages_by_job(world: World) -> dict[int, list[Message]]:
    """Result messages (with the Remix button) by the job tag in their text."""
    found: dict[int, list[Message]] = {}
    for message in world.bot_messages():
        if message.deleted or not any(c.startswith("sora:remix:") for c in message.custom_ids()):
            continue
        for tag in set(job_ids_from_text(message.content)):
            found.setdefault(tag, []).append(message)
    return found


def edit_delays(world: World, tag: int, progress: Message | None) -> list[float]:
    """For each progress event of job `tag`: seconds until an edit showed that percent or a later state."""
    record = world.emitted.get(tag)
    if record is None or progress is None:
        return []
    revisions = [(r.monotonic, shown_percent(r.embeds), r) for r in progress.history]
    delays: list[float] = []
    for emitted_at, percent in record.progress:
        for at, shown, revision in revisions:
            if at < emitted_at:
                continue
            later_state = shown is None and "%" not in str(revision.embeds) and at > emitted_at
            if (shown is not None and shown >= percent) or (later_state and _is_final(revision.embeds)):
                delays.append(at - emitted_at)
                break
    return delays


def _is_final(embeds: list[dict[str, Any]]) -> bool:
    text = str(embeds)
    return "ready" in text.lower() or "→ https://" in text


async def run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    async with World(
        steps=args.steps, interval=args.progress_every, validate_bodies=args.validate, echo_bot=args.echo
    ) as world:
        double = world.double
        channels = [double.channel] + [double.add_channel(name=f"launch-{i}") for i in range(1, args.channels)]
        members = [double.add_member(name=f"member{i}") for i in range(args.jobs + args.warmup)]
        bot = await world.start_bot(
            sora_max_concurrent_jobs=str(min(1000, args.jobs + args.warmup)),
            sora_edit_interval=str(args.edit_interval),
            sora_stall_timeout="120",
            log_level="INFO",
        )
        sampler = RssSampler(bot.pid, period=0.1).start()

        # Warm up (first imports, first connections, caches), then take the baseline.
        for i in range(args.warmup):
            await double.slash(
                "sora",
                user=members[args.jobs + i],
                channel=channels[i % len(channels)],
                prompt=f"warm-up job-{WARMUP_TAG + i} fake:steps=2 fake:interval=0.1",
            )
        await double.wait_for(
            lambda: len([t for t in result_messages_by_job(world) if t >= WARMUP_TAG]) >= args.warmup,
            timeout=120,
            what="the warm-up results",
        )
        await asyncio.sleep(3.0)
        settle = time.monotonic()
        await asyncio.sleep(2.0)
        baseline_kib = statistics.median(sampler.between(settle, time.monotonic()))
        first_request = len(double.requests)

        # Launch: `jobs` /sora commands spread over `ramp` seconds.
        print(f"launching {args.jobs} jobs over {args.ramp:.0f} s ...", file=sys.stderr)
        launched = time.monotonic()
        for i in range(args.jobs):
            await double.slash(
                "sora",
                user=members[i],
                channel=channels[i % len(channels)],
                prompt=f"launch day job-{i} fake:steps={args.steps} fake:interval={args.progress_every}",
            )
            target = launched + args.ramp * (i + 1) / args.jobs
            await asyncio.sleep(max(0.0, target - time.monotonic()))
        all_launched = time.monotonic()

        def delivered_count() -> int:
            return len([t for t in result_messages_by_job(world) if t < WARMUP_TAG])

        last_progress = 0
        deadline = time.monotonic() + args.ramp + args.steps * args.progress_every + args.timeout
        while time.monotonic() < deadline and delivered_count() < args.jobs:
            await asyncio.sleep(1.0)
            count = delivered_count()
            if count != last_progress:
                print(f"  {time.monotonic() - launched:6.1f} s: {count} delivered", file=sys.stderr)
                last_progress = count
        finished = time.monotonic()
        await asyncio.sleep(2.0)  # let trailing edits (final states) land before counting
        await sampler.stop()

        # --- figures --------------------------------------------------------------------------------------
        results = result_messages_by_job(world)
        tags = range(args.jobs)
        delivered = sum(1 for t in tags if results.get(t))
        delivered_twice = sum(1 for t in tags if len(results.get(t, [])) > 1)
        requests = double.requests[first_request:]
        http_429 = sum(1 for r in requests if r.status == 429)
        routes_429 = Counter(f"{r.method} {r.route}" for r in requests if r.status == 429)
        if routes_429:
            token_of = {r.path: r for r in requests if r.status == 429}
            for path in list(token_of)[:3]:
                same = [(round(r.monotonic - launched, 3), r.status) for r in requests if r.path == path]
                print(f"429 on {path[:60]}...: {same}", file=sys.stderr)
        unknown_interaction = sum(1 for r in requests if r.code == 10062)

        delays: list[float] = []
        edits_per_message: list[float] = []
        ideal_per_message: list[float] = []
        tightest_gap = float("inf")
        for tag in tags:
            interaction = world.interaction_of(tag)
            progress = interaction.original if interaction is not None else None
            delays.extend(edit_delays(world, tag, progress))
            record = world.emitted.get(tag)
            if progress is None or record is None or not record.progress or record.done is None:
                continue
            start, end = record.progress[0][0], record.done
            times = [r.monotonic for r in progress.history if start <= r.monotonic <= end + args.edit_interval]
            edits_per_message.append(len(times))
            ideal_per_message.append((end - start) / args.edit_interval)
            gaps = [b - a for a, b in itertools.pairwise(times)]
            if gaps:
                tightest_gap = min(tightest_gap, min(gaps))

        done_times = [r.done for t, r in world.emitted.items() if t < WARMUP_TAG and r.done is not None]
        in_flight_from = all_launched + 1.0
        in_flight_to = min(done_times) if done_times else finished
        if in_flight_to - in_flight_from < 2.0:  # short jobs (smoke runs): they never were all in flight at once
            in_flight_from, in_flight_to = launched, finished
        in_flight_rss = sampler.between(in_flight_from, in_flight_to)
        rss_in_flight_kib = statistics.median(in_flight_rss) if in_flight_rss else 0.0
        lag_all = bot.lag_samples(launched, finished)
        lag_in_flight = bot.lag_samples(in_flight_from, in_flight_to)
        after_done = [
            results[t][0].history[0].monotonic - world.emitted[t].done  # type: ignore[operator]
            for t in tags
            if results.get(t) and t in world.emitted and world.emitted[t].done is not None
        ]
        figures = {
            "jobs": args.jobs,
            "channels": args.channels,
            "delivered": delivered,
            "delivered_twice": delivered_twice,
            "http_429": http_429,
            "http_429_routes": dict(routes_429),
            "interactions_expired_10062": unknown_interaction,
            "edit_interval_s": args.edit_interval,
            "progress_every_s": args.progress_every,
            "edits_per_message_mean": round(statistics.mean(edits_per_message), 1) if edits_per_message else 0,
            "edits_per_message_ideal": round(statistics.mean(ideal_per_message), 1) if ideal_per_message else 0,
            "edit_gap_min_s": round(tightest_gap, 3) if tightest_gap != float("inf") else None,
            "edit_delay_p50_s": round(percentile(delays, 50), 3),
            "edit_delay_p95_s": round(percentile(delays, 95), 3),
            "edit_delay_max_s": round(max(delays), 3) if delays else 0,
            "progress_events_measured": len(delays),
            "result_after_done_p50_s": round(percentile(after_done, 50), 2),
            "result_after_done_p95_s": round(percentile(after_done, 95), 2),
            "loop_lag_p99_ms": round(percentile(lag_all, 99), 1),
            "loop_lag_p99_in_flight_ms": round(percentile(lag_in_flight, 99), 1),
            "loop_lag_max_ms": round(max(lag_all), 1) if lag_all else 0,
            "rss_baseline_mib": round(baseline_kib / 1024, 1),
            "rss_in_flight_mib": round(rss_in_flight_kib / 1024, 1),
            "rss_peak_mib": round(sampler.peak_kib / 1024, 1),
            "rss_per_job_kib": round((rss_in_flight_kib - baseline_kib) / args.jobs, 1),
            "discord_requests": len(requests),
            "wall_s": round(finished - launched, 1),
            "bot_errors_logged": len(bot.errors()),
            "bodies_validated": args.validate,
            "mode": "quick" if args.quick else "full",
            **environment(),
        }
        if bot.errors():
            print("bot errors (first 10):\n  " + "\n  ".join(bot.errors()[:10]), file=sys.stderr)
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (30 jobs, 3 channels, 3 s)")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--channels", type=int)
    parser.add_argument("--steps", type=int, help="progress events per job")
    parser.add_argument("--progress-every", type=float, default=0.5, help="seconds between progress events")
    parser.add_argument("--edit-interval", type=float, default=1.5, help="SORA_EDIT_INTERVAL")
    parser.add_argument("--ramp", type=float, help="seconds over which the jobs are started")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0, help="extra seconds allowed for delivery")
    parser.add_argument(
        "--validate",
        action=argparse.BooleanOptionalAction,
        help="check every request body against Discord's OpenAPI spec in the double (default: only with --quick; "
        "at full scale the checks cost the benchmark's process a core and slow the fake gateway's pacing)",
    )
    parser.add_argument("--echo", action="store_true", help="copy the bot's log to stderr")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (30 if args.quick else 500)
    args.channels = args.channels or (3 if args.quick else 20)
    args.steps = args.steps or (6 if args.quick else 120)
    args.ramp = args.ramp if args.ramp is not None else (2.0 if args.quick else 10.0)
    if args.validate is None:
        args.validate = args.quick
    if args.quick:
        args.timeout = min(args.timeout, 60.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = asyncio.run(run(args))
    print_figures(
        f"{figures['jobs']} concurrent jobs in {figures['channels']} channels, progress every "
        f"{figures['progress_every_s']} s:",
        figures,
    )
    print(f"wrote {write_results('concurrent_jobs', figures, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
