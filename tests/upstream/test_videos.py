"""The videos format end to end against the fake gateway over loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.fake_upstream import FakeUpstream
from bot.upstream import UpstreamClient
from bot.upstream.types import FailureKind, NotAVideo, Progress, Queued, ReferenceImage, TaskId, TooLarge
from tests.upstream.helpers import (
    PNG,
    assert_mp4,
    collect,
    failed,
    first_task_id,
    progress_values,
    request,
    succeeded,
)

ClientFactory = Callable[..., UpstreamClient]


def creates(fake: FakeUpstream):
    return fake.state.requests_to("/v1/videos", "POST")


def polls(fake: FakeUpstream, video_id: str):
    return [r for r in fake.state.requests_to(f"/v1/videos/{video_id}", "GET") if r.path == f"/v1/videos/{video_id}"]


async def test_success_then_download_a_real_mp4(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = upstream_client("videos")
    events = await collect(client.generate(request("a cat fake:queue=1")))

    result = succeeded(events)
    task_ids = [e for e in events if isinstance(e, TaskId)]
    assert [t.resumable for t in task_ids] == [True]
    assert result.task_id == task_ids[0].task_id
    assert any(isinstance(e, Queued) for e in events)
    values = progress_values(events)
    assert values == sorted(values) and values[-1] == 100.0
    assert result.video_url == f"{fake_upstream.base_url}/v1/videos/{result.task_id}/content"
    assert result.authenticated

    create = creates(fake_upstream)[0]
    assert create.json == {"model": "sora-2", "prompt": "a cat fake:queue=1", "seconds": 8, "size": "1280x720"}

    video = await client.download(result, tmp_path / "v.mp4")
    assert video.content_type == "video/mp4"
    assert_mp4(tmp_path / "v.mp4", video.size)
    content = fake_upstream.state.requests_to(f"/v1/videos/{result.task_id}/content")
    assert content and content[-1].authorized

    thumb = await client.download(result, tmp_path / "t.png", thumbnail=True)
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and thumb.size > 0
    assert fake_upstream.state.requests_to(f"/v1/videos/{result.task_id}/content")[-1].query == {"variant": "thumbnail"}


async def test_a_direct_video_url_on_the_object_is_used_without_the_key(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = upstream_client("videos")
    result = succeeded(await collect(client.generate(request("a cat fake:video_url"))))
    assert result.video_url.endswith(f"/files/{result.task_id}.mp4")
    assert not result.authenticated
    assert_mp4(Path((await client.download(result, tmp_path / "v.mp4")).path))


async def test_one_url_reference_uses_the_official_object_shape(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream
) -> None:
    image = ReferenceImage(url="https://example.com/ref.png")
    succeeded(await collect(upstream_client("videos").generate(request("a cat", images=(image,)))))
    assert creates(fake_upstream)[0].json["input_reference"] == {"image_url": "https://example.com/ref.png"}


@pytest.mark.parametrize(
    ("model", "urls"),
    [
        ("veo-3.1-fast-generate-preview", ["https://e.com/1.png"]),
        ("sora-2", ["https://e.com/1.png", "https://e.com/2.png"]),
    ],
)
async def test_veo_or_several_url_references_use_a_list(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream, model: str, urls: list[str]
) -> None:
    images = tuple(ReferenceImage(url=u) for u in urls)
    succeeded(await collect(upstream_client("videos").generate(request("a lion", model=model, images=images))))
    assert creates(fake_upstream)[0].json["input_reference"] == urls


async def test_image_bytes_go_multipart(upstream_client: ClientFactory, fake_upstream: FakeUpstream) -> None:
    image = ReferenceImage(data=PNG, filename="ref.png", content_type="image/png")
    succeeded(await collect(upstream_client("videos").generate(request("make it move", images=(image,)))))

    create = creates(fake_upstream)[0]
    assert create.headers["Content-Type"].startswith("multipart/form-data")
    assert create.json is None
    form = create.form
    assert (form["model"], form["prompt"], form["seconds"], form["size"]) == ("sora-2", "make it move", "8", "1280x720")
    reference = form["input_reference"]
    assert reference["filename"] == "ref.png"
    assert reference["content_type"] == "image/png"
    assert reference["data"] == PNG


async def test_remix_posts_to_the_parent_and_polls_the_new_video(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream
) -> None:
    client = upstream_client("videos")
    parent = succeeded(await collect(client.generate(request("a cat"))))
    assert parent.task_id is not None

    events = await collect(client.generate(request("now in the rain", remix_of=parent.task_id)))

    result = succeeded(events)
    remix_calls = fake_upstream.state.requests_to(f"/v1/videos/{parent.task_id}/remix", "POST")
    assert len(remix_calls) == 1 and remix_calls[0].json == {"prompt": "now in the rain"}
    assert result.task_id != parent.task_id
    assert fake_upstream.state.videos[result.task_id].remixed_from == parent.task_id
    assert polls(fake_upstream, result.task_id)


async def test_the_poll_after_header_is_honoured(upstream_client: ClientFactory, fake_upstream: FakeUpstream) -> None:
    # Our own cadence would wait 30 s before the first poll; the gateway asks for 10 ms, so the job finishes.
    client = upstream_client("videos", poll_interval=30.0, job_timeout=5.0)
    result = succeeded(await collect(client.generate(request("a cat fake:poll_after=10"))))
    assert result.task_id is not None
    assert len(polls(fake_upstream, result.task_id)) >= 2


async def test_resume_picks_up_an_existing_video(upstream_client: ClientFactory, fake_upstream: FakeUpstream) -> None:
    client = upstream_client("videos")
    video_id = await first_task_id(client.generate(request("a cat")))

    resumed = upstream_client("videos")  # a fresh client, as after a restart
    events = await collect(resumed.resume(video_id))

    assert succeeded(events).task_id == video_id
    assert len(creates(fake_upstream)) == 1


async def test_cancel_deletes_and_the_job_ends_cancelled(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream
) -> None:
    client = upstream_client("videos")
    video_id = await first_task_id(client.generate(request("a cat fake:stall")))

    assert await client.cancel(video_id) is True
    assert fake_upstream.state.requests_to(f"/v1/videos/{video_id}", "DELETE")
    end = failed(await collect(client.resume(video_id)))
    assert end.kind is FailureKind.CANCELLED and end.task_id == video_id
    assert await client.cancel("video_nonexistent") is False


# --- faults ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "kind", "message", "create_calls"),
    [
        ("fake:401", FailureKind.AUTH, "Invalid API key", 1),
        ("fake:429", FailureKind.RATE_LIMITED, "Rate limit reached", 4),  # 429 = not accepted: retried, bounded
        ("fake:500", FailureKind.UPSTREAM, "The server had an error", 1),  # may have been accepted: never retried
        ("fake:moderation", FailureKind.MODERATION, "blocked by our moderation system", 1),
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
    end = failed(await collect(upstream_client("videos").generate(request(f"a cat {directive}"))))
    assert end.kind is kind
    assert message in end.reason
    assert end.task_id is None
    assert len(creates(fake_upstream)) == create_calls


@pytest.mark.parametrize(
    ("directive", "kind", "message"),
    [
        ("fake:moderation_late", FailureKind.MODERATION, "blocked by our moderation system after generation"),
        ("fake:fail", FailureKind.UPSTREAM, "render node lost"),
    ],
)
async def test_failures_reported_by_a_poll(
    upstream_client: ClientFactory, directive: str, kind: FailureKind, message: str
) -> None:
    events = await collect(upstream_client("videos").generate(request(f"a cat {directive}")))
    end = failed(events)
    assert end.kind is kind
    assert message in end.reason
    assert end.task_id is not None and end.task_id.startswith("video_")
    assert any(isinstance(e, Progress) for e in events)


async def test_a_stalled_job_ends_at_the_job_timeout(upstream_client: ClientFactory) -> None:
    end = failed(await collect(upstream_client("videos", job_timeout=0.5).generate(request("a cat fake:stall"))))
    assert end.kind is FailureKind.TIMEOUT
    assert end.task_id is not None


@pytest.mark.parametrize("directive", ["fake:drop", "fake:garbage", "fake:poll429"])
async def test_a_bad_poll_is_retried(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream, directive: str
) -> None:
    result = succeeded(await collect(upstream_client("videos").generate(request(f"a cat {directive}"))))
    assert result.task_id is not None
    assert len(polls(fake_upstream, result.task_id)) >= 2


async def test_an_html_video_is_refused(upstream_client: ClientFactory, tmp_path: Path) -> None:
    client = upstream_client("videos")
    result = succeeded(await collect(client.generate(request("a cat fake:html"))))
    with pytest.raises(NotAVideo):
        await client.download(result, tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()


async def test_a_huge_video_is_refused(upstream_client: ClientFactory, tmp_path: Path) -> None:
    client = upstream_client("videos", max_download_bytes=8 * 1024 * 1024)
    result = succeeded(await collect(client.generate(request("a cat fake:huge"))))
    with pytest.raises(TooLarge):
        await client.download(result, tmp_path / "v.mp4")


async def test_the_served_size_is_what_was_asked(upstream_client: ClientFactory, tmp_path: Path) -> None:
    client = upstream_client("videos")
    result = succeeded(await collect(client.generate(request("a cat fake:bytes=300KiB"))))
    video = await client.download(result, tmp_path / "v.mp4")
    assert video.size == 300 * 1024
    assert_mp4(tmp_path / "v.mp4", 300 * 1024)


def test_flags() -> None:
    from bot.upstream.videos import VideosClient

    assert VideosClient.api_format == "videos"
    assert VideosClient.supports_remix and VideosClient.supports_resume and VideosClient.supports_cancel
