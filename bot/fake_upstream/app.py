"""A faithful fake video gateway: all four wire formats of the seeds, with controllable speed and faults.

Used by every test and benchmark, and by `sora-bot fake-upstream` for trying the bot without a real gateway.

## Controlling a request
Put directives in the prompt (they survive the trip through Discord) or in an `X-Fake-Scenario` header
(comma-separated, same words). A directive is `fake:NAME` or `fake:NAME=VALUE`:

| directive | effect |
| --- | --- |
| `fake:steps=N` | N progress updates before the video is ready (default from the app config) |
| `fake:interval=S` | seconds between progress updates (default from the app config) |
| `fake:queue=N` | report queue position N before starting |
| `fake:bytes=N` (or `=12MiB`) | the served video is N bytes long (a real MP4 padded with a `free` box) |
| `fake:401`, `fake:429`, `fake:500` | the create call answers with that status |
| `fake:moderation` | rejected by the content policy (in the gateway's own way for each format) |
| `fake:fail` | the job starts, progresses a little, then fails upstream |
| `fake:stall` | the stream (or the job) goes silent forever after a little progress |
| `fake:drop` | the connection is dropped mid-stream |
| `fake:garbage` | the stream carries undecodable junk |
| `fake:html` | the "video" link serves an HTML error page |
| `fake:huge` | the video is 120 MiB, over every Discord upload limit |
| `fake:poll429` | polls answer 429 once before answering normally |
| `fake:slowdownload=N` | the video file is served at N bytes/s (`=0`: headers, then silence) |
| `fake:result_host=HOST` | video and thumbnail links name HOST (e.g. `localhost`, `127.0.0.2`) instead of the gateway |
| `fake:redirect_host=HOST` | the video file answers 302 to the same file on HOST |
| `fake:redirects=N` | the video file answers N chained 302s (same host) before the file |
| `fake:signed` | video and thumbnail links carry a `sig=` signature query parameter |
| `fake:hugeerror` | the create call answers HTTP 500 with an endless error body (`HUGE_BYTES`, streamed) |
| `fake:hugejson` | the answer (the first poll; the create answer for chat and images) is an endless JSON body |
| `fake:hugeevent` | chat: one stream event that never ends (no blank line) |
| `fake:hugetext` | chat: ordinary content events without end, far past any sane answer length |

The `huge*` bodies are written as the client reads them; `FakeState.huge_sent` counts the bytes that went out
(so a test can tell that the client stopped reading early) and `FakeState.huge_finished` says the whole body went.

The gateway accepts any bearer key unless the app was built with `api_key=...`, in which case others get 401.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

SCENARIO_HEADER = "X-Fake-Scenario"
STALL_FOREVER = 600.0
DIRECTIVE = re.compile(r"fake:([a-z0-9_]+)(?:=([\w.]+))?", re.IGNORECASE)
HUGE_BYTES = 120 * 1024 * 1024
ENDLESS_BYTES = 256 * 1024 * 1024  # what the `huge*` directives would send if nobody stopped reading
SIZE_VALUE = re.compile(r"^(\d+(?:\.\d+)?)(b|kib|mib|gib|kb|mb|gb)?$", re.IGNORECASE)
SIZE_UNITS = {None: 1, "b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9}


def sample_mp4() -> bytes:
    return resources.files("bot.fake_upstream").joinpath("assets/sample.mp4").read_bytes()


def sample_thumbnail() -> bytes:
    return resources.files("bot.fake_upstream").joinpath("assets/thumb.png").read_bytes()


@dataclass(frozen=True, slots=True)
class FakeConfig:
    steps: int = 5
    interval: float = 0.05
    api_key: str | None = None  # when set, only this key is accepted
    replay_file: str | None = None  # an SSE transcript served verbatim on the chat endpoint


@dataclass
class Scenario:
    """What one request asked the fake to do."""

    steps: int
    interval: float
    queue: int | None = None
    video_bytes: int | None = None
    faults: frozenset[str] = frozenset()
    values: dict[str, str] = field(default_factory=dict)  # `fake:NAME=VALUE` directives not read above

    def has(self, fault: str) -> bool:
        return fault in self.faults

    def value(self, name: str) -> str | None:
        return self.values.get(name)

    @property
    def total_seconds(self) -> float:
        return self.steps * self.interval

    @classmethod
    def parse(cls, text: str, config: FakeConfig) -> Scenario:
        steps, interval, queue, video_bytes = config.steps, config.interval, None, None
        faults: set[str] = set()
        values: dict[str, str] = {}
        for name, value in DIRECTIVE.findall(text or ""):
            name = name.lower()
            if name == "steps" and value:
                steps = max(0, int(float(value)))
            elif name == "interval" and value:
                interval = max(0.0, float(value))
            elif name == "queue" and value:
                queue = int(float(value))
            elif name == "bytes" and value:
                video_bytes = parse_size(value)
            elif name == "huge":
                video_bytes = HUGE_BYTES
            else:
                faults.add(name)
                if value:
                    values[name] = value
        return cls(steps, interval, queue, video_bytes, frozenset(faults), values)


def parse_size(value: str) -> int:
    match = SIZE_VALUE.match(value.strip())
    if not match:
        raise ValueError(f"not a size: {value!r}")
    number, unit = match.groups()
    return int(float(number) * SIZE_UNITS[unit.lower() if unit else None])


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None
    form: dict[str, Any] = field(default_factory=dict)  # text fields; files as {"filename", "size", "content_type"}

    @property
    def authorized(self) -> bool:
        return self.headers.get("Authorization", "").startswith("Bearer ")


@dataclass
class FakeVideo:
    """A job the fake gateway is "rendering". Progress is a function of time, like a real gateway."""

    id: str
    prompt: str
    model: str
    scenario: Scenario
    created: float = field(default_factory=time.monotonic)
    seconds: int | None = None
    size: str | None = None
    remixed_from: str | None = None
    cancelled: bool = False
    polls: int = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.created

    def state(self) -> tuple[str, float]:
        """(status, progress percent) right now: queued | in_progress | completed | failed."""
        if self.cancelled:
            return "failed", 0.0
        queue_time = self.scenario.interval if self.scenario.queue else 0.0
        elapsed = self.elapsed() - queue_time
        if elapsed < 0:
            return "queued", 0.0
        total = self.scenario.total_seconds
        if self.scenario.has("stall"):
            return "in_progress", 20.0
        if self.scenario.has("fail") and elapsed >= total / 2:
            return "failed", 50.0
        if elapsed >= total:
            return "completed", 100.0
        return "in_progress", round(100.0 * elapsed / total, 1) if total else 0.0


@dataclass
class FakeState:
    config: FakeConfig
    requests: list[RecordedRequest] = field(default_factory=list)
    videos: dict[str, FakeVideo] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    # Benchmarks set this to learn when each piece of a job's stream went out: `trace(video, text)` is called
    # right after the chat format wrote a status/progress/result text (e.g. "16..", "> 生成完成 ✅ ...").
    trace: Callable[[FakeVideo, str], None] | None = None
    huge_sent: int = 0  # bytes of the last `huge*` body that went out
    huge_finished: bool = False  # ... and whether all of it did

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids):06d}"

    def scenario(self, request: web.Request, prompt: str) -> Scenario:
        header = request.headers.get(SCENARIO_HEADER, "")
        words = " ".join(f"fake:{part.strip()}" for part in header.split(",") if part.strip())
        return Scenario.parse(f"{prompt} {words}", self.config)

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[RecordedRequest]:
        return [
            r for r in self.requests if r.path.startswith(path_prefix) and (method is None or r.method == method)
        ]

    def video_file_url(self, request: web.Request, video: FakeVideo) -> str:
        return result_url(request, video, f"/files/{video.id}.mp4")

    def thumbnail_url(self, request: web.Request, video: FakeVideo) -> str:
        return result_url(request, video, f"/files/{video.id}.png")


def result_url(request: web.Request, video: FakeVideo, path: str) -> str:
    url = request.url.with_path(path).with_query(None)
    host = video.scenario.value("result_host")
    if host:
        url = url.with_host(host)
    if video.scenario.has("signed"):
        url = url.with_query({"expires": "1999999999", "sig": "c2lnbmVkLWJ5LXRoZS1jZG4"})
    return str(url)


STATE_KEY = web.AppKey("fake_state", FakeState)
FORM_KEY = web.RequestKey("fake_form", dict)  # the multipart form, already read by the middleware


def state_of(request: web.Request) -> FakeState:
    return request.app[STATE_KEY]


def openai_error(status: int, message: str, *, code: str | None = None, type_: str = "invalid_request_error"):
    return web.json_response(
        {"error": {"message": message, "type": type_, "code": code, "param": None}}, status=status
    )


def create_fault_response(scenario: Scenario) -> web.Response | None:
    """The HTTP-level faults every format's create call honours in the same way."""
    if scenario.has("401"):
        return openai_error(401, "Invalid API key provided", code="invalid_api_key", type_="authentication_error")
    if scenario.has("429"):
        response = openai_error(429, "Rate limit reached for requests", code="rate_limit_exceeded")
        response.headers["Retry-After"] = "0"
        return response
    if scenario.has("500"):
        return openai_error(500, "The server had an error while processing your request", type_="server_error")
    return None


async def stream_huge(
    request: web.Request, *, head: bytes, tail: bytes, status: int = 200, content_type: str = "application/json"
) -> web.StreamResponse:
    """A body of `ENDLESS_BYTES` (`head`, filler, `tail`), chunked, written only as fast as the client reads."""
    state = state_of(request)
    state.huge_sent, state.huge_finished = 0, False
    response = web.StreamResponse(status=status, headers={"Content-Type": content_type})
    response.enable_chunked_encoding()
    filler = b"a" * (64 * 1024)
    try:
        await response.prepare(request)
        await response.write(head)
        state.huge_sent += len(head)
        while state.huge_sent < ENDLESS_BYTES:
            await response.write(filler)
            state.huge_sent += len(filler)
        await response.write(tail)
        await response.write_eof()
        state.huge_finished = True
    except ConnectionError:
        pass  # the client stopped reading, as it should
    return response


async def huge_error(request: web.Request) -> web.StreamResponse:
    return await stream_huge(request, status=500, head=b'{"error": {"message": "', tail=b'"}}')


async def huge_json(request: web.Request) -> web.StreamResponse:
    return await stream_huge(request, head=b'{"id": "huge", "status": "in_progress", "padding": "', tail=b'"}')


async def video_body(video: FakeVideo) -> AsyncIterator[bytes]:
    """The MP4 bytes: the sample file, padded with a trailing `free` box up to the requested size."""
    data = sample_mp4()
    target = video.scenario.video_bytes
    yield data
    if target and target > len(data) + 8:
        padding = target - len(data)
        yield padding.to_bytes(4, "big") + b"free"
        remaining = padding - 8
        block = bytes(1024 * 1024)
        while remaining > 0:
            chunk = block[: min(len(block), remaining)]
            remaining -= len(chunk)
            yield chunk


def video_length(video: FakeVideo) -> int:
    base = len(sample_mp4())
    target = video.scenario.video_bytes
    return target if target and target > base + 8 else base


async def serve_video(request: web.Request, video: FakeVideo) -> web.StreamResponse:
    if video.scenario.has("html"):
        return web.Response(
            text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html", status=200
        )
    response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
    response.content_length = video_length(video)
    await response.prepare(request)
    rate = video.scenario.value("slowdownload")
    try:
        if rate is not None:
            await write_slowly(response, video, float(rate))
        else:
            async for chunk in video_body(video):
                await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up (too slow for it, say)
    return response


SLOW_TICK = 0.05  # seconds between the writes of a slow download


async def write_slowly(response: web.StreamResponse, video: FakeVideo, rate: float) -> None:
    """The video at `rate` bytes/s, a small piece every SLOW_TICK; a rate of 0 sends nothing at all."""
    if rate <= 0:
        await asyncio.sleep(STALL_FOREVER)
        return
    piece = max(1, int(rate * SLOW_TICK))
    async for chunk in video_body(video):
        for start in range(0, len(chunk), piece):
            await response.write(chunk[start : start + piece])
            await asyncio.sleep(SLOW_TICK)


async def serve_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    video_id, _, extension = name.rpartition(".")
    video = state_of(request).videos.get(video_id)
    if video is None:
        return web.Response(status=404, text="not found")
    redirect = file_redirect(request, video, extension)
    if redirect is not None:
        return redirect
    if extension == "png":
        return web.Response(body=sample_thumbnail(), content_type="image/png")
    return await serve_video(request, video)


def file_redirect(request: web.Request, video: FakeVideo, extension: str) -> web.Response | None:
    """The 302 the `redirect_host` / `redirects=N` directives ask for on this hop, if any."""
    if extension != "mp4":
        return None
    hop = int(request.query.get("hop", "0"))
    target = request.url.with_query({"hop": str(hop + 1)})
    host = video.scenario.value("redirect_host")
    chain = int(float(video.scenario.value("redirects") or 0))
    if host and hop == 0:
        target = target.with_host(host)
    elif hop >= chain:
        return None
    return web.Response(status=302, headers={"Location": str(target)})


@web.middleware
async def record_and_authenticate(request: web.Request, handler):
    state = state_of(request)
    recorded = RecordedRequest(
        method=request.method,
        path=request.path,
        query=dict(request.query),
        headers={k: v for k, v in request.headers.items()},
    )
    if request.can_read_body and request.content_type == "application/json":
        try:
            recorded.json = await request.json()
        except ValueError:
            recorded.json = None
    elif request.can_read_body and request.content_type.startswith("multipart/"):
        recorded.form = await read_multipart(request)
        request[FORM_KEY] = recorded.form
    state.requests.append(recorded)
    if request.path.startswith("/files/"):
        return await handler(request)
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
        return openai_error(401, "Missing bearer token", type_="authentication_error")
    if state.config.api_key is not None and auth.removeprefix("Bearer ").strip() != state.config.api_key:
        return openai_error(401, "Invalid API key provided", code="invalid_api_key", type_="authentication_error")
    return await handler(request)


async def read_multipart(request: web.Request) -> dict[str, Any]:
    """Multipart fields by name; a repeated name (e.g. `image[]`) becomes a list. Files keep their bytes."""
    form: dict[str, Any] = {}
    reader = await request.multipart()
    async for part in reader:
        if part.filename is not None:
            data = await part.read()
            value: Any = {
                "filename": part.filename,
                "size": len(data),
                "content_type": part.headers.get("Content-Type"),
                "data": bytes(data),
            }
        else:
            value = await part.text()
        name = part.name or ""
        if name in form:
            existing = form[name]
            form[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            form[name] = value
    return form


async def list_models(request: web.Request) -> web.Response:
    names = ["sora-2", "sora-2-pro", "sora-2-hd", "veo-3.1-generate-preview", "veo-3.1-fast-generate-preview"]
    return web.json_response(
        {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "fake"} for n in names]}
    )


def create_app(config: FakeConfig | None = None) -> web.Application:
    from bot.fake_upstream import chat, images, task, videos

    app = web.Application(middlewares=[record_and_authenticate], client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = FakeState(config or FakeConfig())
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/files/{name}", serve_file)
    for module in (chat, videos, task, images):
        module.setup_routes(app)
    return app


def scenario_text(headers: Mapping[str, str]) -> str:
    return headers.get(SCENARIO_HEADER, "")
