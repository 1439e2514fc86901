"""Small helpers shared by the upstream tests (the fixtures themselves live in `tests/fixtures/upstream.py`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path

from aiohttp import web

from bot.fake_upstream.app import sample_thumbnail
from bot.upstream.types import Event, Failed, Progress, Succeeded, TaskId, VideoRequest

PNG = sample_thumbnail()


def request(prompt: str = "a cat on a piano", **fields: object) -> VideoRequest:
    values: dict[str, object] = {"model": "sora-2", "seconds": 8, "size": "1280x720"}
    values.update(fields)
    return VideoRequest(prompt=prompt, **values)  # type: ignore[arg-type]


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    async with aclosing(events) as stream:  # type: ignore[type-var]
        return [event async for event in stream]


async def first_task_id(events: AsyncIterator[Event]) -> str:
    """Read a stream up to its task id, then close it (the job keeps running upstream)."""
    async with aclosing(events) as stream:  # type: ignore[type-var]
        async for event in stream:
            if isinstance(event, TaskId):
                return event.task_id
            assert not isinstance(event, Succeeded | Failed), event
    raise AssertionError("no task id")


def terminal(events: list[Event]) -> Event:
    ends = [e for e in events if isinstance(e, Succeeded | Failed)]
    assert len(ends) == 1, events
    assert events[-1] is ends[0], events
    return ends[0]


def succeeded(events: list[Event]) -> Succeeded:
    end = terminal(events)
    assert isinstance(end, Succeeded), end
    return end


def failed(events: list[Event]) -> Failed:
    end = terminal(events)
    assert isinstance(end, Failed), end
    return end


def progress_values(events: list[Event]) -> list[float]:
    return [e.percent for e in events if isinstance(e, Progress)]


def assert_mp4(path: Path, size: int | None = None) -> None:
    data = path.read_bytes()
    assert data[4:8] == b"ftyp", data[:16]
    if size is not None:
        assert len(data) == size


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(routes: dict[tuple[str, str], Handler]) -> AsyncIterator[str]:
    """Serve `routes` ({(method, path): handler}) on 127.0.0.1 port 0; yields the base URL."""
    app = web.Application()
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
