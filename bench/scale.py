"""Several processes on PostgreSQL: one bot process vs two (shards 0 and 1 of 2) serving 4 guilds (two per shard)
against the Discord double, then a takeover (SIGKILL one of the two mid-jobs), then quota reservations under
contention on PostgreSQL and on SQLite. Writes `bench/results/scale.json`.

    .venv/bin/python bench/scale.py            # full run (≈ 4 min)
    .venv/bin/python bench/scale.py --quick    # smoke run

Capacity at the same loop lag: the one process gets `jobs / 2` jobs over the ramp, the two processes get `jobs`
over the same ramp (twice the rate, one half each). `capacity_ratio` is the delivered rate of the two divided by
the delivered rate of the one, reported beside both loop lags: a ratio near 2 with the two processes' lag no worse
than the one's means the second process doubled what the bot can serve. The PostgreSQL server comes from
`SORA_BENCH_POSTGRES_URL` (default: the local one, postgres@127.0.0.1:5432/test); each run creates its own
database there and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import quota_bench  # noqa: E402
from bench.common import BotSubprocess, World, environment, percentile, print_figures, write_results  # noqa: E402
from storage import Database  # noqa: E402
from tests.discord_double import Channel, Guild, Member  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
LEASE_SECONDS = 3.0


@contextlib.asynccontextmanager
async def scratch_postgres(server_url: str) -> AsyncIterator[str]:
    name = f"sora_bench_{os.getpid()}_{secrets.token_hex(3)}"
    conn = await asyncpg.connect(server_url, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        conn = await asyncpg.connect(server_url, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


class Fleet:
    """4 guilds on 2 shards in the double, and their members and channels."""

    def __init__(self, world: World, channels_per_guild: int) -> None:
        double = world.double
        self.guilds: list[Guild] = [
            double.add_guild(
                f"shard{shard}-{n}", shard=(shard, 2), channels=[f"c{i}" for i in range(channels_per_guild)]
            )
            for shard in (0, 1)
            for n in range(2)
        ]
        self.members: dict[int, list[Member]] = {g.id: [] for g in self.guilds}
        self.world = world

    def member(self, guild: Guild, index: int) -> Member:
        members = self.members[guild.id]
        while len(members) <= index:
            members.append(self.world.double.add_member(guild, f"m{len(members)}"))
        return members[index]

    def channels(self, guild: Guild) -> list[Channel]:
        return guild.text_channels

    @property
    def guild_ids(self) -> str:
        return ",".join(str(g.id) for g in self.guilds)


async def open_guilds(url: str, fleet: Fleet) -> None:
    async with Database.open(url) as db:
        for guild in fleet.guilds:
            await db.set_default_allowance(guild.id, None)
            await db.set_concurrency(guild.id, per_member=1000, per_guild=None)


def bot_settings(url: str, fleet: Fleet, shard_ids: str, args: argparse.Namespace) -> dict[str, str]:
    return {
        "sora_database_url": url,
        "discord_guild_ids": fleet.guild_ids,
        "sora_shard_count": "2",
        "sora_shard_ids": shard_ids,
        "sora_identify_interval": "0.5",
        "sora_max_concurrent_jobs": "1000",
        "sora_lease_seconds": str(LEASE_SECONDS),
        "sora_edit_interval": "1.5",
        "sora_stall_timeout": "120",
        "log_level": "INFO",
    }


async def launch(world: World, fleet: Fleet, tag: str, jobs: int, ramp: float, args: argparse.Namespace) -> float:
    started = time.monotonic()
    for i in range(jobs):
        guild = fleet.guilds[i % len(fleet.guilds)]
        channels = fleet.channels(guild)
        await world.double.slash(
            "sora",
            user=fleet.member(guild, i // len(fleet.guilds)),
            channel=channels[(i // len(fleet.guilds)) % len(channels)],
            prompt=f"{tag} {i} fake:steps={args.steps} fake:interval={args.interval}",
        )
        await asyncio.sleep(max(0.0, started + ramp * (i + 1) / jobs - time.monotonic()))
    return started


async def settled_count(url: str) -> tuple[int, int]:
    async with Database.open(url) as db:
        done = await db._fetchone(
            "SELECT COUNT(*) AS n, SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS ok FROM generations "
            "WHERE status NOT IN ('queued', 'running', 'delivering')"
        )
    return (int(done["n"] or 0), int(done["ok"] or 0)) if done is not None else (0, 0)


async def wait_settled(url: str, jobs: int, timeout: float) -> float:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count, _ = await settled_count(url)
        if count >= jobs:
            break
        await asyncio.sleep(0.5)
    return time.monotonic()


def deliveries(world: World, first_message: int) -> Counter[int]:
    """Result messages per generation id, counting only messages posted in this phase."""
    found: Counter[int] = Counter()
    for message in world.bot_messages():
        if message.id <= first_message or message.deleted:
            continue
        for custom_id in message.custom_ids():
            if custom_id.startswith("sora:remix:"):
                found[int(custom_id.rsplit(":", 1)[1])] += 1
                break
    return found


async def serve(
    world: World, fleet: Fleet, url: str, shard_slices: list[str], jobs: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Start one process per slice, run `jobs` jobs over the ramp, stop them; what it took."""
    await open_guilds(url, fleet)
    bots = [await world.start_bot(**bot_settings(url, fleet, ids, args)) for ids in shard_slices]
    first_request = len(world.double.requests)
    first_message = max(world.double.world.messages, default=0)
    started = await launch(world, fleet, f"serve{len(bots)}", jobs, args.ramp, args)
    finished = await wait_settled(url, jobs, args.ramp + args.steps * args.interval + 120)
    _, succeeded = await settled_count(url)
    per_job = deliveries(world, first_message)
    requests = world.double.requests[first_request:]
    lags = [bot.lag_samples(started, finished) for bot in bots]
    for bot in bots:
        await bot.stop()
    return {
        "jobs": jobs,
        "succeeded": succeeded,
        "delivered": len(per_job),
        "delivered_twice": sum(1 for n in per_job.values() if n > 1),
        "wall_s": finished - started,
        "rate": len(per_job) / (finished - started),
        "http_429": sum(1 for r in requests if r.status == 429),
        "lag_p99_ms": max(percentile(lag, 99) for lag in lags),
        "errors": sum(len(bot.errors()) for bot in bots),
    }


async def takeover(world: World, fleet: Fleet, url: str, jobs: int, args: argparse.Namespace) -> dict[str, Any]:
    """Two processes; SIGKILL the first once every job reached the gateway; how long until the second held each
    of its jobs, and what Discord saw meanwhile."""
    await open_guilds(url, fleet)
    # The videos format: a task the survivor can poll again (a chat stream can't be resumed, only refunded).
    bots: list[BotSubprocess] = [
        await world.start_bot(**bot_settings(url, fleet, ids, args), sora_api_format="videos") for ids in ("0", "1")
    ]
    first_request = len(world.double.requests)
    first_message = max(world.double.world.messages, default=0)
    long_steps = max(args.steps, int((LEASE_SECONDS * 4) / args.interval))
    started = time.monotonic()
    for i in range(jobs):
        guild = fleet.guilds[i % len(fleet.guilds)]
        channels = fleet.channels(guild)
        await world.double.slash(
            "sora",
            user=fleet.member(guild, 10_000 + i),
            channel=channels[i % len(channels)],
            prompt=f"takeover {i} fake:steps={long_steps} fake:interval={args.interval}",
        )
    async with Database.open(url) as db:
        while True:
            rows = await db._fetchall("SELECT id, task_id, lease_owner, guild_id FROM generations WHERE id > 0")
            mine = [r for r in rows if r["task_id"] is not None]
            if len(mine) >= jobs or time.monotonic() - started > 60:
                break
            await asyncio.sleep(0.2)
        shard0 = {r["id"]: r["lease_owner"] for r in rows if (r["guild_id"] >> 22) % 2 == 0}
        killed_at = time.monotonic()
        await bots[0].kill()
        taken: dict[int, float] = {}
        while len(taken) < len(shard0) and time.monotonic() - killed_at < LEASE_SECONDS + 30:
            for row in await db._fetchall("SELECT id, lease_owner, status FROM generations"):
                if row["id"] in shard0 and row["id"] not in taken and row["lease_owner"] != shard0[row["id"]]:
                    taken[row["id"]] = time.monotonic() - killed_at
            await asyncio.sleep(0.05)
    finished = await wait_settled(url, jobs, long_steps * args.interval + 60)
    per_job = deliveries(world, first_message)
    window_end = killed_at + max(taken.values(), default=0.0) + 5.0
    requests = world.double.requests[first_request:]
    outside = [r for r in requests if r.status == 429 and not killed_at <= r.monotonic <= window_end]
    inside = [r for r in requests if r.status == 429 and killed_at <= r.monotonic <= window_end]
    _, succeeded = await settled_count(url)
    await bots[1].stop()
    return {
        "jobs": jobs,
        "of_the_killed_process": len(shard0),
        "taken_over": len(taken),
        "takeover_p50_s": percentile(list(taken.values()), 50),
        "takeover_p95_s": percentile(list(taken.values()), 95),
        "succeeded": succeeded,
        "delivered": len(per_job),
        "delivered_twice": sum(1 for n in per_job.values() if n > 1),
        "http_429_outside": len(outside),
        "http_429_inside": len(inside),
        "wall_s": finished - started,
    }


async def quota_figures(url: str, args: argparse.Namespace) -> dict[str, float]:
    rounds = 2 if args.quick else 10
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = await quota_bench.run(args.reservers, rounds, Path(tmp) / "quota.sqlite3")
    async with scratch_postgres(url) as pg_url:
        postgres = await quota_bench.run(args.reservers, rounds, pg_url)  # type: ignore[arg-type]
    return {
        "quota_reservers": args.reservers,
        "quota_reservations_per_s_postgres": postgres["quota_reservations_per_s"],
        "quota_p99_ms_postgres": postgres["quota_p99_ms"],
        "quota_reservations_per_s_sqlite": sqlite["quota_reservations_per_s"],
        "quota_p99_ms_sqlite": sqlite["quota_p99_ms"],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = os.environ.get("SORA_BENCH_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    async with World(steps=args.steps, interval=args.interval, validate_bodies=False, echo_bot=args.echo) as world:
        fleet = Fleet(world, args.channels)
        async with scratch_postgres(server) as url:
            one = await serve(world, fleet, url, ["0,1"], args.jobs // 2, args)
        print(f"1 process: {one}", file=sys.stderr)
        async with scratch_postgres(server) as url:
            two = await serve(world, fleet, url, ["0", "1"], args.jobs, args)
        print(f"2 processes: {two}", file=sys.stderr)
        async with scratch_postgres(server) as url:
            moved = await takeover(world, fleet, url, args.takeover_jobs, args)
        print(f"takeover: {moved}", file=sys.stderr)
    quota = await quota_figures(server, args)
    return {
        "jobs": two["jobs"],
        "delivered": two["delivered"],
        "delivered_twice": two["delivered_twice"] + one["delivered_twice"] + moved["delivered_twice"],
        "capacity_ratio": round(two["rate"] / one["rate"], 2) if one["rate"] else 0.0,
        "rate_one_process_jobs_per_s": round(one["rate"], 2),
        "rate_two_processes_jobs_per_s": round(two["rate"], 2),
        "loop_lag_p99_ms_one_process": round(one["lag_p99_ms"], 1),
        "loop_lag_p99_ms_two_processes": round(two["lag_p99_ms"], 1),
        "jobs_one_process": one["jobs"],
        "delivered_one_process": one["delivered"],
        "http_429_one_process": one["http_429"],
        "http_429_two_processes": two["http_429"],
        "takeover_jobs": moved["jobs"],
        "takeover_jobs_of_the_killed_process": moved["of_the_killed_process"],
        "takeover_taken_over": moved["taken_over"],
        "takeover_p50_s": round(moved["takeover_p50_s"], 2),
        "takeover_p95_s": round(moved["takeover_p95_s"], 2),
        "takeover_delivered": moved["delivered"],
        "takeover_succeeded": moved["succeeded"],
        "lease_seconds": LEASE_SECONDS,
        "http_429_outside_takeover": one["http_429"] + two["http_429"] + moved["http_429_outside"],
        "http_429_in_takeover_window": moved["http_429_inside"],
        "bot_errors_logged": one["errors"] + two["errors"],
        **quota,
        "mode": "quick" if args.quick else "full",
        **environment(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--jobs", type=int, help="jobs for the two processes (the one gets half); default 1000")
    parser.add_argument("--ramp", type=float, help="seconds over which the jobs arrive (default 60)")
    parser.add_argument("--channels", type=int, default=5, help="channels per guild")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between progress events")
    parser.add_argument("--takeover-jobs", type=int, help="jobs in flight at the kill (default 100)")
    parser.add_argument("--reservers", type=int, default=200)
    parser.add_argument("--echo", action="store_true", help="print the bot processes' logs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (40 if args.quick else 1000)
    args.ramp = args.ramp or (5.0 if args.quick else 60.0)
    args.takeover_jobs = args.takeover_jobs or (8 if args.quick else 100)
    if args.quick:
        args.steps, args.interval, args.reservers = 2, 0.2, 50
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = asyncio.run(run(args))
    print_figures("scale: one process vs two on PostgreSQL, takeover, quota contention", figures)
    path = write_results("scale", figures, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
