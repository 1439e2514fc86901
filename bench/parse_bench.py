"""Chat stream parsing throughput: our SSE decoder + progress parser against the openai SDK's SSE decoder.

Builds a large synthetic chat answer stream in seed 001's shape (compact `chat.completion.chunk` JSON per
`data:` line, a Chinese prompt echo streamed a token at a time, `> ID`, `> 排队中....`, `🏃 进度 N..` steps,
reasoning chunks, keep-alive comments, the final links, `[DONE]`), cuts it into network-sized reads, and times:

- `parse_mb_s`: what `ChatClient` runs on every byte: `ChatStream.feed` = SSE decoding, JSON decoding of each
  chunk, and the progress parser over the assistant text, producing events;
- `decode_mb_s`: our SSE decoding alone;
- `openai_sdk_mb_s`: `openai._streaming.SSEDecoder.iter_bytes` over the same reads (decoding only, no JSON);
- `openai_sdk_json_mb_s`: the SDK decoder plus `json.loads` of each event, as its `Stream` does;
- `parse_long_mb_s`: one single huge answer, to show the parser stays linear.

`parse_ratio_vs_openai_sdk` = parse_mb_s / openai_sdk_mb_s (target ≥ 1: our whole pipeline is faster than the
SDK's decoding step alone). Results go to `bench/results/parse.json`. `--quick` is a small smoke run for CI.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from openai._streaming import SSEDecoder as OpenAISSEDecoder

from bench.common import environment
from bot.fake_upstream.chat import chunk, sse_event
from bot.upstream.chat import ChatStream
from bot.upstream.sse import SSEDecoder
from bot.upstream.types import Succeeded

RESULTS = Path(__file__).resolve().parent / "results" / "parse.json"
HANZI = "一只可爱的小猫在草地上奔跑让牛的头上顶着光圈马的脚下踩着祥云生成一段高清的牛马跳舞的视频镜头缓慢推进阳光明媚"


def tokens(text: str, rng: random.Random) -> list[str]:
    """Cut text into LLM-token-sized pieces (1-4 characters), as gateways stream the prompt echo."""
    pieces, position = [], 0
    while position < len(text):
        size = rng.randint(1, 4)
        pieces.append(text[position : position + size])
        position += size
    return pieces


def job_stream(rng: random.Random, index: int) -> bytes:
    """One complete answer for one video job."""
    ids = {"chunk_id": f"chatcmpl-{index:024d}", "created": 1760338775 + index, "model": "sora-2"}
    prompt = "".join(rng.choice(HANZI) for _ in range(rng.randint(40, 300)))
    echo = json.dumps({"prompt": prompt, "orientation": "portrait"}, ensure_ascii=False, indent=1)
    reasoning = rng.random() < 0.3
    status = "reasoning" if reasoning else "content"

    def say(text: str, field: str = "content") -> bytes:
        if field == "reasoning":
            return sse_event(chunk(reasoning=text, **ids))
        return sse_event(chunk(text, **ids))

    out = [sse_event(chunk("", role="assistant", **ids)), say("```"), say("json"), say("\n")]
    out.extend(say(piece) for piece in tokens(echo, rng))
    out.append(say("\n```"))
    task = f"task_{rng.getrandbits(120):030x}"
    out.append(say(f"\n\n> ID: `{task}`\n>[数据预览](https://example.com/?task-preview={index}) | "
                   f"[原始数据](https://example.com/?task-source={index})\n> 排队中", status))  # fmt: skip
    out.extend(say(".", status) for _ in range(rng.randint(3, 30)))
    if rng.random() < 0.5:
        out.append(b": ping\n\n")
    out.append(say("\n> 生成中", status))
    out.append(say(".", status))
    out.append(say("\n\n>🏃 进度 ", status))
    steps = rng.randint(5, 40)  # a progress update every few seconds of a two-minute job
    for step in range(1, steps + 1):
        out.append(say(f"{step}..", status))
        if step % 10 == 0:
            out.append(b": ping\n\n")
    links = f"[预览图](https://cdn.example.com/{task}.png)\n[视频文件](https://cdn.example.com/{task}.mp4)"
    out.append(say(f"\n\n> 生成完成 ✅\n> sid: s_{rng.getrandbits(128):032x}\n\n{links}"))
    out.append(sse_event(chunk(finish_reason="stop", **ids)))
    out.append(sse_event("[DONE]"))
    return b"".join(out)


def long_stream(rng: random.Random, target: int) -> bytes:
    """One answer that never ends: a progress line and queue dots growing for `target` bytes."""
    ids = {"chunk_id": "chatcmpl-long", "created": 1760338775, "model": "sora-2"}
    out = [sse_event(chunk("", role="assistant", **ids)), sse_event(chunk("> 排队中", **ids))]
    size = sum(map(len, out))
    step = 0
    while size < target:
        text = "." if rng.random() < 0.5 else f"{step % 100}.."
        if step % 500 == 0:
            text = "\n>🏃 进度 " + "".join(rng.choice(HANZI) for _ in range(8))
        event = sse_event(chunk(text, **ids))
        out.append(event)
        size += len(event)
        step += 1
    out.append(sse_event(chunk("\n> 生成完成 ✅\n[视频文件](https://cdn.example.com/long.mp4)", **ids)))
    out.append(sse_event(chunk(finish_reason="stop", **ids)))
    out.append(sse_event("[DONE]"))
    return b"".join(out)


def reads(data: bytes, rng: random.Random, low: int = 64, high: int = 2048) -> list[bytes]:
    """`data` as a socket would deliver it: reads of random size."""
    pieces, position = [], 0
    while position < len(data):
        size = rng.randint(low, high)
        pieces.append(data[position : position + size])
        position += size
    return pieces


# --- the contenders --------------------------------------------------------------------------------------


def ours_parse(jobs: list[list[bytes]]) -> int:
    succeeded = 0
    for job in jobs:
        stream = ChatStream()
        for data in job:
            stream.feed(data)
        if isinstance(stream.finish()[-1], Succeeded):
            succeeded += 1
    return succeeded


def ours_decode(jobs: list[list[bytes]]) -> int:
    count = 0
    for job in jobs:
        decoder = SSEDecoder()
        for data in job:
            count += len(decoder.feed(data))
        count += len(decoder.finish())
    return count


def sdk_decode(jobs: list[list[bytes]]) -> int:
    count = 0
    for job in jobs:
        for _ in OpenAISSEDecoder().iter_bytes(iter(job)):
            count += 1
    return count


def sdk_decode_json(jobs: list[list[bytes]]) -> int:
    count = 0
    for job in jobs:
        for sse in OpenAISSEDecoder().iter_bytes(iter(job)):
            if sse.data.startswith("[DONE]"):
                break
            json.loads(sse.data)
            count += 1
    return count


def throughputs(
    contenders: dict[str, tuple[Callable[[list[list[bytes]]], int], list[list[bytes]]]], repeats: int
) -> dict[str, float]:
    """Best-of-`repeats` MB/s (1 MB = 10^6 bytes) for each contender, their runs interleaved so that a burst
    of load on the machine hits them all alike."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeats):
        for name, (function, jobs) in contenders.items():
            start = time.perf_counter()
            function(jobs)
            best[name] = min(best[name], time.perf_counter() - start)
    sizes = {name: sum(len(data) for job in jobs for data in job) for name, (_, jobs) in contenders.items()}
    return {name: round(sizes[name] / 1e6 / best[name], 2) for name in contenders}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run (about 2 MB, three repeats)")
    parser.add_argument("--mb", type=float, default=None, help="size of the synthetic stream in MB")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", "--output", dest="out", type=Path, default=RESULTS, help="the results file")
    args = parser.parse_args(argv)
    target = int((args.mb or (2 if args.quick else 40)) * 1e6)
    repeats = args.repeats or (3 if args.quick else 5)

    rng = random.Random(20261124)
    jobs: list[list[bytes]] = []
    size = 0
    while size < target:
        data = job_stream(rng, len(jobs))
        jobs.append(reads(data, rng))
        size += len(data)
    long_job = [reads(long_stream(rng, max(target // 4, 500_000)), rng)]

    # The contenders must agree before they are timed.
    assert ours_parse(jobs) == len(jobs), "every synthetic job should parse as a success"
    assert ours_decode(jobs) == sdk_decode(jobs)
    assert ours_parse(long_job) == 1

    speeds = throughputs(
        {
            "parse_mb_s": (ours_parse, jobs),
            "openai_sdk_mb_s": (sdk_decode, jobs),
            "decode_mb_s": (ours_decode, jobs),
            "openai_sdk_json_mb_s": (sdk_decode_json, jobs),
            "parse_long_mb_s": (ours_parse, long_job),
        },
        repeats,
    )
    results: dict[str, object] = {
        **speeds,
        "parse_ratio_vs_openai_sdk": round(speeds["parse_mb_s"] / speeds["openai_sdk_mb_s"], 3),
        "decode_ratio_vs_openai_sdk": round(speeds["decode_mb_s"] / speeds["openai_sdk_mb_s"], 3),
    }
    results["stream_mb"] = round(size / 1e6, 2)
    results["jobs"] = len(jobs)
    results["reads"] = sum(len(job) for job in jobs)
    results["mode"] = "quick" if args.quick else "full"
    results.update(environment())

    for key in ("parse_mb_s", "decode_mb_s", "openai_sdk_mb_s", "openai_sdk_json_mb_s", "parse_long_mb_s"):
        print(f"{key:>28}: {results[key]:8.2f} MB/s")
    print(f"{'parse_ratio_vs_openai_sdk':>28}: {results['parse_ratio_vs_openai_sdk']:8.3f}")
    print(f"{'decode_ratio_vs_openai_sdk':>28}: {results['decode_ratio_vs_openai_sdk']:8.3f}")
    print(f"({results['stream_mb']} MB in {results['jobs']} answers, {results['reads']} reads, best of {repeats})")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
