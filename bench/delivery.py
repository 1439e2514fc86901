"""Delivery: the bot's memory while it fetches and posts a 9 MiB video (attached: the guild's limit is 10 MiB) and a
200 MiB one (too big: posted as a link), and how much time the bot adds to the bare download + upload of the
same bytes.

    .venv/bin/python bench/delivery.py            # full run (≈ 1 min), writes bench/results/delivery.json
    .venv/bin/python bench/delivery.py --quick    # smoke run

- Memory: the bot runs in its own process; its peak RSS (VmHWM, reset before each delivery, and a 10 ms VmRSS
  sampler) minus its RSS just before. Streaming to a temporary file keeps this flat whatever the video's size.
- Overhead: from the moment the fake gateway streamed "done" to the moment the double stored the result message,
  minus the time plain aiohttp takes to download the same video from the fake gateway to a file and post it to
  the double (attached, or a text message for the link path). Medians over `--repeat` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RssSampler,
    World,
    environment,
    job_ids_from_text,
    print_figures,
    proc_status,
    reset_peak_rss,
    write_results,
)
from bot.fake_upstream.app import parse_size  # noqa: E402
from tests.discord_double import Channel, Message  # noqa: E402

MIB = 1024 * 1024


def result_message(world: World, tag: int) -> Message | None:
    for message in world.bot_messages():
        if tag in job_ids_from_text(message.content) and any(c.startswith("sora:remix:") for c in message.custom_ids()):
            return message
    return None


async def deliver_once(world: World, bot_pid: int, sampler: RssSampler, tag: int, size: str, channel: Channel,
                       member: Any) -> dict[str, float]:  # fmt: skip
    await asyncio.sleep(1.0)  # idle: the previous job's thread and final edit are done
    reset_peak_rss(bot_pid)
    sampler.reset()
    before = proc_status(bot_pid)["VmRSS"]
    await world.double.slash(
        "sora",
        user=member,
        channel=channel,
        prompt=f"delivery job-{tag} fake:steps=3 fake:interval=0.1 fake:bytes={size}",
    )
    message = await world.double.wait_for(lambda: result_message(world, tag), timeout=120, what=f"job-{tag}")
    await asyncio.sleep(0.3)
    peak = max(proc_status(bot_pid).get("VmHWM", 0), sampler.peak_kib)
    done = world.emitted[tag].done
    assert done is not None
    return {
        "growth_mib": (peak - before) / 1024,
        "end_to_end_s": message.history[0].monotonic - done,
        "attached": float(bool(message.attachments)),
        "bytes": float(message.attachments[0].size if message.attachments else 0),
    }


async def bare_path(world: World, session: aiohttp.ClientSession, tag: int, channel: Channel, attach: bool) -> float:
    """Plain aiohttp: stream the job's video from the fake gateway to a file, then post it (or a link) to Discord."""
    video = next(v for v in world.fake.state.videos.values() if f"job-{tag} " in f"{v.prompt} ")
    url = f"{world.fake.base_url}/files/{video.id}.mp4"
    headers = {"Authorization": f"Bot {world.double.token}"}
    post_url = f"{world.double.api_base}/channels/{channel.id}/messages"
    with tempfile.NamedTemporaryFile(suffix=".mp4") as handle:
        started = time.monotonic()
        async with session.get(url) as response:
            response.raise_for_status()
            async for chunk in response.content.iter_chunked(256 * 1024):
                handle.write(chunk)
        handle.flush()
        if attach:
            form = aiohttp.FormData()
            payload = {"content": f"bare job-{tag}", "attachments": [{"id": 0, "filename": "video.mp4"}]}
            form.add_field("payload_json", json.dumps(payload), content_type="application/json")
            with open(handle.name, "rb") as data:  # noqa: ASYNC230 - the bare baseline, as simple as it gets
                form.add_field("files[0]", data, filename="video.mp4", content_type="video/mp4")
                async with session.post(post_url, data=form, headers=headers) as posted:
                    await posted.read()
                    status = posted.status
        else:
            async with session.post(post_url, json={"content": f"bare job-{tag} <{url}>"}, headers=headers) as posted:
                await posted.read()
                status = posted.status
        elapsed = time.monotonic() - started
    if status != 200:
        raise RuntimeError(f"the double refused the bare upload: HTTP {status}")
    return elapsed


async def run(args: argparse.Namespace) -> dict[str, Any]:
    cases = {"attach": args.attach_size, "link": args.link_size}
    measured: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    bare: dict[str, list[float]] = {name: [] for name in cases}
    async with World(steps=3, interval=0.1) as world:
        double = world.double
        bare_channel = double.add_channel(name="bare-baseline")
        member = double.add_member(name="viewer")
        await world.open_guild()
        bot = await world.start_bot(log_level="INFO")
        sampler = RssSampler(bot.pid, period=0.01).start()
        tag = 0
        # Warm up both paths once (imports, connection pools, the first thread).
        for size in cases.values():
            await deliver_once(world, bot.pid, sampler, 10_000 + tag, size, double.channel, member)
            tag += 1
        async with aiohttp.ClientSession() as session:
            for _ in range(args.repeat):
                for name, size in cases.items():
                    tag += 1
                    figures = await deliver_once(world, bot.pid, sampler, tag, size, double.channel, member)
                    if bool(figures["attached"]) != (name == "attach"):
                        raise RuntimeError(
                            f"{name} case: the video was {'' if figures['attached'] else 'not '}attached"
                        )
                    measured[name].append(figures)
                    await asyncio.sleep(1.2)  # the bare path uses its own channel; keep clear of its bucket
                    bare[name].append(await bare_path(world, session, tag, bare_channel, attach=name == "attach"))
        await sampler.stop()
        errors = bot.errors()

    out: dict[str, Any] = {}
    for name in cases:
        growth = max(m["growth_mib"] for m in measured[name])
        e2e = statistics.median(m["end_to_end_s"] for m in measured[name])
        bare_s = statistics.median(bare[name])
        out[f"delivery_rss_growth_mib_{name}"] = round(growth, 2)
        out[f"delivery_video_mib_{name}"] = round(parse_size(cases[name]) / MIB, 1)
        out[f"delivery_end_to_end_ms_{name}"] = round(e2e * 1000, 1)
        out[f"delivery_bare_ms_{name}"] = round(bare_s * 1000, 1)
        out[f"bot_overhead_ms_{name}"] = round((e2e - bare_s) * 1000, 1)
    return {
        "delivery_rss_growth_mib_attach": out["delivery_rss_growth_mib_attach"],
        "delivery_rss_growth_mib_link": out["delivery_rss_growth_mib_link"],
        "bot_overhead_ms": max(out["bot_overhead_ms_attach"], out["bot_overhead_ms_link"]),
        **out,
        "repeat": args.repeat,
        "bot_errors_logged": len(errors),
        "mode": "quick" if args.quick else "full",
        **environment(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one round, 9 MiB and 24 MiB")
    parser.add_argument("--repeat", type=int, help="rounds per case (default 5, 1 with --quick)")
    parser.add_argument("--attach-size", default="9MiB")
    parser.add_argument("--link-size", help="default 200MiB (24MiB with --quick)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (1 if args.quick else 5)
    args.link_size = args.link_size or ("24MiB" if args.quick else "200MiB")
    figures = asyncio.run(run(args))
    print_figures(f"delivery of a {args.attach_size} (attached) and a {args.link_size} (link) video:", figures)
    print(f"wrote {write_results('delivery', figures, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
