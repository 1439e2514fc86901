"""`sora-bot run` with an event-loop lag probe: what the benchmarks start as the bot's process.

Same settings (environment), same entry point (`bot.launcher.start`), plus one task in the bot's event loop that
sleeps `PERIOD` seconds over and over and records how late it wakes up. Every second the samples of that second
are appended to `$BENCH_LAG_FILE` as one JSON line `{"samples": [[monotonic, lag_ms], ...]}`, so they survive a
kill -9.

    python -m bench.botproc        # settings from the environment, like `sora-bot run`
    BENCH_PROFILE=/tmp/bot.prof python -m bench.botproc    # the same under cProfile (stats written on exit)
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import json
import logging
import os
import sys
import time
from pathlib import Path

from bot import launcher
from bot.config import ConfigError, Settings, load_settings
from bot.log import setup_logging

PERIOD = 0.02  # seconds between wake-ups
FLUSH_EVERY = 1.0

log = logging.getLogger("bench.botproc")


async def lag_probe(path: Path) -> None:
    samples: list[list[float]] = []
    last_flush = time.monotonic()
    with path.open("a", encoding="utf-8") as out:
        try:
            while True:
                before = time.monotonic()
                await asyncio.sleep(PERIOD)
                now = time.monotonic()
                samples.append([round(now, 4), round(max(0.0, now - before - PERIOD) * 1000, 3)])
                if now - last_flush >= FLUSH_EVERY:
                    out.write(json.dumps({"samples": samples}) + "\n")
                    out.flush()
                    samples, last_flush = [], now
        finally:
            if samples:
                out.write(json.dumps({"samples": samples}) + "\n")


async def run(settings: Settings, lag_file: Path | None) -> None:
    probe = asyncio.create_task(lag_probe(lag_file), name="lag-probe") if lag_file else None
    try:
        await launcher.start(settings)
    finally:
        if probe is not None:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe


def main() -> int:
    try:
        settings = load_settings(None)
        settings.require_discord()
        settings.require_upstream()
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.secrets())
    lag_file = os.environ.get("BENCH_LAG_FILE")
    profile_to = os.environ.get("BENCH_PROFILE")  # a path: profile the whole run with cProfile, stats written there
    profiler = cProfile.Profile() if profile_to else None
    if profiler is not None:
        profiler.enable()
    try:
        asyncio.run(run(settings, Path(lag_file) if lag_file else None))
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        if profiler is not None and profile_to:
            profiler.disable()
            profiler.dump_stats(profile_to)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
