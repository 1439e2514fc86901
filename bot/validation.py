"""Checks on what a member asked for, before anything is spent. Each problem is a catalogue key + values."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

from bot.config import ModelSpec, Orientation, Settings, orientation_of

MAX_PROMPT_CHARS = 4000
MAX_IMAGE_BYTES = 10 * 1024 * 1024
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif"}
IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# Characters that can hide or reorder text (zero-width, bidi overrides): stripped from prompts.
INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
             "\u2066", "\u2067", "\u2068", "\u2069"}


class InvalidRequest(Exception):
    """What's wrong, as a catalogue key and the values its sentence needs."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


@dataclass(frozen=True, slots=True)
class VideoParameters:
    model: ModelSpec
    seconds: int
    size: str
    orientation: Orientation


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    filename: str
    size: int
    content_type: str | None
    url: str
    data: bytes | None = field(default=None, repr=False)


def clean_prompt(prompt: str | None, limit: int = MAX_PROMPT_CHARS) -> str:
    """Strip invisible and control characters; refuse empty or over-long prompts."""
    text = "".join(
        ch for ch in (prompt or "")
        if ch not in INVISIBLE and (ch in "\n\t" or unicodedata.category(ch) != "Cc")
    ).strip()
    if not text:
        raise InvalidRequest("error.prompt_empty")
    if len(text) > limit:
        raise InvalidRequest("error.prompt_too_long", length=len(text), limit=limit)
    return text


def choose_parameters(
    settings: Settings, model_name: str | None, seconds: int | None, shape: str | None
) -> VideoParameters:
    """The model, duration and size, checked against the models table."""
    name = model_name or settings.sora_model
    model = settings.models.get(name)
    if model is None:
        raise InvalidRequest("error.unknown_model", model=name, models=", ".join(settings.models))
    chosen_seconds = seconds if seconds is not None else model.seconds_default
    if chosen_seconds not in model.seconds:
        allowed = ", ".join(str(s) for s in model.seconds)
        raise InvalidRequest("error.seconds_not_allowed", model=model.name, allowed=allowed, seconds=chosen_seconds)
    size = model.size_default
    if shape:
        shape = shape.strip().lower().replace("×", "x").replace("*", "x")
        if shape in ("portrait", "landscape"):
            found = model.size_for_orientation(shape)  # type: ignore[arg-type]
            if found is None:
                raise InvalidRequest("error.size_not_allowed", model=model.name, allowed=_shapes(model), size=shape)
            size = found
        elif shape in model.sizes:
            size = shape
        else:
            raise InvalidRequest("error.size_not_allowed", model=model.name, allowed=_shapes(model), size=shape)
    return VideoParameters(model, chosen_seconds, size, orientation_of(size))


def _shapes(model: ModelSpec) -> str:
    return ", ".join([*model.orientations(), *model.sizes])


def check_attachment_metadata(
    attachment: AttachmentInfo, model: ModelSpec, count: int = 1, max_bytes: int = MAX_IMAGE_BYTES
) -> None:
    """What can be said from Discord's metadata alone, before downloading anything."""
    if model.reference_images == 0:
        raise InvalidRequest("error.no_images", model=model.name)
    if count > model.reference_images:
        raise InvalidRequest("error.too_many_images", model=model.name, limit=model.reference_images)
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type and content_type not in IMAGE_TYPES:
        raise InvalidRequest("error.not_an_image", filename=attachment.filename)
    if not content_type and not attachment.filename.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".gif")):
        raise InvalidRequest("error.not_an_image", filename=attachment.filename)
    if attachment.size > max_bytes:
        raise InvalidRequest(
            "error.image_too_big",
            filename=attachment.filename,
            size=f"{attachment.size / 2**20:.1f} MiB",
            limit=f"{max_bytes / 2**20:.0f} MiB",
        )


def sniff_image(data: bytes) -> str | None:
    """The image type, if `data` is a complete PNG, JPEG, GIF or WebP file; None for anything else.

    Beyond the signature, each format's ending is checked, so a renamed file or a truncated upload is refused
    here instead of being sent (and charged) upstream.
    """
    content_type = next((kind for magic, kind in IMAGE_MAGIC if data.startswith(magic)), None)
    if content_type is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        content_type = "image/webp"
    if content_type is None or not _complete(data, content_type):
        return None
    return content_type


def _complete(data: bytes, content_type: str) -> bool:
    if content_type == "image/png":
        return data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    if content_type == "image/jpeg":
        return b"\xff\xd9" in data[-4096:]
    if content_type == "image/gif":
        return data.rstrip(b"\0").endswith(b";")
    if content_type == "image/webp":
        return int.from_bytes(data[4:8], "little") + 8 <= len(data)
    return False


__all__ = [
    "AttachmentInfo",
    "InvalidRequest",
    "VideoParameters",
    "check_attachment_metadata",
    "choose_parameters",
    "clean_prompt",
    "sniff_image",
]
