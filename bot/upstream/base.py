"""The one small interface every wire format implements, and the HTTP behaviour they share.

A client turns a `VideoRequest` into an async stream of events that ends with exactly one `Succeeded` or
`Failed`. The shared wrapper (`UpstreamClient.generate`) guarantees that contract whatever the wire format
does: progress never goes backwards, exceptions become `Failed` events with the right `FailureKind`, and the
whole job is bounded by the job timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from bot.upstream.types import (
    AuthFailed,
    BadRequest,
    Cancelled,
    DownloadedVideo,
    Event,
    Failed,
    FailureKind,
    ModerationRejected,
    NotAVideo,
    Progress,
    RateLimited,
    Succeeded,
    TaskId,
    TooLarge,
    UpstreamError,
    UpstreamTimeout,
    VideoRequest,
)

log = logging.getLogger(__name__)

POLL_AFTER_HEADER = "openai-poll-after-ms"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
MODERATION_CODES = frozenset(
    {"moderation_blocked", "sentinel_block", "content_policy_violation", "content_filter", "safety_violation"}
)
MODERATION_WORDS = re.compile(
    r"moderation|content[ _-]?policy|safety (system|filter)|violat|inappropriate|nsfw|sensitive|"
    r"违规|敏感|审核未通过|审核不通过|未通过审核|不合规|内容安全|违反",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """The knobs every client needs, taken from `Settings` by the factory."""

    base_url: str
    api_key: str
    connect_timeout: float = 10.0
    stall_timeout: float = 180.0
    job_timeout: float = 3600.0
    poll_interval: float = 2.0
    retry_attempts: int = 4
    max_download_bytes: int = 512 * 1024 * 1024

    def __repr__(self) -> str:  # the API key must never show up in a repr
        return f"UpstreamOptions(base_url={self.base_url!r}, api_key='**********')"


class UpstreamClient(ABC):
    """One wire format. Knows nothing about Discord."""

    api_format: ClassVar[str]
    supports_remix: ClassVar[bool] = False  # the gateway can remix a parent video natively
    supports_resume: ClassVar[bool] = False  # a task id can be polled again after a restart
    supports_cancel: ClassVar[bool] = False  # the gateway has a cancel/delete call

    def __init__(self, session: aiohttp.ClientSession, options: UpstreamOptions) -> None:
        self.session = session
        self.options = options

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.options.base_url!r})"

    # --- what subclasses implement ---------------------------------------------------------------------

    @abstractmethod
    def _generate(self, request: VideoRequest) -> AsyncIterator[Event]:
        """Yield events for a new job; raise `UpstreamError` (or let aiohttp errors escape) on failure."""

    async def _resume(self, task_id: str) -> AsyncIterator[Event]:
        """Yield events for a job started before a restart. Only for formats with `supports_resume`."""
        raise BadRequest(f"the {self.api_format} format cannot resume a job after a restart")
        yield  # unreachable: makes this a generator, so `resume()` reports the refusal as a `Failed` event

    async def cancel(self, task_id: str) -> bool:
        """Best-effort cancel upstream. Returns True when the gateway accepted it."""
        return False

    async def check(self) -> str:
        """One cheap authenticated call; returns a short description of what answered."""
        async with self.session.get(
            self.url("/v1/models"), headers=self.headers(), timeout=self.read_timeout()
        ) as response:
            if response.status >= 400:
                raise await error_from_response(response)
            try:
                body = await response.json(content_type=None)
                count = len(body.get("data", []))
            except (ValueError, AttributeError):
                return f"HTTP {response.status}"
            return f"{count} models listed"

    # --- the public contract ---------------------------------------------------------------------------

    def generate(self, request: VideoRequest) -> AsyncIterator[Event]:
        return guard_events(self._generate(request), self.options.job_timeout, redact=self.redact)

    def resume(self, task_id: str) -> AsyncIterator[Event]:
        return guard_events(self._resume(task_id), self.options.job_timeout, task_id=task_id, redact=self.redact)

    async def download(self, result: Succeeded, dest: Path, *, thumbnail: bool = False) -> DownloadedVideo:
        """Stream the finished video (or its thumbnail) to `dest`, verifying it really is a video."""
        url = result.thumbnail_url if thumbnail else result.video_url
        authenticated = result.thumbnail_authenticated if thumbnail else result.authenticated
        if not url:
            raise BadRequest("the gateway gave no thumbnail")
        return await download_to_file(
            self.session,
            url,
            dest,
            headers=self.headers() if authenticated else {},
            max_bytes=self.options.max_download_bytes,
            attempts=self.options.retry_attempts,
            verify_video=not thumbnail,
            request_timeout=self.read_timeout(),
        )

    # --- shared helpers --------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.options.base_url}{path}"

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.options.api_key}"}
        if extra:
            headers.update(extra)
        return headers

    def redact(self, text: str) -> str:
        return redact_secret(text, self.options.api_key)

    def read_timeout(self) -> aiohttp.ClientTimeout:
        """A per-request timeout: connecting bounded by the connect timeout, silence by the stall timeout.

        (A per-request `ClientTimeout` replaces the session's whole timeout in aiohttp, so it repeats the
        connect bound.)
        """
        return aiohttp.ClientTimeout(
            total=None, sock_connect=self.options.connect_timeout, sock_read=self.options.stall_timeout
        )

    def blocking_timeout(self) -> aiohttp.ClientTimeout:
        """For calls that legitimately stay silent for the whole job; the job timeout bounds them instead."""
        return aiohttp.ClientTimeout(total=None, sock_connect=self.options.connect_timeout, sock_read=None)

    async def get_json_with_retry(self, url: str, **kwargs: Any) -> tuple[Any, Mapping[str, str]]:
        """GET a JSON document, retrying 429/5xx/connection errors/garbled bodies with jittered backoff."""
        kwargs.setdefault("request_timeout", self.read_timeout())
        return await request_json(
            self.session, "GET", url, headers=self.headers(), attempts=self.options.retry_attempts, **kwargs
        )

    async def post_json_once(
        self,
        url: str,
        *,
        json_body: Any = None,
        data: Any = None,
        request_timeout: aiohttp.ClientTimeout | None = None,
    ) -> Any:
        """POST a create call. Retried only when it provably never reached the gateway (see `request_json`).

        `data` may be a zero-argument callable building a fresh body (a multipart form) for each attempt.
        """
        body, _ = await request_json(
            self.session,
            "POST",
            url,
            headers=self.headers(),
            json_body=json_body,
            data=data,
            attempts=self.options.retry_attempts,
            idempotent=False,
            request_timeout=request_timeout or self.read_timeout(),
        )
        return body


# --- the stream contract ---------------------------------------------------------------------------------


JOB_TIMEOUT_REASON = "the video took longer than the job time limit"


async def guard_events(
    events: AsyncIterator[Event],
    job_timeout: float,
    *,
    task_id: str | None = None,
    redact: Callable[[str], str] | None = None,
) -> AsyncIterator[Event]:
    """Enforce the event contract around a raw client stream (see the module docstring).

    `redact` is applied to every failure reason, so a gateway that echoes the API key cannot leak it.
    """
    best = -1.0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + job_timeout
    iterator = aiter(events)

    def failed(kind: FailureKind, reason: str) -> Failed:
        return Failed(kind, redact(reason) if redact else reason, task_id)

    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                yield failed(FailureKind.TIMEOUT, JOB_TIMEOUT_REASON)
                return
            try:
                # Not `asyncio.wait_for`: before Python 3.12 it swallows a cancellation that arrives just as the
                # next event is ready, and a cancelled job (the Cancel button, a restart) would run on.
                async with asyncio.timeout(remaining):
                    event = await anext(iterator)
            except StopAsyncIteration:
                yield failed(FailureKind.UPSTREAM, "the gateway ended the stream without a video")
                return
            except TimeoutError:
                # Either our job deadline, or a request inside the client that timed out on its own.
                if loop.time() >= deadline:
                    yield failed(FailureKind.TIMEOUT, JOB_TIMEOUT_REASON)
                else:
                    yield failed(FailureKind.TIMEOUT, "the gateway stopped answering")
                return
            except UpstreamError as exc:
                yield failed(exc.kind, exc.message)
                return
            except aiohttp.ClientPayloadError:
                yield failed(FailureKind.UPSTREAM, "the gateway dropped the connection mid-stream")
                return
            except (aiohttp.ClientError, OSError) as exc:
                yield failed(FailureKind.UPSTREAM, f"could not reach the gateway ({type(exc).__name__})")
                return
            except Exception as exc:  # a bug or an answer shape we did not foresee: keep the one-terminal contract
                log.exception("upstream client raised unexpectedly")
                reason = f"the gateway's answer could not be understood ({type(exc).__name__})"
                yield failed(FailureKind.UPSTREAM, reason)
                return
            if isinstance(event, TaskId):
                task_id = event.task_id
            elif isinstance(event, Progress):
                percent = max(0.0, min(100.0, event.percent))
                if percent <= best:
                    continue
                best = percent
                event = Progress(percent)
            elif isinstance(event, Succeeded):
                yield event if event.task_id or not task_id else replace(event, task_id=task_id)
                return
            elif isinstance(event, Failed):
                yield replace(
                    event, reason=redact(event.reason) if redact else event.reason, task_id=event.task_id or task_id
                )
                return
            yield event
    finally:
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()


# --- status words and polling ----------------------------------------------------------------------------


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUS_WORDS: dict[str, JobStatus] = {
    **dict.fromkeys(
        (
            "queued",
            "pending",
            "submitted",
            "not_start",
            "notstarted",
            "preparing",
            "created",
            "starting",
            "unknown",
            "waiting",
            "in_queue",
        ),
        JobStatus.QUEUED,
    ),
    **dict.fromkeys(("processing", "in_progress", "running", "generating", "video_generating"), JobStatus.RUNNING),
    **dict.fromkeys(("completed", "complete", "success", "succeeded", "finished"), JobStatus.SUCCEEDED),
    **dict.fromkeys(("failed", "failure", "fail", "error"), JobStatus.FAILED),
    **dict.fromkeys(("cancelled", "canceled"), JobStatus.CANCELLED),
}


def normalise_status(word: Any) -> JobStatus | None:
    """The gateway's status word as one of ours (see UPSTREAM.md), or None when we do not know it."""
    if not isinstance(word, str):
        return None
    key = re.sub(r"[\s-]+", "_", word.strip().lower())
    return STATUS_WORDS.get(key)


def parse_progress(value: Any) -> float | None:
    """A progress percentage from `36`, `36.5` or `"36%"`; None when absent or unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("%").strip())
        except ValueError:
            return None
    return None


def poll_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The gateway's `openai-poll-after-ms` hint in seconds (bounded to a minute), if it sent one."""
    if not headers:
        return None
    value = headers.get(POLL_AFTER_HEADER)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == POLL_AFTER_HEADER), None)
    try:
        return max(0.0, min(float(value), 60_000.0)) / 1000.0 if value is not None else None
    except ValueError:
        return None


FAILURE_TEXT_KEYS = ("fail_reason", "failure_reason", "reason", "message", "msg")


def failure_from_body(body: Mapping[str, Any], status: JobStatus, task_id: str | None) -> Failed:
    """A failed or cancelled job object as a `Failed`, in the gateway's own words.

    Reads `error: {code, message}` (or a plain `error` string, or `fail_reason`-style fields); a moderation code
    or wording gives `MODERATION`, a cancelled status with no other cause gives `CANCELLED`.
    """
    error = body.get("error")
    message: str | None = None
    code: str | None = None
    if isinstance(error, dict):
        message = str(error["message"]).strip() if error.get("message") else None
        code = str(error["code"]) if error.get("code") else None
    elif isinstance(error, str) and error.strip():
        message = error.strip()
    if not message:
        message = next(
            (body[k].strip() for k in FAILURE_TEXT_KEYS if isinstance(body.get(k), str) and body[k].strip()), None
        )
    kind = classify_error(None, message, code).kind
    if status is JobStatus.CANCELLED and kind is FailureKind.UPSTREAM:
        return Failed(FailureKind.CANCELLED, message or "the job was cancelled upstream", task_id)
    if not message:
        message = "the gateway reported the job as failed" + (f" ({code})" if code else "")
    return Failed(kind, message, task_id)


class PollSchedule:
    """How long to wait before the next poll.

    The gateway's `openai-poll-after-ms` hint wins when present; otherwise start at `interval` and grow ×1.5 per
    poll up to `cap` (default: 5× the interval, at most 10 s, never below the interval).
    """

    def __init__(self, interval: float, *, cap: float | None = None, factor: float = 1.5) -> None:
        self.interval = max(0.01, interval)
        self.cap = cap if cap is not None else max(self.interval, min(self.interval * 5, 10.0))
        self.factor = factor
        self._next = self.interval

    def next_delay(self, headers: Mapping[str, str] | None = None) -> float:
        hint = poll_after_seconds(headers)
        if hint is not None:
            return hint
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        return delay


# --- HTTP helpers ----------------------------------------------------------------------------------------


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 20.0) -> float:
    """Full-jitter exponential backoff: attempt 0 waits up to `base`, then doubling up to `cap`."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), 60.0))
    except ValueError:
        return None


def redact_secret(text: str, secret: str | None) -> str:
    return text.replace(secret, "**********") if secret else text


def bearer_token(headers: Mapping[str, str] | None) -> str | None:
    if not headers:
        return None
    value = headers.get("Authorization") or headers.get("authorization") or ""
    token = value.removeprefix("Bearer ").strip()
    return token if value.startswith("Bearer ") and token else None


def error_message(body_text: str) -> tuple[str | None, str | None]:
    """Pull (message, code) from any of the error shapes gateways send."""
    try:
        body = json.loads(body_text)
    except ValueError:
        text = re.sub(r"<[^>]+>", " ", body_text)
        text = " ".join(text.split())
        return (text[:300] or None), None
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, str):
            return error[:500], None
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or error.get("msg")
            code = error.get("code") or error.get("type")
            return (str(message)[:500] if message else None), (str(code) if code is not None else None)
    return None, None


def classify_error(status: int | None, message: str | None, code: str | None = None) -> UpstreamError:
    """Map an HTTP status and the gateway's words to the typed error whose kind the member will see."""
    text = message or (f"HTTP {status}" if status else "the gateway failed")
    if (code and code.lower() in MODERATION_CODES) or MODERATION_WORDS.search(f"{message or ''} {code or ''}"):
        return ModerationRejected(text, status=status)
    if status in (401, 403):
        return AuthFailed(text, status=status)
    if status == 429:
        return RateLimited(text, status=status)
    if status in (408, 504, 524):
        return UpstreamTimeout(text, status=status)
    if status is not None and 400 <= status < 500:
        return BadRequest(text, status=status)
    return UpstreamError(text, status=status)


async def error_from_response(response: aiohttp.ClientResponse) -> UpstreamError:
    """The typed error for a >= 400 answer, in the gateway's words, with our own API key redacted out of them."""
    try:
        body = await response.text(errors="replace")
    except (aiohttp.ClientError, OSError, TimeoutError):
        body = ""
    message, code = error_message(body)
    secret = bearer_token(response.request_info.headers)
    if message is not None:
        message = redact_secret(message, secret)
    return classify_error(response.status, message, code)


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: Any = None,
    data: Any = None,
    attempts: int = 4,
    idempotent: bool = True,
    request_timeout: aiohttp.ClientTimeout | None = None,
) -> tuple[Any, Mapping[str, str]]:
    """One JSON request with bounded, jittered retries (`attempts` retries after the first try).

    Idempotent calls retry 429, 5xx, connection errors and garbled (non-JSON) bodies. A create
    (`idempotent=False`) retries only what cannot have reached the gateway's billing: a refused connection, or a
    429 (which means "not accepted"). `data` may be a zero-argument callable that builds a fresh body per attempt
    (a multipart form cannot be sent twice).
    """
    attempt = 0
    extra: dict[str, Any] = {} if request_timeout is None else {"timeout": request_timeout}
    while True:
        try:
            body_data = data() if callable(data) else data
            async with session.request(
                method, url, headers=headers, json=json_body, data=body_data, **extra
            ) as response:
                if response.status < 400:
                    text = await response.text(errors="replace")
                    try:
                        return (json.loads(text) if text.strip() else {}), response.headers
                    except ValueError:
                        if not idempotent or attempt >= attempts:
                            raise UpstreamError(
                                f"the gateway answered with something that is not JSON (HTTP {response.status})",
                                status=response.status,
                            ) from None
                        delay = backoff_delay(attempt)
                else:
                    error = await error_from_response(response)
                    retryable = response.status == 429 or (idempotent and response.status in RETRY_STATUSES)
                    if isinstance(error, ModerationRejected) or not retryable or attempt >= attempts:
                        raise error
                    after = retry_after_seconds(response.headers)
                    delay = after if after is not None else backoff_delay(attempt)
        except aiohttp.ClientConnectorError as exc:
            if attempt >= attempts:
                raise UpstreamError(f"could not connect to the gateway ({type(exc).__name__})") from None
            delay = backoff_delay(attempt)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            if not idempotent or attempt >= attempts:
                raise UpstreamError(f"the gateway dropped the connection ({type(exc).__name__})") from None
            delay = backoff_delay(attempt)
        except TimeoutError:
            if not idempotent or attempt >= attempts:
                raise UpstreamTimeout("the gateway did not answer in time") from None
            delay = backoff_delay(attempt)
        attempt += 1
        log.debug("retrying %s %s in %.2fs (attempt %d)", method, _path_only(url), delay, attempt)
        await asyncio.sleep(delay)


def _path_only(url: str) -> str:
    return url.split("?", 1)[0]


VIDEO_BOX_TYPES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"


def sniff_video(head: bytes) -> str | None:
    """The video's content type from its first bytes, or None if it is not an MP4/WebM."""
    if len(head) >= 8 and head[4:8] in VIDEO_BOX_TYPES:
        return "video/mp4"
    if head.startswith(WEBM_MAGIC):
        return "video/webm"
    return None


async def download_to_file(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    headers: Mapping[str, str],
    max_bytes: int,
    attempts: int = 4,
    verify_video: bool = True,
    chunk_size: int = 256 * 1024,
    request_timeout: aiohttp.ClientTimeout | None = None,
) -> DownloadedVideo:
    """Stream `url` into `dest` (never the whole file in memory), enforcing the size cap and signature.

    Transient failures (connection errors, 429/5xx) are retried `attempts` times; a refused or invalid file
    (`TooLarge`, `NotAVideo`, 4xx) is not. On any failure `dest` is removed, so no half file is left behind.
    """
    attempt = 0
    while True:
        try:
            return await _download_once(
                session, url, dest, headers, max_bytes, verify_video, chunk_size, request_timeout
            )
        except (
            aiohttp.ClientConnectorError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientOSError,
            TimeoutError,
        ) as exc:
            if attempt >= attempts:
                await _remove(dest)
                raise UpstreamError(f"the video download kept failing ({type(exc).__name__})") from None
            delay = backoff_delay(attempt)
        except _RetryableStatus as exc:
            if attempt >= attempts:
                await _remove(dest)
                raise exc.error from None
            delay = exc.retry_after if exc.retry_after is not None else backoff_delay(attempt)
        except BaseException:
            await _remove(dest)
            raise
        attempt += 1
        await asyncio.sleep(delay)


class _RetryableStatus(Exception):
    """A 429/5xx answer to a download, with the gateway's Retry-After if it gave one."""

    def __init__(self, error: UpstreamError, retry_after: float | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


async def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        await asyncio.to_thread(Path(path).unlink, missing_ok=True)


async def _download_once(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    headers: Mapping[str, str],
    max_bytes: int,
    verify_video: bool,
    chunk_size: int,
    request_timeout: aiohttp.ClientTimeout | None,
) -> DownloadedVideo:
    extra: dict[str, Any] = {} if request_timeout is None else {"timeout": request_timeout}
    async with session.get(url, headers=headers, **extra) as response:
        if response.status >= 400:
            error = await error_from_response(response)
            if response.status in RETRY_STATUSES:
                raise _RetryableStatus(error, retry_after_seconds(response.headers))
            raise error
        declared = response.content_length
        if declared is not None and declared > max_bytes:
            raise TooLarge(f"the video is {declared / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB cap")
        size = 0
        content_type = response.headers.get("Content-Type", "application/octet-stream").split(";")[0]
        handle = await asyncio.to_thread(open, dest, "wb")
        try:
            pending = bytearray()
            checked = not verify_video
            async for chunk in response.content.iter_chunked(chunk_size):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"the video is over the {max_bytes / 2**20:.0f} MiB cap")
                pending += chunk
                if not checked and len(pending) >= 16:
                    sniffed = sniff_video(bytes(pending[:16]))
                    if sniffed is None:
                        raise NotAVideo("the gateway's video link returned something that is not a video")
                    content_type, checked = sniffed, True
                if len(pending) >= 1024 * 1024:
                    await asyncio.to_thread(handle.write, bytes(pending))
                    pending.clear()
            if not checked:
                sniffed = sniff_video(bytes(pending[:16]))
                if sniffed is None:
                    raise NotAVideo("the gateway's video link returned something that is not a video")
                content_type = sniffed
            if pending:
                await asyncio.to_thread(handle.write, bytes(pending))
        finally:
            await asyncio.to_thread(handle.close)
    return DownloadedVideo(path=str(dest), size=size, content_type=content_type)


__all__ = [
    "Cancelled",
    "JobStatus",
    "PollSchedule",
    "UpstreamClient",
    "UpstreamOptions",
    "backoff_delay",
    "bearer_token",
    "classify_error",
    "download_to_file",
    "error_from_response",
    "error_message",
    "failure_from_body",
    "guard_events",
    "normalise_status",
    "parse_progress",
    "poll_after_seconds",
    "redact_secret",
    "request_json",
    "retry_after_seconds",
    "sniff_video",
]
