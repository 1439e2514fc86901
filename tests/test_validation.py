"""Input checks before anything is spent."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.validation import (
    AttachmentInfo,
    InvalidRequest,
    check_attachment_metadata,
    choose_parameters,
    clean_prompt,
    sniff_image,
)

SETTINGS = load_settings(None)


def test_prompt_cleaning() -> None:
    assert clean_prompt("  a\u200b cat \u202e ") == "a cat"
    with pytest.raises(InvalidRequest) as empty:
        clean_prompt(" \u200b\u200d ")
    assert empty.value.key == "error.prompt_empty"
    with pytest.raises(InvalidRequest) as long:
        clean_prompt("x" * 101, limit=100)
    assert long.value.key == "error.prompt_too_long"
    assert long.value.values == {"length": 101, "limit": 100}


@pytest.mark.parametrize(
    ("model", "seconds", "shape", "expected"),
    [
        (None, None, None, ("sora-2", 10, "1280x720", "landscape")),
        ("sora-2", 4, "portrait", ("sora-2", 4, "720x1280", "portrait")),
        ("veo-3.1-fast", 6, "1920x1080", ("veo-3.1-fast", 6, "1920x1080", "landscape")),
        ("sora-2-hd", 15, "1024×1792", ("sora-2-hd", 15, "1024x1792", "portrait")),
    ],
)
def test_parameters_allowed(model, seconds, shape, expected) -> None:
    params = choose_parameters(SETTINGS, model, seconds, shape)
    assert (params.model.name, params.seconds, params.size, params.orientation) == expected


@pytest.mark.parametrize(
    ("model", "seconds", "shape", "key", "mentions"),
    [
        ("dall-e", None, None, "error.unknown_model", "sora-2"),
        ("sora-2", 7, None, "error.seconds_not_allowed", "4, 8, 10, 12, 15"),
        ("veo-3.1", 10, None, "error.seconds_not_allowed", "4, 6, 8"),
        ("sora-2", None, "1920x1080", "error.size_not_allowed", "720x1280"),
        ("sora-2", None, "square", "error.size_not_allowed", "portrait"),
    ],
)
def test_parameters_refused_with_what_is_allowed(model, seconds, shape, key, mentions) -> None:
    with pytest.raises(InvalidRequest) as problem:
        choose_parameters(SETTINGS, model, seconds, shape)
    assert problem.value.key == key
    assert any(mentions in str(value) for value in problem.value.values.values())


def test_attachment_metadata_checks() -> None:
    model = SETTINGS.models["veo-3.1"]
    ok = AttachmentInfo("cat.png", 1000, "image/png", "https://cdn.example/cat.png")
    check_attachment_metadata(ok, model)
    with pytest.raises(InvalidRequest, match=r"error\.not_an_image"):
        check_attachment_metadata(AttachmentInfo("doc.pdf", 10, "application/pdf", "u"), model)
    with pytest.raises(InvalidRequest, match=r"error\.image_too_big"):
        check_attachment_metadata(AttachmentInfo("big.png", 50 * 2**20, "image/png", "u"), model)
    with pytest.raises(InvalidRequest, match=r"error\.too_many_images"):
        check_attachment_metadata(ok, model, count=4)
    no_images = SETTINGS.models["sora-2"].model_copy(update={"reference_images": 0})
    with pytest.raises(InvalidRequest, match=r"error\.no_images"):
        check_attachment_metadata(ok, no_images)


def test_image_sniffing_needs_a_complete_file() -> None:
    from pathlib import Path

    png = (Path(__file__).parents[1] / "bot" / "fake_upstream" / "assets" / "thumb.png").read_bytes()
    assert sniff_image(png) == "image/png"
    assert sniff_image(png[:40]) is None  # truncated: the signature alone isn't enough
    assert sniff_image(b"\xff\xd8\xff\xe0" + bytes(100) + b"\xff\xd9") == "image/jpeg"
    assert sniff_image(b"\xff\xd8\xff\xe0" + bytes(100)) is None
    assert sniff_image(b"GIF89a" + bytes(20) + b";") == "image/gif"
    assert sniff_image(b"RIFF\x08\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image(b"RIFF\xff\x00\x00\x00WEBPVP8 ") is None
    assert sniff_image(b"%PDF-1.7") is None
    assert sniff_image(b"") is None
