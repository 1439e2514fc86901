"""Progress and result messages stay within Discord's limits and say the right things."""

from __future__ import annotations

import pytest

from bot.render import JobView, Phase, ResultInfo, progress_bar, progress_payload, result_payload
from bot.upstream.types import FailureKind

HOSTILE = "@everyone <@&123> **bold** \u202e" + "字" * 5000


def view(**changes) -> JobView:
    base = {
        "generation_id": 42,
        "prompt": HOSTILE,
        "model_label": "Sora 2",
        "seconds": 10,
        "size": "1280x720",
        "requester_id": 99,
        "phase": Phase.RUNNING,
        "elapsed": 75.0,
        "percent": 36.0,
    }
    return JobView(**{**base, **changes})


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_progress_payload_fits_discord_limits(phase: Phase, locale: str) -> None:
    payload = progress_payload(view(phase=phase, position=3, failure=FailureKind.MODERATION), locale)
    assert payload.content is not None and len(payload.content) <= 2000
    embed = payload.embeds[0]
    assert len(embed.title or "") <= 256
    assert len(embed.description or "") <= 4096
    assert len(embed) <= 6000
    cancellable = payload.view is not None
    assert cancellable == (phase not in (Phase.DONE, Phase.FAILED, Phase.CANCELLED))


def test_progress_shows_bar_state_and_elapsed() -> None:
    payload = progress_payload(view(), "en")
    embed = payload.embeds[0]
    assert "Generating" in (embed.description or "")
    assert "36%" in (embed.description or "")
    assert "1m 15s" in (embed.footer.text or "")
    assert payload.content == "Requested by <@99>"
    assert progress_bar(None).count("▱") == 16


def test_failure_says_what_happened_and_about_the_credit() -> None:
    payload = progress_payload(view(phase=Phase.FAILED, failure=FailureKind.MODERATION, refunded=True), "en")
    description = payload.embeds[0].description or ""
    assert "content policy" in description
    assert "refunded" in description


def test_result_link_when_too_big_and_attached_otherwise() -> None:
    info = ResultInfo(
        generation_id=7,
        prompt=HOSTILE,
        model_label="Veo 3.1",
        seconds=8,
        size="1920x1080",
        requester_id=5,
        elapsed=130,
        video_bytes=120 * 2**20,
        attached=False,
        video_url="https://cdn.example.com/v/7.mp4",
        thumbnail_url="https://cdn.example.com/v/7.png",
        upload_limit=10 * 2**20,
    )
    linked = result_payload(info, "en")
    assert linked.content is not None and len(linked.content) <= 2000
    assert "120.0 MiB" in linked.content and "10.0 MiB" in linked.content
    assert "https://cdn.example.com/v/7.mp4" in linked.content
    assert linked.view is not None
    assert any(getattr(item, "url", None) == info.video_url for item in linked.view.children)
    assert linked.embeds and linked.embeds[0].image.url == info.thumbnail_url
    from dataclasses import replace

    attached = result_payload(replace(info, attached=True), "en")
    assert "upload limit" not in (attached.content or "")
    assert not attached.embeds
    custom_ids = {getattr(item, "custom_id", None) for item in attached.view.children}  # type: ignore[union-attr]
    assert custom_ids == {"sora:remix:7", "sora:reroll:7"}
