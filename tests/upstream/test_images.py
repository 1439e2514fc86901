"""The images (DALL·E-style) format end to end against the fake gateway over loopback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.fake_upstream import FakeUpstream
from bot.upstream import UpstreamClient
from bot.upstream.types import BadRequest, FailureKind, NotAVideo, Queued, ReferenceImage, TaskId
from tests.upstream.helpers import PNG, assert_mp4, collect, failed, request, succeeded

ClientFactory = Callable[..., UpstreamClient]


def calls(fake: FakeUpstream):
    return fake.state.requests_to("/v1/images/", "POST")


async def test_success_then_download(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream, tmp_path: Path
) -> None:
    client = upstream_client("images")
    events = await collect(client.generate(request("a dog rolling in the grass")))

    assert isinstance(events[0], Queued)
    assert not any(isinstance(e, TaskId) for e in events)
    result = succeeded(events)
    assert result.video_url.startswith(f"{fake_upstream.base_url}/files/")
    [call] = calls(fake_upstream)
    assert call.path == "/v1/images/generations"
    assert call.json == {"model": "sora-2", "prompt": "a dog rolling in the grass", "n": 1, "size": "1280x720"}

    video = await client.download(result, tmp_path / "v.mp4")
    assert_mp4(tmp_path / "v.mp4", video.size)


async def test_url_references_ride_on_generations(upstream_client: ClientFactory, fake_upstream: FakeUpstream) -> None:
    images = (ReferenceImage(url="https://e.com/1.png"), ReferenceImage(url="https://e.com/2.png"))
    succeeded(await collect(upstream_client("images").generate(request("a dog", images=images[:1]))))
    succeeded(await collect(upstream_client("images").generate(request("a dog", images=images))))
    first, second = calls(fake_upstream)
    assert first.path == second.path == "/v1/images/generations"
    assert first.json["image"] == "https://e.com/1.png"
    assert second.json["image"] == ["https://e.com/1.png", "https://e.com/2.png"]


async def test_image_bytes_go_to_edits_as_multipart(
    upstream_client: ClientFactory, fake_upstream: FakeUpstream
) -> None:
    image = ReferenceImage(data=PNG, filename="body-lotion.png", content_type="image/png")
    succeeded(await collect(upstream_client("images").generate(request("狗狗在草地上打滚", images=(image,)))))
    [call] = calls(fake_upstream)
    assert call.path == "/v1/images/edits"
    assert call.form["model"] == "sora-2"
    assert call.form["prompt"] == "狗狗在草地上打滚"
    file = call.form["image[]"]
    assert (file["filename"], file["content_type"], file["data"]) == ("body-lotion.png", "image/png", PNG)


@pytest.mark.parametrize(
    ("directive", "kind", "message", "attempts"),
    [
        ("fake:401", FailureKind.AUTH, "Invalid API key", 1),
        ("fake:429", FailureKind.RATE_LIMITED, "Rate limit reached", 4),
        ("fake:500", FailureKind.UPSTREAM, "The server had an error", 1),
        ("fake:moderation", FailureKind.MODERATION, "rejected as a result of our safety system", 1),
        ("fake:moderation_late", FailureKind.MODERATION, "rejected as a result of our safety system", 1),
        ("fake:fail", FailureKind.UPSTREAM, "Video generation failed upstream", 1),
        ("fake:drop", FailureKind.UPSTREAM, "dropped the connection", 1),  # the blocking create is never resent
        ("fake:garbage", FailureKind.UPSTREAM, "not JSON", 1),
        ("fake:b64", FailureKind.UPSTREAM, "b64_json", 1),
    ],
)
async def test_faults(
    upstream_client: ClientFactory,
    fake_upstream: FakeUpstream,
    directive: str,
    kind: FailureKind,
    message: str,
    attempts: int,
) -> None:
    end = failed(await collect(upstream_client("images").generate(request(f"a dog {directive}"))))
    assert end.kind is kind
    assert message in end.reason
    assert len(calls(fake_upstream)) == attempts


async def test_a_stalled_call_ends_at_the_job_timeout(upstream_client: ClientFactory) -> None:
    # The stall timeout (1 s in the fixture) must not cut the long-blocking call; the job timeout does.
    end = failed(await collect(upstream_client("images", job_timeout=0.5).generate(request("a dog fake:stall"))))
    assert end.kind is FailureKind.TIMEOUT


async def test_a_render_longer_than_the_stall_timeout_still_succeeds(upstream_client: ClientFactory) -> None:
    client = upstream_client("images", stall_timeout=0.1)
    succeeded(await collect(client.generate(request("a dog fake:steps=4 fake:interval=0.06"))))


async def test_an_html_video_is_refused(upstream_client: ClientFactory, tmp_path: Path) -> None:
    client = upstream_client("images")
    result = succeeded(await collect(client.generate(request("a dog fake:html"))))
    with pytest.raises(NotAVideo):
        await client.download(result, tmp_path / "v.mp4")


async def test_no_resume_and_no_cancel(upstream_client: ClientFactory) -> None:
    client = upstream_client("images")
    assert not (client.supports_resume or client.supports_cancel or client.supports_remix)
    assert await client.cancel("anything") is False
    end = failed(await collect(client.resume("anything")))
    assert end.kind is BadRequest.kind
