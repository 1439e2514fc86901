"""Bounds on what the gateway can make the bot do: a download's total time and minimum rate, and a size cap on
every read (one stream event, a JSON answer, an error body, the kept assistant text).

For the caps, the fake gateway writes an endless body only as fast as the client reads it and counts the bytes
that went out: the failure must come long before the body would have ended (nothing read whole into memory).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.config import load_settings
from bot.fake_upstream import FakeUpstream
from bot.fake_upstream.app import ENDLESS_BYTES
from bot.upstream import UpstreamClient, UpstreamOptions, make_client, options_from_settings
from bot.upstream.base import RateFloor, download_to_file, request_json
from bot.upstream.types import AnswerTooLarge, Failed, FailureKind, Succeeded, UpstreamTimeout
from tests.fixtures.upstream import TEST_API_KEY
from tests.upstream.helpers import collect, request, serve, succeeded

# Far less than the endless body: what a client that stopped reading at the cap lets through, socket buffers
# included.
EARLY = ENDLESS_BYTES // 8


def test_options_come_from_the_settings() -> None:
    settings = load_settings(
        None,
        sora_base_url="https://gw.example.com",
        sora_api_key=TEST_API_KEY,
        sora_download_timeout=90,
        sora_download_min_rate_kib=48,
        sora_fetch_allow="cdn.internal, 10.20.0.0/16",
    )
    options = options_from_settings(settings)
    assert options.download_timeout == 90.0
    assert options.download_min_rate == 48 * 1024
    assert options.fetch_allow == ("cdn.internal", "10.20.0.0/16")


# --- download deadline and minimum rate --------------------------------------------------------------------


def test_the_rate_floor_averages_over_its_window() -> None:
    floor = RateFloor(min_rate=1000, window=10.0, start=0.0)
    assert not floor.too_slow(5.0, 0)  # the first window is never judged
    for second in range(1, 21):
        floor.add(float(second), second * 1500)  # 1500 B/s, steady
    assert not floor.too_slow(20.0, 30_000)
    floor.add(21.0, 30_100)  # then almost nothing
    assert not floor.too_slow(21.0, 30_100)  # 10 s average still 1360 B/s
    assert floor.too_slow(29.0, 30_100)  # since 19 s: 1600 bytes, 160 B/s over the window
    assert floor.too_slow(40.0, 30_100)  # a stall: nothing for 10 s


async def test_a_download_slower_than_the_minimum_fails(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("task", download_min_rate=64 * 1024, download_rate_window=0.3)
    result = succeeded(await collect(client.generate(request("a cat fake:bytes=1MiB fake:slowdownload=4000"))))
    with pytest.raises(UpstreamTimeout) as caught:
        await client.download(result, tmp_path / "v.mp4")
    assert caught.value.kind is FailureKind.TIMEOUT
    assert caught.value.message == "the video download was slower than 64 KiB/s"
    assert not (tmp_path / "v.mp4").exists()


async def test_a_download_that_goes_silent_fails_on_the_rate_too(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("videos", download_min_rate=1024, download_rate_window=0.3, stall_timeout=30.0)
    result = succeeded(await collect(client.generate(request("a cat fake:slowdownload=0"))))
    with pytest.raises(UpstreamTimeout, match="slower than 1 KiB/s"):
        await client.download(result, tmp_path / "v.mp4")


async def test_a_download_has_a_total_deadline(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("images", download_timeout=0.4, download_min_rate=0)
    result = succeeded(await collect(client.generate(request("a cat fake:bytes=64KiB fake:slowdownload=8000"))))
    with pytest.raises(UpstreamTimeout) as caught:
        await client.download(result, tmp_path / "v.mp4")
    assert caught.value.message == "the video download took longer than 0.4 s"
    assert not (tmp_path / "v.mp4").exists()


async def test_the_deadline_spans_every_retry(http_session: aiohttp.ClientSession, tmp_path: Path) -> None:
    calls: list[web.Request] = []

    async def busy(request: web.Request) -> web.StreamResponse:
        calls.append(request)
        return web.json_response({"error": {"message": "busy"}}, status=503, headers={"Retry-After": "0.1"})

    async with serve({("GET", "/v.mp4"): busy}) as base:
        with pytest.raises(UpstreamTimeout, match=r"took longer than 0\.5 s"):
            await download_to_file(
                http_session,
                f"{base}/v.mp4",
                tmp_path / "v.mp4",
                headers={},
                max_bytes=2**20,
                attempts=100,
                deadline=0.5,
            )
    assert 1 < len(calls) < 100  # it did retry, and the deadline, not the attempts, ended it


async def test_a_thumbnail_download_says_so(http_session: aiohttp.ClientSession, tmp_path: Path) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        await asyncio.sleep(5)
        return response

    async with serve({("GET", "/t.png"): slow}) as base:
        options = UpstreamOptions(base_url=base, api_key=TEST_API_KEY, download_timeout=0.3)
        client = make_client("task", http_session, options)
        from_gateway = Succeeded(f"{base}/none.mp4", thumbnail_url=f"{base}/t.png")
        with pytest.raises(UpstreamTimeout, match=r"the thumbnail download took longer than 0\.3 s"):
            await client.download(from_gateway, tmp_path / "t.png", thumbnail=True)


async def test_a_normal_download_is_untouched_by_the_limits(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("videos", download_min_rate=32 * 1024, download_rate_window=0.2, download_timeout=30.0)
    result = succeeded(await collect(client.generate(request("a cat fake:bytes=3MiB"))))
    video = await client.download(result, tmp_path / "v.mp4")
    assert video.size == 3 * 2**20


# --- size caps ---------------------------------------------------------------------------------------------


def assert_stopped_early(fake_upstream: FakeUpstream) -> None:
    state = fake_upstream.state
    assert not state.huge_finished
    assert 0 < state.huge_sent < EARLY, state.huge_sent


async def test_one_endless_stream_event_is_refused(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient]
) -> None:
    end = (await collect(upstream_client("chat").generate(request("a cat fake:hugeevent"))))[-1]
    assert isinstance(end, Failed) and end.kind is FailureKind.UPSTREAM, end
    assert end.reason == "the gateway sent one stream event over 1024 KiB"
    assert end.task_id  # what was learnt before the fault is kept
    assert_stopped_early(fake_upstream)


async def test_endless_assistant_text_is_refused(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient]
) -> None:
    client = upstream_client("chat", max_assistant_text=64 * 1024)
    end = (await collect(client.generate(request("a cat fake:hugetext"))))[-1]
    assert isinstance(end, Failed) and end.kind is FailureKind.UPSTREAM, end
    assert end.reason == "the gateway's answer text is over 64 KiB, more than sora-bot keeps"
    assert end.assistant_text == ""  # nothing of it is kept (it would go to the database)
    assert_stopped_early(fake_upstream)


@pytest.mark.parametrize("api_format", ["chat", "videos", "task", "images"])
async def test_an_endless_json_answer_is_refused(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], api_format: str
) -> None:
    end = (await collect(upstream_client(api_format).generate(request("a cat fake:hugejson"))))[-1]
    assert isinstance(end, Failed) and end.kind is FailureKind.UPSTREAM, end
    assert end.reason == "the gateway's answer is over 4 MiB, more than sora-bot reads"
    assert_stopped_early(fake_upstream)


@pytest.mark.parametrize("api_format", ["chat", "videos", "task", "images"])
async def test_an_endless_error_body_is_not_read(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], api_format: str
) -> None:
    end = (await collect(upstream_client(api_format).generate(request("a cat fake:hugeerror"))))[-1]
    assert isinstance(end, Failed) and end.kind is FailureKind.UPSTREAM, end
    assert end.reason == "HTTP 500 (an error page over 64 KiB, not read)"
    assert_stopped_early(fake_upstream)


async def test_a_declared_oversized_answer_is_refused_unread(http_session: aiohttp.ClientSession) -> None:
    sent: list[int] = []

    async def declared(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 50 * 2**20
        await response.prepare(request)
        try:
            for _ in range(50 * 16):
                await response.write(b" " * 65536)
                sent.append(65536)
        except ConnectionError:
            pass
        return response

    async with serve({("GET", "/poll"): declared}) as base:
        with pytest.raises(AnswerTooLarge):
            await request_json(http_session, "GET", f"{base}/poll", headers={}, attempts=3, max_bytes=2**20)
    assert sum(sent) < 25 * 2**20
