"""Start-up: time from process start to ready with 10,000 stored generations, 100 of them unfinished (50 resumable
videos-format jobs, 50 chat-stream jobs that must be refunded and told), against the Discord double.

    .venv/bin/python bench/startup.py            # full run (≈ 1–2 min incl. seeding), writes bench/results/startup.json
    .venv/bin/python bench/startup.py --quick    # smoke run (1,000 generations, 10 unfinished)

- `startup_s`: process start → the bot logged in and its guild cache is ready (`on_ready`), median of `--runs`.
- `startup_resumed_s`: process start → every unfinished job was handled (a new progress message for each resumed
  one, a "couldn't be picked up, refunded" notice for each other one), median.
- `startup_empty_s`: the same bot with an empty database, for comparison.

The database is seeded once with the storage functions (a template file copied for each run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import World, environment, print_figures, write_results  # noqa: E402
from bot.fake_upstream.app import FakeVideo, Scenario  # noqa: E402
from storage import Database, NewGeneration, Reservation  # noqa: E402

GUILD_PLACEHOLDER = 1
CHANNELS = 20
MODELS = json.dumps({"sora-2-pro": {"api_format": "videos"}})  # sora-2 stays chat (not resumable)


async def seed_history(path: Path, generations: int, guild_id: int) -> float:
    """`generations` finished jobs of 500 members over 20 channels; remix chains; 90 % succeeded."""
    started = time.monotonic()
    rng = random.Random(6)
    async with Database.open(path) as db:
        await db.set_default_allowance(guild_id, None)
        await db.set_concurrency(guild_id, per_member=1000, per_guild=None)
        previous: dict[int, int] = {}
        for index in range(generations):
            user = 1000 + rng.randrange(500)
            parent = previous.get(user) if rng.random() < 0.3 else None
            new = NewGeneration(
                guild_id=guild_id,
                channel_id=10_000 + rng.randrange(CHANNELS),
                user_id=user,
                model=rng.choice(("sora-2", "sora-2-pro", "veo-3.1")),
                prompt=f"stored generation {index}: a lighthouse in a storm, seen from a boat, cinematic " * 2,
                cost=1,
                seconds=10,
                size="1280x720",
                parent_id=parent,
                locale="en-US",
            )
            reserved = await db.create_generation(new)
            assert isinstance(reserved, Reservation), reserved
            if rng.random() < 0.9:
                await db.mark_succeeded(
                    reserved.generation_id,
                    result_url=f"https://cdn.example/{index}.mp4",
                    result_bytes=4_000_000,
                    assistant_text="> 生成完成 ✅\n[视频文件](https://cdn.example/x.mp4)",
                    task_id=f"task_{index:06d}",
                    result_message_id=2_000_000 + index,
                )
                previous[user] = reserved.generation_id
            else:
                await db.mark_failed(reserved.generation_id, "upstream", "render node crashed")
    return time.monotonic() - started


async def seed_unfinished(world: World, unfinished: int, channel_ids: list[int]) -> None:
    """Jobs a crashed bot left running: half resumable (videos format, the fake knows the task), half not."""
    async with Database.open(world.db_path) as db:
        for index in range(unfinished):
            resumable = index % 2 == 0
            new = NewGeneration(
                guild_id=world.double.guild.id,
                channel_id=channel_ids[index % len(channel_ids)],
                user_id=5000 + index,
                model="sora-2-pro" if resumable else "sora-2",
                api_format="videos" if resumable else "chat",
                prompt=f"unfinished job {index} fake:steps=4 fake:interval=0.25",
                cost=1,
                seconds=10,
                size="1280x720",
                locale="en-US",
            )
            reserved = await db.create_generation(new)
            assert isinstance(reserved, Reservation), reserved
            await db.mark_running(reserved.generation_id)
            task_id = f"video_start_{index:04d}" if resumable else f"task_start_{index:04d}"
            await db.set_task_id(reserved.generation_id, task_id, resumable=resumable)
            await db.update_generation_progress(reserved.generation_id, 40.0)
            if resumable:
                world.fake.state.videos[task_id] = FakeVideo(
                    id=task_id, prompt=new.prompt, model="sora-2-pro", scenario=Scenario(4, 0.25), seconds=10
                )


def unfinished_left(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM generations WHERE status IN ('queued', 'running', 'delivering')"
        ).fetchone()
    return int(count)


async def one_start(template: Path | None, unfinished: int, echo: bool = False) -> dict[str, float]:
    async with World(steps=4, interval=0.25, echo_bot=echo) as world:
        double = world.double
        channels = [double.channel] + [double.add_channel(name=f"ch-{i}") for i in range(1, CHANNELS)]
        if template is not None:
            async with Database.open(template) as db:  # the guild id is only known now: move the settings over
                settings = await db.get_guild_settings(GUILD_PLACEHOLDER)
            shutil.copy(template, world.db_path)
            async with Database.open(world.db_path) as db:
                await db.set_default_allowance(double.guild.id, settings.default_allowance)
                await db.set_concurrency(double.guild.id, per_member=1000, per_guild=None)
            await seed_unfinished(world, unfinished, [c.id for c in channels])
        bot_user = double.bot_user.id
        bot = await world.start_bot(ready_timeout=120, sora_models=MODELS, sora_poll_interval="0.25")
        ready = await bot.wait_line("logged in as", 120)

        def handled() -> bool:
            """Every unfinished job is visibly picked up: a new progress message (or already its video) for a
            resumed one, a "restarted, refunded" notice for the others. Each shows the job's prompt."""
            shown = " ".join(
                f"{m.content} {m.embeds}" for m in list(double.world.messages.values()) if m.author.id == bot_user
            )
            return all(f"unfinished job {i} " in shown for i in range(unfinished))

        resumed = ready
        if template is not None and unfinished:
            await double.wait_for(handled, timeout=180, what="every unfinished job handled")
            resumed = time.monotonic()
            # Let the resumed jobs finish before stopping: stopping in the middle is another benchmark.
            await double.wait_for(lambda: unfinished_left(world.db_path) == 0, timeout=120, what="resumed jobs done")
        figures = {"ready_s": ready - bot.started_at, "resumed_s": resumed - bot.started_at}
        await bot.stop()
        if bot.errors():
            print("bot errors:\n  " + "\n  ".join(bot.errors()[:10]), file=sys.stderr)
        figures["errors"] = float(len(bot.errors()))
    return figures


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sora-startup-") as tmp:
        template = Path(tmp) / "template.sqlite3"
        stored = args.generations - args.unfinished
        print(f"seeding {stored} finished generations ...", file=sys.stderr)
        seed_s = await seed_history(template, stored, GUILD_PLACEHOLDER)
        empty = [await one_start(None, 0, args.echo) for _ in range(args.runs)]
        seeded = [await one_start(template, args.unfinished, args.echo) for _ in range(args.runs)]
    return {
        "startup_s": round(statistics.median(r["ready_s"] for r in seeded), 2),
        "startup_resumed_s": round(statistics.median(r["resumed_s"] for r in seeded), 2),
        "startup_empty_s": round(statistics.median(r["ready_s"] for r in empty), 2),
        "stored_generations": args.generations,
        "unfinished_jobs": args.unfinished,
        "runs": args.runs,
        "seed_s": round(seed_s, 1),
        "bot_errors_logged": int(sum(r["errors"] for r in seeded + empty)),
        "mode": "quick" if args.quick else "full",
        **environment(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 generations, 10 unfinished, 1 run")
    parser.add_argument("--generations", type=int, help="stored generations in all (default 10,000)")
    parser.add_argument("--unfinished", type=int, help="of which unfinished (default 100)")
    parser.add_argument("--runs", type=int, help="starts to take the median of (default 3)")
    parser.add_argument("--echo", action="store_true", help="copy the bot's log to stderr")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.generations = args.generations or (1000 if args.quick else 10_000)
    args.unfinished = args.unfinished if args.unfinished is not None else (10 if args.quick else 100)
    args.runs = args.runs or (1 if args.quick else 3)
    figures = asyncio.run(run(args))
    print_figures(f"start-up with {args.generations} stored generations, {args.unfinished} unfinished:", figures)
    print(f"wrote {write_results('startup', figures, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
