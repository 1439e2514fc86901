"""The values that cross the upstream boundary: a request goes in, typed events come out.

Nothing here knows about Discord, and no wire-format dict ever leaves `bot/upstream/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from bot.upstream.redact import redact_query

Orientation = Literal["landscape", "portrait"]


@dataclass(frozen=True, slots=True)
class ReferenceImage:
    """A reference image, either a URL the gateway can fetch or local bytes."""

    url: str | None = None
    data: bytes | None = field(default=None, repr=False)
    filename: str = "reference.png"
    content_type: str = "image/png"

    def __post_init__(self) -> None:
        if (self.url is None) == (self.data is None):
            raise ValueError("a ReferenceImage needs exactly one of url or data")

    def as_data_url(self) -> str:
        """The image as something a JSON body can carry: its URL, or a base64 data URL."""
        if self.url is not None:
            return self.url
        import base64

        assert self.data is not None
        return f"data:{self.content_type};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One earlier exchange of a remix chain: what the member asked, and the gateway's raw answer verbatim."""

    prompt: str
    assistant_text: str
    images: tuple[ReferenceImage, ...] = ()


@dataclass(frozen=True, slots=True)
class VideoRequest:
    """Everything an upstream client needs to start one video."""

    prompt: str
    model: str  # the name sent on the wire
    seconds: int | None = None
    size: str | None = None  # "WIDTHxHEIGHT"
    orientation: Orientation | None = None
    images: tuple[ReferenceImage, ...] = ()
    # A remix: either the earlier conversation (chat format) or the parent video id (videos format).
    history: tuple[ChatTurn, ...] = ()
    remix_of: str | None = None


class FailureKind(StrEnum):
    MODERATION = "moderation"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    UPSTREAM = "upstream"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


# --- events ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Queued:
    position: int | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float  # 0..100, never decreasing within one stream


@dataclass(frozen=True, slots=True)
class TaskId:
    task_id: str
    resumable: bool = False  # True when `UpstreamClient.resume(task_id)` can pick the job up after a restart


@dataclass(frozen=True, slots=True)
class Preview:
    url: str

    def __repr__(self) -> str:  # a signed link's signature stays out of logs
        return f"Preview(url={redact_query(self.url)!r})"


@dataclass(frozen=True, slots=True)
class Succeeded:
    video_url: str  # where the MP4 is
    authenticated: bool = False  # the URL needs the API key (the videos API's /content endpoint)
    task_id: str | None = None
    thumbnail_url: str | None = None
    thumbnail_authenticated: bool = False
    assistant_text: str = ""  # chat format: the whole assistant message, verbatim, for the remix history

    def __repr__(self) -> str:  # signed links' signatures stay out of logs; the text is shown by its length
        thumbnail = redact_query(self.thumbnail_url) if self.thumbnail_url else None
        return (
            f"Succeeded(video_url={redact_query(self.video_url)!r}, authenticated={self.authenticated}, "
            f"task_id={self.task_id!r}, thumbnail_url={thumbnail!r}, "
            f"thumbnail_authenticated={self.thumbnail_authenticated}, "
            f"assistant_text=<{len(self.assistant_text)} chars>)"
        )


@dataclass(frozen=True, slots=True)
class Failed:
    kind: FailureKind
    reason: str  # the gateway's own words where it gave any; never contains the API key
    task_id: str | None = None
    assistant_text: str = ""


Event = Queued | Progress | TaskId | Preview | Succeeded | Failed
TERMINAL = (Succeeded, Failed)


@dataclass(frozen=True, slots=True)
class DownloadedVideo:
    path: str
    size: int
    content_type: str  # "video/mp4" or "video/webm"


# --- errors ----------------------------------------------------------------------------------------------


class UpstreamError(Exception):
    """An upstream call failed. `kind` says whose fault it is; `str()` never contains the API key."""

    kind: FailureKind = FailureKind.UPSTREAM

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def to_event(self, task_id: str | None = None, assistant_text: str = "") -> Failed:
        return Failed(self.kind, self.message, task_id=task_id, assistant_text=assistant_text)


class ModerationRejected(UpstreamError):
    kind = FailureKind.MODERATION


class BadRequest(UpstreamError):
    kind = FailureKind.BAD_REQUEST


class AuthFailed(UpstreamError):
    kind = FailureKind.AUTH


class RateLimited(UpstreamError):
    kind = FailureKind.RATE_LIMITED


class UpstreamTimeout(UpstreamError):
    kind = FailureKind.TIMEOUT


class Cancelled(UpstreamError):
    kind = FailureKind.CANCELLED


class NotAVideo(UpstreamError):
    """The downloaded bytes are not an MP4/WebM (an HTML error page, say)."""


class TooLarge(UpstreamError):
    """The video is larger than the configured download cap."""


class AnswerTooLarge(UpstreamError):
    """An answer from the gateway (a JSON document, one event of a stream, the assistant text) is over its cap;
    it was not read any further."""


ERRORS_BY_KIND: dict[FailureKind, type[UpstreamError]] = {
    FailureKind.MODERATION: ModerationRejected,
    FailureKind.BAD_REQUEST: BadRequest,
    FailureKind.AUTH: AuthFailed,
    FailureKind.RATE_LIMITED: RateLimited,
    FailureKind.UPSTREAM: UpstreamError,
    FailureKind.TIMEOUT: UpstreamTimeout,
    FailureKind.CANCELLED: Cancelled,
}
