"""The chat client end to end against the fake gateway over loopback: success, remix, faults, cancellation."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from bot.fake_upstream import FakeConfig, FakeUpstream
from bot.fake_upstream.app import sample_thumbnail
from bot.fake_upstream.chat import SEED_001_PIECES, chunk, seed_001_stream, split_cycling, sse_event, stats_of
from bot.upstream import UpstreamClient, UpstreamOptions, make_client
from bot.upstream.chat import ChatClient, ChatStream, messages_for, prompt_with_hints
from bot.upstream.types import (
    ChatTurn,
    Event,
    Failed,
    FailureKind,
    NotAVideo,
    Preview,
    Progress,
    Queued,
    ReferenceImage,
    Succeeded,
    TaskId,
    VideoRequest,
)
from tests.fixtures.upstream import TEST_API_KEY

Build = Callable[..., UpstreamClient]


async def run(client: UpstreamClient, prompt: str, **fields: object) -> list[Event]:
    request = VideoRequest(prompt=prompt, model=str(fields.pop("model", "sora-2")), **fields)  # type: ignore[arg-type]
    return [event async for event in client.generate(request)]


def chat_posts(upstream: FakeUpstream) -> list[dict]:
    return [r.json for r in upstream.state.requests_to("/v1/chat/completions", "POST")]


@asynccontextmanager
async def replaying(tmp_path: Path, data: bytes, *, suffix: str = ".sse") -> AsyncIterator[FakeUpstream]:
    """A fake gateway whose chat endpoint streams `data` verbatim."""
    path = tmp_path / f"capture{suffix}"
    path.write_bytes(data)
    async with FakeUpstream(FakeConfig(replay_file=str(path), api_key=TEST_API_KEY)) as upstream:
        yield upstream


def replay_client(session: aiohttp.ClientSession, upstream: FakeUpstream, **overrides: object) -> UpstreamClient:
    options = UpstreamOptions(base_url=upstream.base_url, api_key=TEST_API_KEY, stall_timeout=1.0, retry_attempts=1)
    return make_client("chat", session, UpstreamOptions(**{**options.__dict__, **overrides}) if overrides else options)


def stream_of(*texts: str, finish: str = "stop", done: bool = True) -> bytes:
    data = sse_event(chunk("", role="assistant")) + b"".join(sse_event(chunk(t)) for t in texts)
    data += sse_event(chunk(finish_reason=finish))
    return data + (sse_event("[DONE]") if done else b"")


# --- success ---------------------------------------------------------------------------------------------


async def test_success_streams_events_and_a_downloadable_video(
    fake_upstream: FakeUpstream, upstream_client: Build, tmp_path: Path
) -> None:
    client = upstream_client("chat")
    assert isinstance(client, ChatClient)
    events = await run(client, "一只可爱的小猫在草地上奔跑")
    result = events[-1]
    assert isinstance(result, Succeeded), result
    video_id = result.task_id
    assert video_id is not None and video_id in fake_upstream.state.videos
    assert events[0] == TaskId(video_id, resumable=False)
    assert any(isinstance(e, Queued) for e in events)
    percents = [e.percent for e in events if isinstance(e, Progress)]
    assert percents == sorted(percents) and percents[0] == 0.0 and percents[-1] == 83.0
    assert result.video_url == f"{fake_upstream.base_url}/files/{video_id}.mp4"
    assert result.thumbnail_url == f"{fake_upstream.base_url}/files/{video_id}.png"
    assert Preview(result.thumbnail_url) in events
    assert not result.authenticated
    text = result.assistant_text
    assert text.startswith("```json\n{\n") and "> 生成完成 ✅" in text and f"[视频文件]({result.video_url})" in text

    video = await client.download(result, tmp_path / "video.mp4")
    assert video.content_type == "video/mp4"
    assert (await asyncio.to_thread((tmp_path / "video.mp4").read_bytes))[4:8] == b"ftyp"
    thumbnail = await client.download(result, tmp_path / "thumb.png", thumbnail=True)
    assert await asyncio.to_thread(Path(thumbnail.path).read_bytes) == sample_thumbnail()


async def test_request_is_a_streaming_chat_completion(fake_upstream: FakeUpstream, upstream_client: Build) -> None:
    await run(upstream_client("chat"), "a cat", model="sora-2-pro")
    (request,) = fake_upstream.state.requests_to("/v1/chat/completions")
    assert request.headers["Authorization"] == f"Bearer {TEST_API_KEY}"
    assert "text/event-stream" in request.headers["Accept"]
    assert request.json == {"model": "sora-2-pro", "messages": [{"role": "user", "content": "a cat"}], "stream": True}


async def test_duration_and_orientation_go_in_the_prompt(fake_upstream: FakeUpstream, upstream_client: Build) -> None:
    await run(upstream_client("chat"), "a cat", seconds=15, size="720x1280")
    (body,) = chat_posts(fake_upstream)
    assert body["messages"] == [{"role": "user", "content": "a cat\n\nduration: 15 seconds, orientation: portrait"}]


def test_prompt_hints_leave_what_the_member_wrote() -> None:
    assert prompt_with_hints("a cat", seconds=10, orientation="landscape") == (
        "a cat\n\nduration: 10 seconds, orientation: landscape"
    )
    assert prompt_with_hints("a cat, 5 seconds, 竖屏", seconds=10, size="1280x720") == "a cat, 5 seconds, 竖屏"
    assert prompt_with_hints("a cat") == "a cat"


async def test_reference_images_go_as_content_parts(fake_upstream: FakeUpstream, upstream_client: Build) -> None:
    images = (ReferenceImage(data=sample_thumbnail()), ReferenceImage(url="https://img.example/dog.jpg"))
    events = await run(upstream_client("chat"), "让画面动起来", images=images)
    assert isinstance(events[-1], Succeeded)
    (body,) = chat_posts(fake_upstream)
    (message,) = body["messages"]
    assert message["role"] == "user"
    text, first, second = message["content"]
    assert text == {"type": "text", "text": "让画面动起来"}
    assert first["type"] == "image_url" and first["image_url"]["url"].startswith("data:image/png;base64,")
    assert second == {"type": "image_url", "image_url": {"url": "https://img.example/dog.jpg"}}


async def test_remix_sends_the_history_verbatim(fake_upstream: FakeUpstream, upstream_client: Build) -> None:
    client = upstream_client("chat")
    first = (await run(client, "生成一段高清的,牛马跳舞的视频"))[-1]
    assert isinstance(first, Succeeded)
    history = (ChatTurn("生成一段高清的,牛马跳舞的视频", first.assistant_text),)
    second = (await run(client, "让牛的头上顶着光圈", history=history))[-1]
    assert isinstance(second, Succeeded) and second.video_url != first.video_url
    body = chat_posts(fake_upstream)[-1]
    assert body["messages"] == [
        {"role": "user", "content": "生成一段高清的,牛马跳舞的视频"},
        {"role": "assistant", "content": first.assistant_text},
        {"role": "user", "content": "让牛的头上顶着光圈"},
    ]


def test_messages_for_alternates_turns() -> None:
    picture = ReferenceImage(url="https://img.example/a.png")
    history = (ChatTurn("one", "answer one", (picture,)), ChatTurn("two", "answer two\n> sid: s_1"))
    assert messages_for(history, "three") == [
        {"role": "user", "content": [{"type": "text", "text": "one"},
                                     {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}}]},
        {"role": "assistant", "content": "answer one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "answer two\n> sid: s_1"},
        {"role": "user", "content": "three"},
    ]  # fmt: skip
    assert messages_for((), "solo") == [{"role": "user", "content": "solo"}]


# --- faults ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "kind", "words"),
    [
        ("moderation", FailureKind.MODERATION, "Content Policy Violation"),
        ("moderation_http", FailureKind.MODERATION, "safety system"),
        ("fail", FailureKind.UPSTREAM, "上游渲染服务异常"),
        ("stall", FailureKind.TIMEOUT, "sent nothing"),
        ("drop", FailureKind.UPSTREAM, "dropped the connection"),
        ("garbage", FailureKind.UPSTREAM, "undecodable"),
        ("error_payload", FailureKind.UPSTREAM, "no available render nodes"),
        ("401", FailureKind.AUTH, "Invalid API key"),
        ("429", FailureKind.RATE_LIMITED, "Rate limit"),
        ("500", FailureKind.UPSTREAM, "server had an error"),
    ],
)
async def test_faults_map_to_failure_kinds(
    fake_upstream: FakeUpstream, upstream_client: Build, directive: str, kind: FailureKind, words: str
) -> None:
    events = await run(upstream_client("chat", stall_timeout=0.5, retry_attempts=1), f"a cat fake:{directive}")
    result = events[-1]
    assert isinstance(result, Failed), events
    assert result.kind is kind
    assert words in result.reason
    assert TEST_API_KEY not in result.reason
    assert sum(isinstance(e, Failed | Succeeded) for e in events) == 1


async def test_in_stream_failures_keep_the_task_id_and_text(
    fake_upstream: FakeUpstream, upstream_client: Build
) -> None:
    result = (await run(upstream_client("chat"), "a cat fake:moderation"))[-1]
    assert isinstance(result, Failed) and result.task_id in fake_upstream.state.videos
    assert "> ❌ 生成失败: Content Policy Violation" in result.assistant_text


async def test_only_a_refusal_is_retried(fake_upstream: FakeUpstream, upstream_client: Build) -> None:
    client = upstream_client("chat", retry_attempts=2)
    await run(client, "fake:429")
    assert len(chat_posts(fake_upstream)) == 3  # 429 means "not accepted": safe to ask again
    for directive in ("500", "drop"):
        before = len(chat_posts(fake_upstream))
        await run(client, f"fake:{directive}")
        assert len(chat_posts(fake_upstream)) == before + 1  # it may have started a billed job: never twice


async def test_refused_connection_fails_cleanly(http_session: aiohttp.ClientSession) -> None:
    async with FakeUpstream() as upstream:
        base_url = upstream.base_url
    options = UpstreamOptions(base_url=base_url, api_key=TEST_API_KEY, retry_attempts=1)
    (result,) = await run(make_client("chat", http_session, options), "a cat")
    assert isinstance(result, Failed) and result.kind is FailureKind.UPSTREAM
    assert "could not connect" in result.reason


async def test_html_video_link_fails_the_download(upstream_client: Build, tmp_path: Path) -> None:
    client = upstream_client("chat")
    result = (await run(client, "a cat fake:html"))[-1]
    assert isinstance(result, Succeeded)
    with pytest.raises(NotAVideo):
        await client.download(result, tmp_path / "video.mp4")


async def test_video_size_directive(upstream_client: Build, tmp_path: Path) -> None:
    client = upstream_client("chat")
    result = (await run(client, "a cat fake:bytes=300KiB"))[-1]
    assert isinstance(result, Succeeded)
    assert (await client.download(result, tmp_path / "video.mp4")).size == 300 * 1024


# --- stream variants -------------------------------------------------------------------------------------


@pytest.mark.parametrize("directives", ["reasoning", "crlf", "keepalive", "usage", "upper", "crlf keepalive usage"])
async def test_stream_variants_succeed(upstream_client: Build, directives: str) -> None:
    prompt = "a cat " + " ".join(f"fake:{d}" for d in directives.split())
    events = await run(upstream_client("chat"), prompt)
    result = events[-1]
    assert isinstance(result, Succeeded), result
    assert [e.percent for e in events if isinstance(e, Progress)][-1] == 83.0
    assert "进度 16..33..50..66..83.." in result.assistant_text


async def test_reasoning_content_is_read_and_kept(upstream_client: Build) -> None:
    result = (await run(upstream_client("chat"), "a cat fake:reasoning"))[-1]
    assert isinstance(result, Succeeded)
    assert "> 排队中" in result.assistant_text and "[视频文件](" in result.assistant_text


async def test_queue_position(upstream_client: Build) -> None:
    events = await run(upstream_client("chat"), "a cat fake:queue=3")
    assert Queued(3) in events


async def test_fake_answers_non_streaming_requests(
    fake_upstream: FakeUpstream, http_session: aiohttp.ClientSession
) -> None:
    body = {"model": "sora-2", "messages": [{"role": "user", "content": "a cat"}], "stream": False}
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    async with http_session.post(f"{fake_upstream.base_url}/v1/chat/completions", json=body, headers=headers) as r:
        assert r.content_type == "application/json"
        completion = await r.json()
    assert completion["object"] == "chat.completion"
    stream = ChatStream()
    result = stream.feed_json(json.dumps(completion).encode())[-1]
    assert isinstance(result, Succeeded) and result.video_url.endswith(".mp4")


# --- captured answers (replay) ---------------------------------------------------------------------------


async def test_replay_of_seed_001(tmp_path: Path, http_session: aiohttp.ClientSession) -> None:
    async with replaying(tmp_path, seed_001_stream()) as upstream:
        events = await run(replay_client(http_session, upstream), "让牛的头上顶着光圈,马的脚下踩着祥云")
    result = events[-1]
    assert isinstance(result, Succeeded)
    assert result.video_url == "https://example.com/?video-file=2"
    assert result.task_id == "task_01k7e5w9z5f2d91pekrqy59rwc"
    assert result.assistant_text == "".join(piece or "" for piece in SEED_001_PIECES)
    assert [e.percent for e in events if isinstance(e, Progress)] == [0.0, 36.0, 44.0, 61.0, 69.0, 81.0]


async def test_non_streaming_json_answer(tmp_path: Path, http_session: aiohttp.ClientSession) -> None:
    text = "> 进度：100%\n> ✅ 视频生成成功，[点击这里](https://cdn.x.test/a.mp4) 查看视频"
    completion = {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "sora_video2",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
    }  # fmt: skip
    async with replaying(tmp_path, json.dumps(completion, ensure_ascii=False).encode(), suffix=".json") as upstream:
        events = await run(replay_client(http_session, upstream), "狗狗在草地上打滚")
    assert Progress(100.0) in events
    assert events[-1] == Succeeded("https://cdn.x.test/a.mp4", assistant_text=text)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # choices: [] chunks, an upper-case finish_reason, an ```html fence, a preview before the video
        (stream_of("> 生成中\n", "```html\n<video src='https://x.test/v.mp4' poster='https://x.test/p.jpg'>",
                   "</video>\n```", finish="STOP").replace(b"data: [DONE]",
                   b'data: {"id":"x","choices":[],"usage":{"total_tokens":9}}\n\ndata: [DONE]'),
         Succeeded("https://x.test/v.mp4", thumbnail_url="https://x.test/p.jpg")),
        # no [DONE] at all, no final blank line
        (stream_of("✅ [download](https://x.test/v.mp4)", done=False).rstrip(b"\n"),
         Succeeded("https://x.test/v.mp4")),
        # a BOM, CRLF and keep-alive comments
        (b"\xef\xbb\xbf: ping\r\n\r\n" + stream_of("✅ [视频文件](https://x.test/v.mp4)").replace(b"\n", b"\r\n"),
         Succeeded("https://x.test/v.mp4")),
        # an error payload, classified by its code
        (sse_event({"error": {"message": "Your prompt was flagged", "type": "invalid_request_error",
                              "code": "moderation_blocked"}}) + sse_event("[DONE]"),
         Failed(FailureKind.MODERATION, "Your prompt was flagged")),
        # seed 003's error shape: the status as the type
        (sse_event({"error": {"message": "Invalid signature", "type": "401"}}),
         Failed(FailureKind.AUTH, "Invalid signature")),
        # the content filter ended the answer
        (stream_of("> 生成中", finish="content_filter"), Failed(FailureKind.MODERATION, "content filter")),
        # an answer that never mentions a video
        (stream_of("抱歉，我无法帮助你。"), Failed(FailureKind.UPSTREAM, "without a video link: 抱歉，我无法帮助你。")),
        # success claimed, no link
        (stream_of("✅ 视频生成成功"), Failed(FailureKind.UPSTREAM, "no link")),
        # an HTML page instead of an event stream
        (b"<html><body>502 Bad Gateway</body></html>", Failed(FailureKind.UPSTREAM, "not an event stream")),
        # JSON behind an event-stream content type
        (json.dumps({"error": {"message": "quota exhausted", "code": "insufficient_quota"}}).encode(),
         Failed(FailureKind.UPSTREAM, "quota exhausted")),
    ],
)  # fmt: skip
async def test_captured_answers(
    tmp_path: Path, http_session: aiohttp.ClientSession, data: bytes, expected: Succeeded | Failed
) -> None:
    async with replaying(tmp_path, data) as upstream:
        result = (await run(replay_client(http_session, upstream), "a cat"))[-1]
    if isinstance(expected, Succeeded):
        assert isinstance(result, Succeeded), result
        assert (result.video_url, result.thumbnail_url) == (expected.video_url, expected.thumbnail_url)
    else:
        assert isinstance(result, Failed), result
        assert result.kind is expected.kind
        assert expected.reason in result.reason


async def test_api_key_never_leaks_into_a_failure(tmp_path: Path, http_session: aiohttp.ClientSession) -> None:
    data = sse_event({"error": {"message": f"Incorrect API key provided: {TEST_API_KEY}", "code": "invalid_api_key"}})
    async with replaying(tmp_path, data) as upstream:
        client = replay_client(http_session, upstream)
        result = (await run(client, "a cat"))[-1]
    assert isinstance(result, Failed)
    assert TEST_API_KEY not in result.reason and "**********" in result.reason
    assert TEST_API_KEY not in repr(client) and TEST_API_KEY not in repr(client.options)


# --- cancellation ----------------------------------------------------------------------------------------


async def wait_until_closed(upstream: FakeUpstream) -> None:
    stats = stats_of(upstream.app)
    for _ in range(500):  # a bound, not a timing assertion: the gateway notices a hang-up at its next write
        if stats.active == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the gateway still has {stats.active} open stream(s)")


async def test_aclose_releases_the_connection(fake_upstream: FakeUpstream, upstream_client: Build) -> None:
    events = upstream_client("chat").generate(VideoRequest(prompt="a cat fake:interval=0.2 fake:steps=20", model="m"))
    async for event in events:
        if isinstance(event, Progress):
            break
    await events.aclose()  # type: ignore[attr-defined]
    await wait_until_closed(fake_upstream)
    assert stats_of(fake_upstream.app).disconnected == 1


async def test_cancelling_the_task_releases_the_connection(
    fake_upstream: FakeUpstream, upstream_client: Build
) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for event in upstream_client("chat").generate(VideoRequest(prompt="fake:stall", model="m")):
            if isinstance(event, Progress):
                started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until_closed(fake_upstream)
    assert stats_of(fake_upstream.app).disconnected == 1


# --- the stream reader against a plain reading -----------------------------------------------------------


def plain_reading(stream: bytes) -> str:
    """The assistant text the obvious way: the openai SDK's SSE decoder and json.loads for every event."""
    from openai._streaming import SSEDecoder as OpenAISSEDecoder

    text, source = [], ""
    for sse in OpenAISSEDecoder().iter_bytes(iter([stream])):
        if sse.data.startswith("[DONE"):
            break
        try:
            payload = json.loads(sse.data)
        except ValueError:
            continue
        for choice in payload.get("choices") or []:
            delta = choice.get("delta") or {}
            for field, name in (("reasoning_content", "reasoning"), ("content", "content")):
                piece = delta.get(field)
                if piece:
                    if name != source and source and text and not text[-1].endswith("\n"):
                        piece = "\n" + piece
                    source = name
                    text.append(piece)
    return "".join(text)


def varied_stream(rng: random.Random) -> bytes:
    """Chunks whose envelopes change, with escapes, extra fields, usage chunks and odd shapes mixed in."""
    pieces = ["```json\n", '{"prompt": "say \\"hi\\" \\\\ ok"}', "\n```\n", "> ID: `task_abc123`\n", "> 排队中"]
    pieces += ["."] * 5 + ["\n> 生成中", "\n>🏃 进度 "] + [f"{n}.." for n in range(5, 100, 7)]
    pieces += ["\n> 生成完成 ✅\n[视频文件](https://x.test/v.mp4)"]
    out = [sse_event(chunk("", role="assistant"))]
    created = 1760338775
    for index, piece in enumerate(pieces):
        if rng.random() < 0.2:
            created += 1  # some gateways stamp every chunk: the envelope changes under the template
        body = chunk(**{"reasoning" if 6 <= index < 12 else "content": piece}, created=created)  # type: ignore[arg-type]
        if rng.random() < 0.2:
            body["system_fingerprint"] = "fp_1"
        if rng.random() < 0.1:
            body["choices"][0]["logprobs"] = None
        data = json.dumps(body, ensure_ascii=rng.random() < 0.3, separators=(",", ":"))
        out.append(b"data: " + data.encode() + b"\n\n")
        if rng.random() < 0.1:
            out.append(sse_event({**chunk(), "choices": [], "usage": {"total_tokens": 1}}))
        if rng.random() < 0.05:
            out.append(b'data: {"id":"chatcmpl-x","choices":[{"index":0,"delta":{"content":"\x01"}}]}\n\n')
    out.append(sse_event(chunk(finish_reason="stop")))
    out.append(sse_event("[DONE]"))
    return b"".join(out)


def test_stream_reader_agrees_with_a_plain_reading_whatever_the_chunking() -> None:
    rng = random.Random(11)
    for _ in range(40):
        stream = varied_stream(rng)
        expected = plain_reading(stream)
        reader = ChatStream()
        for piece in split_cycling(stream, [rng.randint(1, 300) for _ in range(7)]):
            reader.feed(piece)
        result = reader.finish()[-1]
        assert isinstance(result, Succeeded), result
        assert result.assistant_text == expected
        assert result.video_url == "https://x.test/v.mp4"


async def test_connection_lost_after_the_answer_is_complete(
    tmp_path: Path, http_session: aiohttp.ClientSession
) -> None:
    async with replaying(tmp_path, seed_001_stream().replace(b"data: [DONE]\n\n", b"")) as upstream:
        result = (await run(replay_client(http_session, upstream), "a cat fake:drop"))[-1]
    assert isinstance(result, Succeeded) and result.video_url == "https://example.com/?video-file=2"


async def test_connection_lost_in_the_middle_of_a_link(tmp_path: Path, http_session: aiohttp.ClientSession) -> None:
    # The last event ends inside a URL; then the connection goes. That URL (it would win: an .mp4) is never
    # taken, whatever it looked like: the complete lines decide.
    texts = ("> 生成完成 ✅\n", "[视频](https://x.test/watch/1)\n", "[视频文件](https://x.test/hd/v.mp4")
    data = stream_of(*texts, done=False)
    data = data[: data.index(b'data: {"id":"chatcmpl-89C77NMqv7oh6ajWBZful0xBNsJN1","object":"chat.completion.chunk"'
                           b',"created":1760338775,"model":"sora-2","choices":[{"index":0,"delta":{},"finish')]
    async with replaying(tmp_path, data) as upstream:
        result = (await run(replay_client(http_session, upstream), "a cat fake:drop"))[-1]
    assert isinstance(result, Succeeded) and result.video_url == "https://x.test/watch/1"


async def test_api_key_echoed_in_an_http_error_is_redacted(http_session: aiohttp.ClientSession) -> None:
    from aiohttp import web

    async def refuse(request: web.Request) -> web.Response:
        key = request.headers["Authorization"].removeprefix("Bearer ")
        body = {"error": {"message": f"Incorrect API key provided: {key}", "code": "invalid_api_key"}}
        return web.json_response(body, status=401)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        options = UpstreamOptions(base_url=f"http://127.0.0.1:{port}", api_key=TEST_API_KEY, retry_attempts=0)
        (result,) = await run(make_client("chat", http_session, options), "a cat")
    finally:
        await runner.cleanup()
    assert isinstance(result, Failed) and result.kind is FailureKind.AUTH
    assert TEST_API_KEY not in result.reason and "Incorrect API key provided" in result.reason
