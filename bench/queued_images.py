"""Queued jobs with reference images: the bot's memory while 8 jobs, each with a 9 MiB image, wait for a slot
behind one long job (`SORA_MAX_CONCURRENT_JOBS=1`). Waiting jobs keep their images in temp files, not in memory.

    .venv/bin/python bench/queued_images.py            # writes bench/results/queued_images.json
    .venv/bin/python bench/queued_images.py --quick    # smoke run (2 jobs, 2 MiB images)

- `queued_images_rss_growth_mib`: the bot process's RSS (VmRSS) once every job shows "Waiting for a free slot",
  minus its RSS before the first request; `queued_images_mib`: the images' total size, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import World, environment, print_figures, proc_status, write_results  # noqa: E402
from tests.discord_double import Upload  # noqa: E402

MIB = 1024 * 1024


def noise_png(size: int) -> bytes:
    """A valid RGB PNG of about `size` bytes: random pixels, stored without compression."""
    width = 1024
    height = max(1, size // (width * 3 + 1))
    raw = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 0)) + chunk(b"IEND", b"")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with World(steps=3, interval=0.1) as world:
        double = world.double
        await world.open_guild()
        bot = await world.start_bot(sora_max_concurrent_jobs="1", sora_max_image_mb="10", log_level="INFO")
        first = double.add_member(name="first")
        await double.slash("sora", user=first, prompt="the long one fake:steps=600 fake:interval=0.1")
        await asyncio.sleep(1.0)
        before = proc_status(bot.pid)["VmRSS"]
        image = noise_png(args.image_mib * MIB)
        handles = []
        for number in range(args.jobs):
            member = double.add_member(name=f"waiting-{number}")
            upload = Upload(f"ref-{number}.png", image, "image/png")
            handles.append(await double.slash("sora", user=member, prompt=f"waiting {number}", image=upload))
        for handle in handles:
            await handle.wait_original(lambda m: "Waiting for a free slot" in str(m.embeds), timeout=60)
        await asyncio.sleep(1.0)
        after = proc_status(bot.pid)["VmRSS"]
        errors = bot.errors()
    return {
        "queued_images_rss_growth_mib": round((after - before) / 1024, 1),
        "queued_images_mib": round(args.jobs * len(image) / MIB, 1),
        "queued_image_jobs": args.jobs,
        "bot_errors_logged": len(errors),
        "mode": "quick" if args.quick else "full",
        **environment(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 jobs, 2 MiB images")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--image-mib", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (2 if args.quick else 8)
    args.image_mib = args.image_mib or (2 if args.quick else 9)
    figures = asyncio.run(run(args))
    print_figures("queued jobs with images:", figures)
    print(f"wrote {write_results('queued_images', figures, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
