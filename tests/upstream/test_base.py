"""The shared upstream behaviour: downloads, retries, error classification, the event contract, secrecy.

Where the fake gateway has no such behaviour, a tiny aiohttp app on 127.0.0.1 port 0 plays the gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.fake_upstream import FakeUpstream
from bot.fake_upstream.app import sample_mp4
from bot.upstream import UpstreamClient, UpstreamOptions
from bot.upstream.base import (
    JobStatus,
    PollSchedule,
    backoff_delay,
    classify_error,
    download_to_file,
    error_message,
    guard_events,
    normalise_status,
    parse_progress,
    request_json,
)
from bot.upstream.types import (
    AuthFailed,
    BadRequest,
    Event,
    Failed,
    FailureKind,
    ModerationRejected,
    NotAVideo,
    Progress,
    Queued,
    RateLimited,
    Succeeded,
    TaskId,
    TooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from tests.fixtures.upstream import TEST_API_KEY
from tests.upstream.helpers import Handler, assert_mp4, collect, request, serve


def flaky(failures: int, status: int, then: Handler, calls: list[web.Request]) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        calls.append(request)
        if len(calls) <= failures:
            # Retry-After: 0 keeps the test fast; the backoff itself is covered by `test_backoff_is_jittered`.
            headers = {"Retry-After": "0"}
            return web.json_response({"error": {"message": f"try again ({status})"}}, status=status, headers=headers)
        return await then(request)

    return handler


async def mp4(request: web.Request) -> web.StreamResponse:
    return web.Response(body=sample_mp4(), content_type="video/mp4")


async def ok_json(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True})


HEADERS = {"Authorization": f"Bearer {TEST_API_KEY}"}


# --- downloads ---------------------------------------------------------------------------------------------


async def test_download_refuses_a_declared_size_over_the_cap(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("videos", max_download_bytes=1024 * 1024)
    result = await_terminal(await collect(client.generate(request("a cat fake:bytes=2MiB"))))
    assert isinstance(result, Succeeded)
    with pytest.raises(TooLarge):
        await client.download(result, tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()


async def test_download_refuses_a_streamed_size_over_the_cap(
    http_session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        response.enable_chunked_encoding()  # no Content-Length: the cap must be enforced while streaming
        await response.prepare(request)
        await response.write(sample_mp4())
        for _ in range(8):
            await response.write(bytes(64 * 1024))
        await response.write_eof()
        return response

    async with serve({("GET", "/v.mp4"): chunked}) as base:
        with pytest.raises(TooLarge):
            await download_to_file(http_session, f"{base}/v.mp4", tmp_path / "v.mp4", headers={}, max_bytes=256 * 1024)
    assert not (tmp_path / "v.mp4").exists()


async def test_download_refuses_html(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("task")
    result = await_terminal(await collect(client.generate(request("a cat fake:html"))))
    assert isinstance(result, Succeeded)
    with pytest.raises(NotAVideo):
        await client.download(result, tmp_path / "v.mp4")


async def test_download_retries_5xx_then_succeeds(http_session: aiohttp.ClientSession, tmp_path: Path) -> None:
    calls: list[web.Request] = []
    async with serve({("GET", "/v.mp4"): flaky(2, 503, mp4, calls)}) as base:
        video = await download_to_file(
            http_session, f"{base}/v.mp4", tmp_path / "v.mp4", headers={}, max_bytes=2**20, attempts=3
        )
    assert len(calls) == 3
    assert video.content_type == "video/mp4"
    assert_mp4(tmp_path / "v.mp4", len(sample_mp4()))


async def test_download_gives_up_after_its_bound(http_session: aiohttp.ClientSession, tmp_path: Path) -> None:
    calls: list[web.Request] = []
    async with serve({("GET", "/v.mp4"): flaky(100, 502, mp4, calls)}) as base:
        with pytest.raises(UpstreamError) as caught:
            await download_to_file(
                http_session, f"{base}/v.mp4", tmp_path / "v.mp4", headers={}, max_bytes=2**20, attempts=2
            )
    assert caught.value.status == 502
    assert len(calls) == 3


async def test_download_does_not_retry_a_404(http_session: aiohttp.ClientSession, tmp_path: Path) -> None:
    calls: list[web.Request] = []
    async with serve({("GET", "/v.mp4"): flaky(100, 404, mp4, calls)}) as base:
        with pytest.raises(BadRequest):
            await download_to_file(http_session, f"{base}/v.mp4", tmp_path / "v.mp4", headers={}, max_bytes=2**20)
    assert len(calls) == 1


# --- request_json ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_get_retries_then_succeeds(http_session: aiohttp.ClientSession, status: int) -> None:
    calls: list[web.Request] = []
    async with serve({("GET", "/x"): flaky(2, status, ok_json, calls)}) as base:
        body, _ = await request_json(http_session, "GET", f"{base}/x", headers=HEADERS, attempts=3)
    assert body == {"ok": True}
    assert len(calls) == 3


async def test_get_retries_are_bounded(http_session: aiohttp.ClientSession) -> None:
    calls: list[web.Request] = []
    async with serve({("GET", "/x"): flaky(100, 503, ok_json, calls)}) as base:
        with pytest.raises(UpstreamError) as caught:
            await request_json(http_session, "GET", f"{base}/x", headers=HEADERS, attempts=2)
    assert caught.value.status == 503
    assert len(calls) == 3


async def test_get_retries_a_garbled_body_but_a_create_does_not(http_session: aiohttp.ClientSession) -> None:
    calls: list[web.Request] = []

    async def garbage_once(request: web.Request) -> web.StreamResponse:
        calls.append(request)
        if len(calls) == 1:
            return web.Response(text="<html>oops</html>", content_type="text/html")
        return web.json_response({"ok": True})

    async with serve({("GET", "/x"): garbage_once, ("POST", "/x"): garbage_once}) as base:
        body, _ = await request_json(http_session, "GET", f"{base}/x", headers=HEADERS, attempts=3)
        assert body == {"ok": True} and len(calls) == 2
        calls.clear()
        with pytest.raises(UpstreamError, match="not JSON"):
            await request_json(http_session, "POST", f"{base}/x", headers=HEADERS, json_body={}, idempotent=False)
        assert len(calls) == 1


async def test_a_create_is_never_retried_after_a_500(fake_upstream: FakeUpstream, upstream_client) -> None:
    client = upstream_client("videos", retry_attempts=4)
    end = await_terminal(await collect(client.generate(request("a cat fake:500"))))
    assert isinstance(end, Failed) and end.kind is FailureKind.UPSTREAM
    assert len(fake_upstream.state.requests_to("/v1/videos", "POST")) == 1


async def test_a_create_is_retried_after_a_429_with_a_bound(fake_upstream: FakeUpstream, upstream_client) -> None:
    client = upstream_client("videos", retry_attempts=2)
    end = await_terminal(await collect(client.generate(request("a cat fake:429"))))
    assert isinstance(end, Failed) and end.kind is FailureKind.RATE_LIMITED
    assert len(fake_upstream.state.requests_to("/v1/videos", "POST")) == 3


async def test_a_create_cut_mid_answer_is_not_resent(http_session: aiohttp.ClientSession) -> None:
    calls: list[web.Request] = []

    async def cut(request: web.Request) -> web.StreamResponse:
        calls.append(request)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 100
        await response.prepare(request)
        await response.write(b'{"id": ')
        assert request.transport is not None
        request.transport.close()
        return response

    async with serve({("POST", "/create"): cut}) as base:
        with pytest.raises(UpstreamError, match="dropped"):
            await request_json(
                http_session, "POST", f"{base}/create", headers=HEADERS, json_body={}, attempts=3, idempotent=False
            )
    assert len(calls) == 1


async def test_a_multipart_create_is_rebuilt_for_each_attempt(http_session: aiohttp.ClientSession) -> None:
    seen: list[dict[str, str]] = []

    async def limited(request: web.Request) -> web.StreamResponse:
        seen.append({k: str(v) for k, v in (await request.post()).items()})
        if len(seen) == 1:
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0"})
        return web.json_response({"ok": True})

    def form() -> aiohttp.FormData:
        data = aiohttp.FormData()
        data.add_field("prompt", "a cat")
        data.add_field("file", b"\x89PNG....", filename="a.png", content_type="image/png")
        return data

    async with serve({("POST", "/create"): limited}) as base:
        body, _ = await request_json(
            http_session, "POST", f"{base}/create", headers=HEADERS, data=form, attempts=2, idempotent=False
        )
    assert body == {"ok": True}
    assert [s["prompt"] for s in seen] == ["a cat", "a cat"]


# --- classification ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "code", "expected"),
    [
        (400, "Your request was blocked by our moderation system.", "moderation_blocked", ModerationRejected),
        (400, "blocked", "sentinel_block", ModerationRejected),
        (None, "Content Policy Violation: nope", None, ModerationRejected),
        (None, "内容违规，请修改提示词", None, ModerationRejected),
        (200, "This request violates our safety system", None, ModerationRejected),
        (401, "Invalid API key provided", "invalid_api_key", AuthFailed),
        (403, "Forbidden", None, AuthFailed),
        (429, "Rate limit reached", "rate_limit_exceeded", RateLimited),
        (408, None, None, UpstreamTimeout),
        (504, "Gateway Timeout", None, UpstreamTimeout),
        (524, None, None, UpstreamTimeout),
        (400, "Invalid value for 'seconds'", "invalid_value", BadRequest),
        (404, "Not found", None, BadRequest),
        (500, "The server had an error", None, UpstreamError),
        (502, None, None, UpstreamError),
        (None, "render node lost", "video_generation_failed", UpstreamError),
    ],
)
def test_classify_error(status: int | None, message: str | None, code: str | None, expected: type) -> None:
    error = classify_error(status, message, code)
    assert type(error) is expected
    assert error.status == status
    assert str(error) == (message or (f"HTTP {status}" if status else "the gateway failed"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"error": {"message": "no", "code": "x"}}', ("no", "x")),
        ('{"error": {"message": "no", "type": "t"}}', ("no", "t")),
        ('{"error": "plain words"}', ("plain words", None)),
        ('{"detail": "fastapi style"}', ("fastapi style", None)),
        ("<html><body><h1>502 Bad Gateway</h1></body></html>", ("502 Bad Gateway", None)),
        ("", (None, None)),
    ],
)
def test_error_message_shapes(text: str, expected: tuple[str | None, str | None]) -> None:
    assert error_message(text) == expected


@pytest.mark.parametrize(
    ("words", "status"),
    [
        (
            (
                "queued",
                "pending",
                "submitted",
                "not_start",
                "NotStarted",
                "preparing",
                "created",
                "starting",
                "unknown",
            ),
            JobStatus.QUEUED,
        ),
        (("processing", "in_progress", "IN PROGRESS", "running", "generating", "video_generating"), JobStatus.RUNNING),
        (("completed", "complete", "success", "SUCCEEDED", "finished"), JobStatus.SUCCEEDED),
        (("failed", "failure", "fail", "error"), JobStatus.FAILED),
        (("cancelled", "canceled"), JobStatus.CANCELLED),
    ],
)
def test_status_words_are_normalised(words: tuple[str, ...], status: JobStatus) -> None:
    assert {normalise_status(word) for word in words} == {status}


def test_unknown_status_words() -> None:
    assert normalise_status("bananas") is None
    assert normalise_status(None) is None
    assert normalise_status(3) is None


@pytest.mark.parametrize(
    ("value", "expected"), [(36, 36.0), (36.5, 36.5), ("36%", 36.0), (" 7 ", 7.0), ("n/a", None), (None, None)]
)
def test_parse_progress(value: object, expected: float | None) -> None:
    assert parse_progress(value) == expected


def test_backoff_is_jittered_and_capped() -> None:
    for attempt in range(12):
        delays = [backoff_delay(attempt, base=0.5, cap=20.0) for _ in range(50)]
        assert all(0 <= d <= min(20.0, 0.5 * 2**attempt) for d in delays)
        assert len(set(delays)) > 1


def test_poll_schedule_backs_off_to_a_cap_and_obeys_the_hint() -> None:
    schedule = PollSchedule(2.0)
    delays = [schedule.next_delay() for _ in range(10)]
    assert delays[0] == 2.0
    assert delays == sorted(delays)
    assert delays[-1] == 10.0
    assert schedule.next_delay({"openai-poll-after-ms": "250"}) == 0.25
    assert schedule.next_delay({"OpenAI-Poll-After-Ms": "1500"}) == 1.5
    assert schedule.next_delay({"openai-poll-after-ms": "soon"}) == 10.0
    assert PollSchedule(0.02).cap == pytest.approx(0.1)


# --- the event contract ------------------------------------------------------------------------------------


async def stream(*items: Event | BaseException | float, closed: list[bool] | None = None) -> AsyncIterator[Event]:
    """Yield events; raise exceptions; a float means sleep that long."""
    try:
        for item in items:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, float):
                await asyncio.sleep(item)
                continue
            yield item
    finally:
        if closed is not None:
            closed.append(True)


async def test_progress_never_goes_backwards_and_is_clamped() -> None:
    events = await collect(
        guard_events(stream(Progress(10), Progress(5), Progress(20), Progress(20), Progress(150), Succeeded("u")), 5.0)
    )
    assert events == [Progress(10.0), Progress(20.0), Progress(100.0), Succeeded("u")]


async def test_exactly_one_terminal_event_and_the_source_is_closed() -> None:
    closed: list[bool] = []
    events = await collect(
        guard_events(stream(Queued(), Succeeded("u"), Failed(FailureKind.UPSTREAM, "late"), closed=closed), 5.0)
    )
    assert events == [Queued(), Succeeded("u")]
    assert closed == [True]


async def test_a_stream_that_ends_without_a_result_fails() -> None:
    events = await collect(guard_events(stream(TaskId("t1"), Progress(50)), 5.0))
    assert events[-1] == Failed(FailureKind.UPSTREAM, "the gateway ended the stream without a video", "t1")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ModerationRejected("blocked"), FailureKind.MODERATION),
        (aiohttp.ClientPayloadError("cut"), FailureKind.UPSTREAM),
        (aiohttp.ServerDisconnectedError(), FailureKind.UPSTREAM),
        (ValueError("a parser bug"), FailureKind.UPSTREAM),
        (TimeoutError(), FailureKind.TIMEOUT),
    ],
)
async def test_exceptions_become_one_failed_event(error: Exception, kind: FailureKind) -> None:
    events = await collect(guard_events(stream(TaskId("t1"), error), 5.0))
    assert events[0] == TaskId("t1")
    assert len(events) == 2 and isinstance(events[1], Failed)
    assert events[1].kind is kind and events[1].task_id == "t1"


async def test_the_job_timeout_ends_a_silent_stream_and_closes_it() -> None:
    closed: list[bool] = []
    events = await collect(guard_events(stream(Queued(), 3600.0, closed=closed), 0.2, task_id="t9"))
    assert events[0] == Queued()
    assert isinstance(events[-1], Failed) and events[-1].kind is FailureKind.TIMEOUT
    assert events[-1].task_id == "t9"
    assert closed == [True]


async def test_a_succeeded_event_gets_the_task_id() -> None:
    events = await collect(guard_events(stream(TaskId("t1"), Succeeded("u")), 5.0))
    assert events[-1] == Succeeded("u", task_id="t1")


# --- secrecy -----------------------------------------------------------------------------------------------


def test_the_key_is_not_in_reprs(
    upstream_client: Callable[..., UpstreamClient], upstream_options: UpstreamOptions
) -> None:
    client = upstream_client("videos")
    for text in (repr(client), str(client), repr(upstream_options), str(upstream_options), repr(client.options)):
        assert TEST_API_KEY not in text


async def test_the_key_is_not_in_any_error_text(http_session: aiohttp.ClientSession, tmp_path: Path) -> None:
    async def echo_key(request: web.Request) -> web.StreamResponse:
        # Some gateways quote the key back in their error message.
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return web.json_response({"error": {"message": f"Incorrect API key provided: {key}"}}, status=401)

    async with serve({("*", "/{tail:.*}"): echo_key}) as base:
        options = UpstreamOptions(base_url=base, api_key=TEST_API_KEY, job_timeout=5.0, retry_attempts=1)
        from bot.upstream import make_client

        for api_format in ("videos", "task", "images"):
            client = make_client(api_format, http_session, options)
            events = await collect(client.generate(request("a cat")))
            end = events[-1]
            assert isinstance(end, Failed) and end.kind is FailureKind.AUTH, end
            assert TEST_API_KEY not in repr(events)

        client = make_client("videos", http_session, options)
        events = await collect(client.resume("video_1"))
        assert isinstance(events[-1], Failed) and TEST_API_KEY not in repr(events)
        with pytest.raises(AuthFailed) as caught:
            await client.check()
        assert TEST_API_KEY not in str(caught.value) and TEST_API_KEY not in repr(caught.value)
        assert "**********" in str(caught.value)
        with pytest.raises(AuthFailed) as caught:
            await client.download(Succeeded(f"{base}/v1/videos/v1", authenticated=True), tmp_path / "v.mp4")
        assert TEST_API_KEY not in str(caught.value)


def await_terminal(events: list[Event]) -> Event:
    assert isinstance(events[-1], Succeeded | Failed), events
    return events[-1]
