"""The fake gateway's chat format: `POST /v1/chat/completions` streaming a video job as prose (seed 001).

A streamed answer has the shape of seed 001's example: a role chunk, the ```json echo of the prompt, then
`> ID: \\`task_…\\``, `> 排队中...`, `> 生成中.`, `🏃 进度 16..33..` (one step every `interval` seconds), and
`> 生成完成 ✅`, `> sid: s_…`, `[预览图](…png)`, `[视频文件](…mp4)`; then `finish_reason: "stop"` and
`data: [DONE]`. One `data:` line per event, blank-line separated, compact JSON.

Directives (besides the common ones in `bot.fake_upstream.app`):

| directive | effect here |
| --- | --- |
| `fake:moderation` | in-stream `❌ 生成失败: Content Policy Violation …` after a little progress, no link |
| `fake:moderation_http` | HTTP 400 `code: moderation_blocked` before any stream |
| `fake:fail` | in-stream `❌ 生成失败: …` halfway through |
| `fake:error_payload` | a `data: {"error": {…}}` event after a little progress, then `[DONE]` |
| `fake:stall` | silence after a little progress; the connection stays open until the client leaves |
| `fake:drop` | the connection is aborted after a little progress |
| `fake:garbage` | undecodable data lines (cut JSON, binary junk), then `[DONE]` with no video |
| `fake:reasoning` | the status lines come in `delta.reasoning_content`, only the result in `content` |
| `fake:crlf` | CRLF line endings |
| `fake:keepalive` | `: ping` comment lines between events |
| `fake:usage` | a trailing `"choices": []` chunk carrying usage |
| `fake:upper` | `finish_reason` in upper case (`STOP`) |
| `fake:hugeevent` / `fake:hugetext` | after a little progress, one endless event / endless content events |
| `fake:hugejson` / `fake:hugeerror` | an endless `chat.completion` JSON body / an endless HTTP 500 error body |

`stream: false` waits for the whole job, then answers one `chat.completion` with the same text.
With `FakeConfig.replay_file` set, the endpoint streams that file's bytes verbatim (a real gateway's capture);
`fake:drop` then closes the connection after the last byte without ending the response.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.fake_upstream.app import (
    ENDLESS_BYTES,
    FakeState,
    FakeVideo,
    create_fault_response,
    huge_error,
    openai_error,
    state_of,
    stream_huge,
)

log = logging.getLogger(__name__)

PORTRAIT_WORDS = re.compile(r"portrait|vertical|竖屏|竖版|9:16", re.IGNORECASE)
STALL_LIMIT = 600.0  # a stalled handler gives up eventually even if nobody hangs up
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
REPLAY_CHUNK_SIZES = (1, 7, 64, 3, 509, 2, 131, 4096)  # odd sizes, so every kind of split gets exercised

# The content pieces of seed 001's documented example stream, in order. `None` is a chunk with an empty
# `delta: {}`; the first chunk also carries `role: assistant`, the last one `finish_reason: "stop"`.
SEED_001_ID = "chatcmpl-89C77NMqv7oh6ajWBZful0xBNsJN1"
SEED_001_CREATED = 1760338775
SEED_001_PIECES: tuple[str | None, ...] = (
    "", "```", "json", "\n", "{\n", " ", ' "', "prompt", '":', ' "', "让", "牛", "的", "头", "上", "顶", "着", "光",
    "圈", ",", "马", "的", "脚", "下", "踩", "着", "祥云", '",\n', " ", ' "', "orientation", '":', ' "', "portrait",
    '",\n', " ", ' "', "sid", '":', ' "', "s", "_", "68", "ec", "8", "acc", "d", "80", "c", "819", "1", "ae", "1",
    "fc", "957", "af", "78", "c", "aaa", '"\n', "}\n", "```", None,
    "\n\n> ID: `task_01k7e5w9z5f2d91pekrqy59rwc`\n>[数据预览(示例)](https://example.com/?task-preview=2) | "
    "[原始数据(示例)](https://example.com/?task-source=2)\n> 排队中",
    ".", ".", ".", ".", ".", "\n> 生成中", ".", "\n\n>🏃 进度 36..", "44..", "61..", "69..", "81..",
    "\n\n> 生成完成 ✅\n> sid: s_68eca3f141808191b1fd30fea1b731bd\n\n[预览图(示例)](https://example.com/?video-preview=2)"
    "\n[视频文件(示例)](https://example.com/?video-file=2)",
    None,
)  # fmt: skip


def chunk(
    content: str | None = None,
    *,
    reasoning: str | None = None,
    role: str | None = None,
    finish_reason: str | None = None,
    chunk_id: str = SEED_001_ID,
    created: int = SEED_001_CREATED,
    model: str = "sora-2",
) -> dict[str, Any]:
    """One `chat.completion.chunk` object as gateways send it."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if reasoning is not None:
        delta["reasoning_content"] = reasoning
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def sse_event(payload: dict[str, Any] | str, *, newline: bytes = b"\n") -> bytes:
    """One `data:` line and the blank line that ends the event; compact JSON, UTF-8, like real gateways."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return b"data: " + data.encode("utf-8") + newline + newline


def seed_001_chunks() -> list[dict[str, Any]]:
    """Seed 001's example stream as chunk objects (without the final `[DONE]`)."""
    chunks: list[dict[str, Any]] = []
    last = len(SEED_001_PIECES) - 1
    for index, piece in enumerate(SEED_001_PIECES):
        chunks.append(
            chunk(piece, role="assistant" if index == 0 else None, finish_reason="stop" if index == last else None)
        )
    return chunks


def seed_001_stream(*, newline: bytes = b"\n") -> bytes:
    """Seed 001's example as the real wire bytes: compact JSON per `data:` line, then `data: [DONE]`."""
    return b"".join(sse_event(c, newline=newline) for c in seed_001_chunks()) + sse_event("[DONE]", newline=newline)


# --- the job script --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the fake does: wait `delay`, then send `text` (to content or reasoning) or act."""

    delay: float
    action: str  # "content" | "reasoning" | "empty" | "raw" | "error" | "stall" | "drop"
    text: str = ""
    raw: bytes = b""


@dataclass
class ChatStats:
    """How many chat streams are open; tests use it to see that a cancelled client really hung up."""

    active: int = 0
    finished: int = 0
    disconnected: int = 0


STATS_KEY = web.AppKey("fake_chat_stats", ChatStats)


def stats_of(app: web.Application) -> ChatStats:
    return app[STATS_KEY]


def last_user_text(messages: list[Any]) -> str:
    """The newest user message's text, whether plain or content parts."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def progress_values(steps: int) -> list[int]:
    return [int(100 * i / (steps + 1)) for i in range(1, steps + 1)]


def job_script(request: web.Request, state: FakeState, video: FakeVideo, prompt: str) -> list[Step]:
    """What the gateway says about one job, fault directives included."""
    scenario = video.scenario
    status = "reasoning" if scenario.has("reasoning") else "content"
    orientation = "portrait" if PORTRAIT_WORDS.search(prompt) else "landscape"
    echo = json.dumps({"prompt": prompt, "orientation": orientation}, ensure_ascii=False, indent=2)
    steps = [Step(0, "content", piece) for piece in ("```", "json", "\n", *echo.splitlines(keepends=True), "\n```")]
    steps.append(Step(0, "empty"))
    task_page = str(request.url.with_path(f"/tasks/{video.id}").with_query(None))
    links = f"[数据预览]({task_page}?view=preview) | [原始数据]({task_page}?view=raw)"
    steps.append(Step(0, status, f"\n\n> ID: `{video.id}`\n>{links}"))
    steps.append(Step(0, status, "\n> 排队中"))
    if scenario.queue:
        steps.append(Step(0, status, f", 排队位置: {scenario.queue}"))
        steps.extend(Step(scenario.interval / 3, status, ".") for _ in range(3))
    else:
        steps.extend(Step(0, status, ".") for _ in range(3))
    steps.append(Step(0, status, "\n> 生成中"))
    steps.append(Step(0, status, "."))
    steps.append(Step(0, status, "\n\n>🏃 进度 "))
    values = progress_values(max(scenario.steps, 1))
    early = 1  # where the quick faults strike: after the first progress step
    for index, value in enumerate(values, start=1):
        steps.append(Step(scenario.interval, status, f"{value}.."))
        if scenario.has("fail") and index >= max(1, len(values) // 2):
            steps.append(Step(0, "content", "\n\n> ❌ 生成失败: 上游渲染服务异常, 请稍后重试 (render node crashed)"))
            return steps
        if index == early:
            if scenario.has("moderation"):
                steps.append(
                    Step(0, "content", "\n\n> ❌ 生成失败: Content Policy Violation\n> 您的提示词可能违反了内容政策, "
                         "请修改后重试。")
                )
                return steps
            for fault in ("error_payload", "stall", "drop", "garbage", "hugeevent", "hugetext"):
                if scenario.has(fault):
                    steps.append(Step(0, "error" if fault == "error_payload" else fault))
                    return steps
    sid = "s_" + hashlib.sha1(video.id.encode()).hexdigest()[:32]
    steps.append(
        Step(
            scenario.interval,
            "content",
            f"\n\n> 生成完成 ✅\n> sid: {sid}\n\n[预览图]({state.thumbnail_url(request, video)})"
            f"\n[视频文件]({state.video_file_url(request, video)})",
        )
    )
    return steps


GARBAGE_LINES = (
    b'data: {"id":"chatcmpl-x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"\xe8\xbf',
    b"data: \xff\xfe\x00\x9c\x80 binary junk \xc3\x28",
    b"data: not json at all",
    b'data: ["a", "list"]',
)


# --- the handler -----------------------------------------------------------------------------------------


async def chat_completions(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    if state.config.replay_file:
        return await replay(request, Path(state.config.replay_file))
    try:
        body = await request.json()
    except ValueError:
        return openai_error(400, "We could not parse the JSON body of your request.")
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        return openai_error(400, "'messages' is a required property", code="invalid_request_error")
    prompt = last_user_text(body["messages"])
    scenario = state.scenario(request, prompt)
    fault = create_fault_response(scenario)
    if fault is not None:
        return fault
    if scenario.has("hugeerror"):
        return await huge_error(request)
    if scenario.has("hugejson"):
        head = b'{"id": "chatcmpl-huge", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": "'
        return await stream_huge(request, head=head, tail=b'"}}]}')
    if scenario.has("moderation_http"):
        return openai_error(
            400, "Your request was rejected as a result of our safety system.", code="moderation_blocked"
        )
    model = str(body.get("model") or "sora-2")
    video = FakeVideo(id=state.new_id("task"), prompt=prompt, model=model, scenario=scenario)
    state.videos[video.id] = video
    script = job_script(request, state, video, prompt)
    if body.get("stream"):
        return await stream(request, video, script)
    return await complete(request, video, script)


async def stream(request: web.Request, video: FakeVideo, script: list[Step]) -> web.StreamResponse:
    scenario = video.scenario
    newline = b"\r\n" if scenario.has("crlf") else b"\n"
    ping = b": ping" + newline + newline if scenario.has("keepalive") else b""
    ids = {"chunk_id": f"chatcmpl-{video.id}", "created": int(time.time()), "model": video.model}
    response = web.StreamResponse(headers=SSE_HEADERS)
    stats = stats_of(request.app)
    trace = state_of(request).trace
    stats.active += 1
    try:
        await response.prepare(request)
        await response.write(ping + sse_event(chunk("", role="assistant", **ids), newline=newline))
        for step in script:
            if step.delay:
                await asyncio.sleep(step.delay)
            if step.action == "stall":
                await wait_for_hangup(request)
                stats.disconnected += 1
                return response
            if step.action == "drop":
                if request.transport is not None:
                    request.transport.abort()
                stats.disconnected += 1
                return response
            if step.action in ("hugeevent", "hugetext"):
                await write_endless(request, response, step.action, ids, newline)
                stats.disconnected += 1
                return response
            await response.write(ping + render(step, ids, newline))
            if trace is not None and step.action in ("content", "reasoning"):
                trace(video, step.text)
        if not scenario.has("garbage") and not scenario.has("error_payload"):
            finish = "STOP" if scenario.has("upper") else "stop"
            await response.write(ping + sse_event(chunk(finish_reason=finish, **ids), newline=newline))
        if scenario.has("usage"):
            usage = {"prompt_tokens": 20, "completion_tokens": 120, "total_tokens": 140}
            trailer = {**chunk(**ids), "choices": [], "usage": usage}
            await response.write(sse_event(trailer, newline=newline))
        await response.write(ping + sse_event("[DONE]", newline=newline))
        await response.write_eof()
        stats.finished += 1
    except ConnectionError:
        stats.disconnected += 1
    finally:
        stats.active -= 1
    return response


async def write_endless(
    request: web.Request, response: web.StreamResponse, kind: str, ids: dict[str, Any], newline: bytes
) -> None:
    """`hugeevent`: one event that never ends; `hugetext`: ordinary content events without end. Either way
    until the client stops reading (or ENDLESS_BYTES went out); `FakeState.huge_sent` counts the bytes."""
    state = state_of(request)
    state.huge_sent, state.huge_finished = 0, False
    if kind == "hugeevent":
        head = sse_event(chunk("x", **ids), newline=newline).rstrip(b"\r\n")
        pieces = (head[: head.index(b'"content":"x') + 11], b"a" * (64 * 1024))
    else:
        pieces = (b"", sse_event(chunk("a" * 4096, **ids), newline=newline))
    try:
        await response.write(pieces[0])
        state.huge_sent += len(pieces[0])
        while state.huge_sent < ENDLESS_BYTES:
            await response.write(pieces[1])
            state.huge_sent += len(pieces[1])
        state.huge_finished = True
    except ConnectionError:
        pass


def render(step: Step, ids: dict[str, Any], newline: bytes) -> bytes:
    if step.action == "content":
        return sse_event(chunk(step.text, **ids), newline=newline)
    if step.action == "reasoning":
        return sse_event(chunk(reasoning=step.text, **ids), newline=newline)
    if step.action == "empty":
        return sse_event(chunk(**ids), newline=newline)
    if step.action == "error":
        error = {"message": "upstream channel error: no available render nodes", "type": "upstream_error",
                 "code": "channel_unavailable"}  # fmt: skip
        return sse_event({"error": error}, newline=newline)
    if step.action == "garbage":
        return b"".join(line + newline + newline for line in GARBAGE_LINES)
    raise ValueError(f"unknown step {step.action!r}")


async def complete(request: web.Request, video: FakeVideo, script: list[Step]) -> web.StreamResponse:
    """`stream: false`: the whole job's text in one `chat.completion`, once the job is done."""
    content: list[str] = []
    reasoning: list[str] = []
    for step in script:
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.action == "stall":
            await wait_for_hangup(request)
            return web.Response(status=504)
        if step.action == "drop":
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=502)
        if step.action == "garbage":
            return web.Response(body=b'{"id": "chatcmpl-x", "choices": [{"mess', content_type="application/json")
        if step.action == "error":
            return web.json_response({"error": {"message": "upstream channel error", "type": "upstream_error"}})
        (reasoning if step.action == "reasoning" else content).append(step.text)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return web.json_response(
        {
            "id": f"chatcmpl-{video.id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": video.model,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 120, "total_tokens": 140},
        }
    )


async def wait_for_hangup(request: web.Request, limit: float = STALL_LIMIT) -> None:
    """Say nothing, keeping the connection open, until the client goes away (or `limit` passes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.02)


async def replay(request: web.Request, path: Path) -> web.StreamResponse:
    """Stream a captured answer verbatim, cut into odd-sized writes. With `fake:drop` (in the prompt or the
    header) the connection is closed after the last byte without ending the response."""
    try:
        body = await request.json()
    except ValueError:
        body = {}
    messages = body.get("messages") if isinstance(body, dict) else None
    scenario = state_of(request).scenario(request, last_user_text(messages if isinstance(messages, list) else []))
    data = await asyncio.to_thread(path.read_bytes)
    headers = {**SSE_HEADERS, "Content-Type": "application/json"} if path.suffix == ".json" else SSE_HEADERS
    response = web.StreamResponse(headers=headers)
    stats = stats_of(request.app)
    stats.active += 1
    try:
        await response.prepare(request)
        for piece in split_cycling(data, REPLAY_CHUNK_SIZES):
            await response.write(piece)
            await asyncio.sleep(0)
        if scenario.has("drop") and request.transport is not None:
            request.transport.close()  # the bytes written so far still go out; the response never ends
            stats.disconnected += 1
            return response
        await response.write_eof()
        stats.finished += 1
    except ConnectionError:
        stats.disconnected += 1
    finally:
        stats.active -= 1
    return response


def split_cycling(data: bytes, sizes: Iterable[int]) -> list[bytes]:
    """`data` cut into pieces whose sizes cycle through `sizes`."""
    pieces: list[bytes] = []
    sizes = tuple(sizes)
    position = index = 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        pieces.append(data[position : position + size])
        position += size
        index += 1
    return pieces


def setup_routes(app: web.Application) -> None:
    """Register this format's routes on the fake gateway app."""
    app[STATS_KEY] = ChatStats()
    app.router.add_post("/v1/chat/completions", chat_completions)


__all__ = [
    "SEED_001_PIECES",
    "STATS_KEY",
    "ChatStats",
    "chunk",
    "seed_001_chunks",
    "seed_001_stream",
    "setup_routes",
    "split_cycling",
    "sse_event",
    "stats_of",
]
