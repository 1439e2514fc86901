"""The task format (seed 002 §1) end to end against the fake gateway over loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.fake_upstream import FakeUpstream
from bot.upstream import UpstreamClient
from bot.upstream.types import FailureKind, NotAVideo, Progress, Queued, ReferenceImage, TaskId
from tests.upstream.helpers import PNG, assert_mp4, collect, failed, first_task_id, progress_values, request, succeeded

ClientFactory = Callable[..., UpstreamClient]


def creates(fake: FakeUpstream):
    return fake.state.requests_to("/sora/v1/video/create", "POST")


def feeds(fake: FakeUpstream, task_id: str):
    return fake.state.requests_to(f"/sora/v1/video/feed/{task_id}", "GET")


async def test_success_then_download(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = upstream_client("task")
    events = await collect(client.generate(request("a cat fake:queue=1")))

    result = succeeded(events)
    task_id = next(e for e in events if isinstance(e, TaskId))
    assert task_id.resumable and result.task_id == task_id.task_id
    assert any(isinstance(e, Queued) for e in events)
    assert not result.authenticated
    assert result.video_url == f"{fake_upstream.base_url}/files/{result.task_id}.mp4"

    video = await client.download(result, tmp_path / "v.mp4")
    assert_mp4(tmp_path / "v.mp4", video.size)


async def test_create_body_follows_the_seed(upstream_client: ClientFactory, fake_upstream: FakeUpstream) -> None:
    images = (ReferenceImage(url="https://example.com/a.png"), ReferenceImage(data=PNG, content_type="image/png"))
    succeeded(
        await collect(
            upstream_client("task").generate(
                request("a frisbee in the park", model="sora-2-pro", seconds=15, size="1792x1024", images=images)
            )
        )
    )
    body = creates(fake_upstream)[0].json
    assert body["model"] == "sora-2-pro"
    assert body["prompt"] == "a frisbee in the park"
    assert body["duration"] == 15
    assert body["orientation"] == "landscape"
    assert body["size"] == "large"
    assert body["images"][0] == "https://example.com/a.png"
    assert body["images"][1].startswith("data:image/png;base64,")


@pytest.mark.parametrize(
    ("size", "orientation", "expected"),
    [
        ("1280x720", None, {"orientation": "landscape", "size": "small"}),
        ("720x1280", None, {"orientation": "portrait", "size": "small"}),
        ("1024x1792", None, {"orientation": "portrait", "size": "large"}),
        ("1920x1080", None, {"orientation": "landscape", "size": "large"}),
        (None, "portrait", {"orientation": "portrait"}),
        (None, None, {}),
    ],
)
def test_size_and_orientation_mapping(size: str | None, orientation: str | None, expected: dict[str, str]) -> None:
    from bot.upstream.task import create_body

    body = create_body(request("x", size=size, orientation=orientation, seconds=None))
    assert {k: body[k] for k in ("orientation", "size") if k in body} == expected
    assert body["images"] == [] and "duration" not in body


async def test_progress_is_passed_on_when_the_gateway_gives_it(upstream_client: ClientFactory) -> None:
    events = await collect(upstream_client("task").generate(request("a cat fake:progress fake:steps=8")))
    succeeded(events)
    values = progress_values(events)
    assert any(0 < v < 100 for v in values)
    assert values == sorted(values)


async def test_without_a_progress_field_running_is_still_signalled(upstream_client: ClientFactory) -> None:
    events = await collect(upstream_client("task").generate(request("a cat fake:steps=8")))
    succeeded(events)
    assert progress_values(events)[0] == 0.0
    assert not any(0 < v < 100 for v in progress_values(events))


async def test_resume_polls_an_existing_task(upstream_client: ClientFactory, fake_upstream: FakeUpstream) -> None:
    task_id = await first_task_id(upstream_client("task").generate(request("a cat")))
    events = await collect(upstream_client("task").resume(task_id))
    assert succeeded(events).task_id == task_id
    assert len(creates(fake_upstream)) == 1


@pytest.mark.parametrize(
    ("directive", "kind", "message", "create_calls"),
    [
        ("fake:401", FailureKind.AUTH, "Invalid API key", 1),
        ("fake:429", FailureKind.RATE_LIMITED, "Rate limit reached", 4),
        ("fake:500", FailureKind.UPSTREAM, "The server had an error", 1),
    ],
)
async def test_create_faults(
    upstream_client: ClientFactory,
    fake_upstream: FakeUpstream,
    directive: str,
    kind: FailureKind,
    message: str,
    create_calls: int,
) -> None:
    end = failed(await collect(upstream_client("task").generate(request(f"a cat {directive}"))))
    assert (end.kind, end.task_id) == (kind, None)
    assert message in end.reason
    assert len(creates(fake_upstream)) == create_calls


@pytest.mark.parametrize(
    ("directive", "kind", "message"),
    [
        ("fake:moderation", FailureKind.MODERATION, "Content Policy Violation"),
        ("fake:moderation_late", FailureKind.MODERATION, "Content Policy Violation"),
        ("fake:fail", FailureKind.UPSTREAM, "upstream render failed"),
    ],
)
async def test_failures_reported_by_the_feed(
    upstream_client: ClientFactory, directive: str, kind: FailureKind, message: str
) -> None:
    end = failed(await collect(upstream_client("task").generate(request(f"a cat {directive}"))))
    assert end.kind is kind
    assert message in end.reason
    assert end.task_id is not None and end.task_id.startswith("task_")


async def test_a_stalled_task_ends_at_the_job_timeout(upstream_client: ClientFactory) -> None:
    events = await collect(upstream_client("task", job_timeout=0.5).generate(request("a cat fake:stall")))
    end = failed(events)
    assert end.kind is FailureKind.TIMEOUT and end.task_id is not None
    assert any(isinstance(e, Progress) for e in events)


@pytest.mark.parametrize("directive", ["fake:drop", "fake:garbage", "fake:poll429"])
async def test_a_bad_feed_poll_is_retried(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream, directive: str
) -> None:
    result = succeeded(await collect(upstream_client("task").generate(request(f"a cat {directive}"))))
    assert result.task_id is not None
    assert len(feeds(fake_upstream, result.task_id)) >= 2


async def test_an_html_video_is_refused(upstream_client: ClientFactory, tmp_path: Path) -> None:
    client = upstream_client("task")
    result = succeeded(await collect(client.generate(request("a cat fake:html"))))
    with pytest.raises(NotAVideo):
        await client.download(result, tmp_path / "v.mp4")


def test_flags() -> None:
    from bot.upstream.task import TaskClient

    assert TaskClient.api_format == "task"
    assert TaskClient.supports_resume
    assert not TaskClient.supports_remix and not TaskClient.supports_cancel
