"""Quota reservations under contention: 200 concurrent reservers on one guild, each reserving then charging or
refunding, against a real SQLite file. Prints reservations per second and latency percentiles, and writes
`bench/results/quota.json`.

    python bench/quota_bench.py            # full run
    python bench/quota_bench.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import environment  # noqa: E402
from storage import Database, NewGeneration, Reservation  # noqa: E402

log = logging.getLogger(__name__)

GUILD = 1
CHANNEL = 10
RESULTS = ROOT / "bench" / "results" / "quota.json"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


async def reserver(db: Database, user_id: int, rounds: int, latencies: list[float], outcome: dict[str, int]) -> None:
    for turn in range(rounds):
        request = NewGeneration(
            guild_id=GUILD, channel_id=CHANNEL, user_id=user_id, model="sora-2", prompt=f"bench {turn}", cost=1
        )
        started = time.perf_counter()
        result = await db.create_generation(request)
        latencies.append(time.perf_counter() - started)
        if not isinstance(result, Reservation):
            outcome["denied"] += 1
            continue
        outcome["granted"] += 1
        if turn % 2 == 0:
            await db.mark_succeeded(result.generation_id, result_url="https://cdn.example/v.mp4")
        else:
            await db.mark_failed(result.generation_id, "upstream", "bench refund")


async def run(reservers: int, rounds: int, path: Path) -> dict[str, float | int | str]:
    async with Database.open(path) as db:
        await db.set_default_allowance(GUILD, None)
        await db.set_budget(GUILD, reservers * rounds * 10)
        latencies: list[float] = []
        outcome = {"granted": 0, "denied": 0}
        started = time.perf_counter()
        await asyncio.gather(*(reserver(db, 1000 + i, rounds, latencies, outcome) for i in range(reservers)))
        elapsed = time.perf_counter() - started
        report = await db.usage_report(GUILD)
    attempts = len(latencies)
    assert report.jobs == outcome["granted"] and report.reserved == 0, "ledger out of step"
    return {
        "quota_reservations_per_s": round(attempts / elapsed, 1),
        "quota_p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "quota_p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "quota_max_ms": round(max(latencies) * 1000, 2),
        "reservers": reservers,
        "reservations": attempts,
        "granted": outcome["granted"],
        "denied": outcome["denied"],
        "elapsed_s": round(elapsed, 3),
        "charged_credits": report.charged,
        "refunded_credits": report.refunded,
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--reservers", type=int, default=200)
    parser.add_argument("--rounds", type=int, help="reservations per reserver (default 25, or 2 with --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 25)
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(args.reservers, rounds, Path(tmp) / "bench.sqlite3"))
    figures["mode"] = "quick" if args.quick else "full"
    figures.update(environment())
    print(
        f"{figures['reservations']} reservations by {figures['reservers']} concurrent reservers on one guild: "
        f"{figures['quota_reservations_per_s']} reservations/s, p50 {figures['quota_p50_ms']} ms, "
        f"p99 {figures['quota_p99_ms']} ms"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
