"""The official openai SDK consumes the fake gateway's chat stream, and reads the same text our client does."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import openai
import pytest

from bot.fake_upstream import FakeConfig, FakeUpstream
from bot.fake_upstream.chat import SEED_001_PIECES, seed_001_stream
from bot.upstream import UpstreamOptions, make_client
from bot.upstream.types import Succeeded, VideoRequest
from tests.fixtures.upstream import TEST_API_KEY

# What differs between two runs of the same job: the task id, the sid, the file names.
JOB_SPECIFIC = re.compile(r"task_\d+|s_[0-9a-f]{32}")


async def sdk_text(base_url: str, prompt: str) -> tuple[str, str, list[str | None]]:
    """(content, reasoning_content, finish reasons) as the SDK sees the stream."""
    client = openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=TEST_API_KEY, max_retries=0, timeout=10)
    try:
        stream = await client.chat.completions.create(
            model="sora-2", messages=[{"role": "user", "content": prompt}], stream=True
        )
        content, reasoning, finishes = [], [], []
        async for chunk in stream:
            for choice in chunk.choices:
                content.append(choice.delta.content or "")
                reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
                finishes.append(choice.finish_reason)
        return "".join(content), "".join(reasoning), finishes
    finally:
        await client.close()


async def our_result(session: aiohttp.ClientSession, base_url: str, prompt: str) -> Succeeded:
    client = make_client("chat", session, UpstreamOptions(base_url=base_url, api_key=TEST_API_KEY))
    events = [e async for e in client.generate(VideoRequest(prompt=prompt, model="sora-2"))]
    result = events[-1]
    assert isinstance(result, Succeeded), result
    return result


async def test_sdk_reads_the_seed_001_capture_exactly_as_we_do(
    tmp_path: Path, http_session: aiohttp.ClientSession
) -> None:
    capture = tmp_path / "seed001.sse"
    await asyncio.to_thread(capture.write_bytes, seed_001_stream())
    async with FakeUpstream(FakeConfig(replay_file=str(capture), api_key=TEST_API_KEY)) as upstream:
        content, reasoning, finishes = await sdk_text(upstream.base_url, "让牛的头上顶着光圈")
        ours = await our_result(http_session, upstream.base_url, "让牛的头上顶着光圈")
    assert content == "".join(piece or "" for piece in SEED_001_PIECES)
    assert content == ours.assistant_text
    assert reasoning == ""
    assert finishes[-1] == "stop"


@pytest.mark.parametrize("directives", ["", "fake:crlf fake:keepalive fake:usage"])
async def test_sdk_consumes_the_live_fake_stream(directives: str, http_session: aiohttp.ClientSession) -> None:
    async with FakeUpstream(FakeConfig(steps=4, interval=0.01, api_key=TEST_API_KEY)) as upstream:
        prompt = f"一只可爱的小猫在草地上奔跑 {directives}".strip()
        content, _, finishes = await sdk_text(upstream.base_url, prompt)
        ours = await our_result(http_session, upstream.base_url, prompt)
    assert finishes.count("stop") == 1
    assert "> 生成完成 ✅" in content and "[视频文件](" in content
    assert JOB_SPECIFIC.sub("*", content) == JOB_SPECIFIC.sub("*", ours.assistant_text)


async def test_sdk_sees_reasoning_content_where_we_read_it(http_session: aiohttp.ClientSession) -> None:
    async with FakeUpstream(FakeConfig(steps=3, interval=0.01, api_key=TEST_API_KEY)) as upstream:
        content, reasoning, _ = await sdk_text(upstream.base_url, "a cat fake:reasoning")
        ours = await our_result(http_session, upstream.base_url, "a cat fake:reasoning")
    assert "进度" in reasoning and "进度" not in content
    normalised = JOB_SPECIFIC.sub("*", ours.assistant_text)
    assert JOB_SPECIFIC.sub("*", reasoning) in normalised
    assert JOB_SPECIFIC.sub("*", content.split("```", 2)[2]) in normalised
