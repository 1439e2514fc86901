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
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from bot.upstream.redact import publishable_url, redact, redact_query, redact_secrets
from bot.upstream.sse import MAX_EVENT_BYTES
from bot.upstream.types import (
    AnswerTooLarge,
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
    ReferenceImage,
    Succeeded,
    TaskId,
    TooLarge,
    UpstreamError,
    UpstreamTimeout,
    VideoRequest,
)
from bot.upstream.urlpolicy import UrlPolicy, open_url, url_host

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

# Caps on what is read from the gateway; a bigger answer is refused without being read any further.
MAX_JSON_BYTES = 4 * 1024 * 1024  # one JSON answer (a create, a poll, a non-streamed chat completion)
MAX_ERROR_BYTES = 64 * 1024  # the body of an error answer (>= 400)
MAX_ASSISTANT_TEXT = 256 * 1024  # characters of a chat answer's text, which is kept for the remix history
RATE_WINDOW = 10.0  # seconds over which a download's rate is averaged for the minimum rate
IMAGE_FETCH_TIMEOUT = 60.0  # seconds for fetching one reference image from a link


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
    download_timeout: float = 600.0  # one whole download, all its retries included
    download_min_rate: float = 32 * 1024  # bytes/s averaged over `download_rate_window`; 0 = no minimum
    download_rate_window: float = RATE_WINDOW
    fetch_allow: tuple[str, ...] = ()  # hosts or CIDRs fetched even on private addresses
    max_json_bytes: int = MAX_JSON_BYTES
    max_event_bytes: int = MAX_EVENT_BYTES
    max_assistant_text: int = MAX_ASSISTANT_TEXT

    def __repr__(self) -> str:  # the API key must never show up in a repr
        return f"UpstreamOptions(base_url={redact_query(self.base_url)!r}, api_key='**********')"


class UpstreamClient(ABC):
    """One wire format. Knows nothing about Discord."""

    api_format: ClassVar[str]
    supports_remix: ClassVar[bool] = False  # the gateway can remix a parent video natively
    supports_resume: ClassVar[bool] = False  # a task id can be polled again after a restart
    supports_cancel: ClassVar[bool] = False  # the gateway has a cancel/delete call

    def __init__(
        self, session: aiohttp.ClientSession, options: UpstreamOptions, *, policy: UrlPolicy | None = None
    ) -> None:
        self.session = session
        self.options = options
        self.policy = policy or UrlPolicy.build(options.base_url, options.fetch_allow)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={redact_query(self.options.base_url)!r})"

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
            raw = await read_limited(response, self.options.max_json_bytes)
            try:
                count = len(json.loads(raw).get("data", []))
            except (ValueError, AttributeError, TypeError):
                return f"HTTP {response.status}"
            return f"{count} models listed"

    # --- the public contract ---------------------------------------------------------------------------

    def generate(self, request: VideoRequest) -> AsyncIterator[Event]:
        return guard_events(self._generate(request), self.options.job_timeout, redact=self.redact)

    def resume(self, task_id: str) -> AsyncIterator[Event]:
        return guard_events(self._resume(task_id), self.options.job_timeout, task_id=task_id, redact=self.redact)

    async def download(self, result: Succeeded, dest: Path, *, thumbnail: bool = False) -> DownloadedVideo:
        """Stream the finished video (or its thumbnail) to `dest`, verifying it really is a video.

        The URL must pass the URL policy (`bot.upstream.urlpolicy`); the whole download, retries included, is
        bounded by `download_timeout` and fails below `download_min_rate` (both `UpstreamTimeout`)."""
        url = result.thumbnail_url if thumbnail else result.video_url
        authenticated = result.thumbnail_authenticated if thumbnail else result.authenticated
        if not url:
            raise BadRequest("the gateway gave no thumbnail")
        # The key only ever goes to the gateway, whatever a result claims.
        send_key = authenticated and self.policy.is_gateway(url_host(url))
        return await download_to_file(
            self.session,
            url,
            dest,
            headers=self.headers() if send_key else {},
            max_bytes=self.options.max_download_bytes,
            attempts=self.options.retry_attempts,
            verify_video=not thumbnail,
            request_timeout=self.read_timeout(),
            deadline=self.options.download_timeout,
            min_rate=self.options.download_min_rate,
            rate_window=self.options.download_rate_window,
            policy=self.policy,
            what="thumbnail" if thumbnail else "video",
            secrets=(self.options.api_key,),
        )

    def publishable_url(self, result: Succeeded, *, thumbnail: bool = False) -> str | None:
        """The video's (or thumbnail's) URL when it may be shown to members as a link, else None: it needs the
        API key, or it carries a credential (a signature parameter, the key or a piece of it)."""
        if thumbnail:
            url, authenticated = result.thumbnail_url, result.thumbnail_authenticated
        else:
            url, authenticated = result.video_url, result.authenticated
        if authenticated:
            return None
        return publishable_url(url, (self.options.api_key,))

    # --- shared helpers --------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.options.base_url}{path}"

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.options.api_key}"}
        if extra:
            headers.update(extra)
        return headers

    def redact(self, text: str) -> str:
        return redact(text, (self.options.api_key,))

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
        kwargs.setdefault("max_bytes", self.options.max_json_bytes)
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
            max_bytes=self.options.max_json_bytes,
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
    """`text` without `secret` or any 8+ character piece of it (see `bot.upstream.redact`)."""
    return redact_secrets(text, (secret,))


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


def size_text(size: int) -> str:
    return f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size / 1024:g} KiB"


async def read_limited(response: aiohttp.ClientResponse, limit: int, what: str = "the gateway's answer") -> bytes:
    """The body, or `AnswerTooLarge` as soon as it is known to be over `limit` bytes (the declared length, or
    the bytes read so far): an oversized body is never read whole."""
    declared = response.content_length
    if declared is not None and declared > limit:
        response.close()
        raise AnswerTooLarge(f"{what} is over {size_text(limit)}, more than sora-bot reads")
    body = bytearray()
    content = response.content
    while True:
        chunk = await content.readany()
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            response.close()
            raise AnswerTooLarge(f"{what} is over {size_text(limit)}, more than sora-bot reads")


async def error_from_response(
    response: aiohttp.ClientResponse, secrets: Iterable[str | None] = (), *, limit: int = MAX_ERROR_BYTES
) -> UpstreamError:
    """The typed error for a >= 400 answer, in the gateway's words, with our own API key redacted out of them
    (before anything is cut or parsed). An error body over `limit` is not read: the status alone speaks."""
    status = response.status
    try:
        raw = await read_limited(response, limit)
    except AnswerTooLarge:
        return classify_error(status, f"HTTP {status} (an error page over {size_text(limit)}, not read)")
    except (aiohttp.ClientError, OSError, TimeoutError):
        raw = b""
    body = redact(raw.decode("utf-8", "replace"), (bearer_token(response.request_info.headers), *secrets))
    message, code = error_message(body)
    return classify_error(status, message, code)


def foreign_error(status: int, what: str) -> UpstreamError:
    """A >= 400 answer from a host other than the gateway: its body is never shown (a member sees this)."""
    return UpstreamError(f"the {what} host answered HTTP {status}", status=status)


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
    max_bytes: int = MAX_JSON_BYTES,
) -> tuple[Any, Mapping[str, str]]:
    """One JSON request with bounded, jittered retries (`attempts` retries after the first try).

    Idempotent calls retry 429, 5xx, connection errors and garbled (non-JSON) bodies. A create
    (`idempotent=False`) retries only what cannot have reached the gateway's billing: a refused connection, or a
    429 (which means "not accepted"). `data` may be a zero-argument callable that builds a fresh body per attempt
    (a multipart form cannot be sent twice). An answer over `max_bytes` is `AnswerTooLarge`, never retried.
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
                    text = (await read_limited(response, max_bytes)).decode("utf-8", "replace")
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
    deadline: float | None = None,
    min_rate: float = 0.0,
    rate_window: float = RATE_WINDOW,
    policy: UrlPolicy | None = None,
    what: str = "video",
    secrets: Iterable[str | None] = (),
) -> DownloadedVideo:
    """Stream `url` into `dest` (never the whole file in memory), enforcing the size cap and signature.

    Transient failures (connection errors, 429/5xx) are retried `attempts` times; a refused or invalid file
    (`TooLarge`, `NotAVideo`, 4xx, a URL the `policy` refuses) is not. `deadline` (seconds) bounds the whole
    download, retries and their waits included; `min_rate` (bytes/s, 0 = none) fails an attempt whose average
    over the last `rate_window` seconds falls below it. Both are `UpstreamTimeout`. Redirects are followed
    hop by hop under `policy` (None: every host is trusted like the gateway). An error page from a host other
    than the gateway is never read. On any failure `dest` is removed, so no half file is left behind.
    """
    limit = asyncio.timeout(deadline)
    try:
        async with limit:
            return await _download_with_retries(
                session,
                url,
                dest,
                _DownloadRules(
                    headers=headers,
                    max_bytes=max_bytes,
                    verify_video=verify_video,
                    chunk_size=chunk_size,
                    request_timeout=request_timeout,
                    min_rate=min_rate,
                    rate_window=rate_window,
                    policy=policy,
                    what=what,
                    secrets=tuple(secrets),
                ),
                attempts,
            )
    except BaseException as exc:
        await _remove(dest)
        if isinstance(exc, TimeoutError) and limit.expired():
            assert deadline is not None
            raise UpstreamTimeout(f"the {what} download took longer than {deadline:g} s") from None
        raise


@dataclass(frozen=True, slots=True)
class _DownloadRules:
    headers: Mapping[str, str]
    max_bytes: int
    verify_video: bool
    chunk_size: int
    request_timeout: aiohttp.ClientTimeout | None
    min_rate: float
    rate_window: float
    policy: UrlPolicy | None
    what: str
    secrets: tuple[str | None, ...]


async def _download_with_retries(
    session: aiohttp.ClientSession, url: str, dest: Path, rules: _DownloadRules, attempts: int
) -> DownloadedVideo:
    attempt = 0
    while True:
        try:
            return await _download_once(session, url, dest, rules)
        except (
            aiohttp.ClientConnectorError,
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientOSError,
            TimeoutError,
        ) as exc:
            if attempt >= attempts:
                raise UpstreamError(f"the {rules.what} download kept failing ({type(exc).__name__})") from None
            delay = backoff_delay(attempt)
        except _RetryableStatus as exc:
            if attempt >= attempts:
                raise exc.error from None
            delay = exc.retry_after if exc.retry_after is not None else backoff_delay(attempt)
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


class RateFloor:
    """Fails a transfer whose average rate over the last `window` seconds (once `window` seconds have passed
    since it started) is below `min_rate` bytes/s. Samples are (time, bytes so far)."""

    def __init__(self, min_rate: float, window: float, start: float) -> None:
        self.min_rate = min_rate
        self.window = window
        self.start = start
        self.samples: deque[tuple[float, int]] = deque([(start, 0)])

    def add(self, now: float, total: int) -> None:
        self.samples.append((now, total))
        self._prune(now)

    def too_slow(self, now: float, total: int) -> bool:
        if now - self.start < self.window:
            return False
        self._prune(now)
        # The oldest kept sample is the last one at or before the window's start: the bytes since then are at
        # least the bytes inside the window, so the rate is never underestimated.
        return (total - self.samples[0][1]) / self.window < self.min_rate

    def check_every(self) -> float:
        return max(0.05, min(1.0, self.window / 4))

    def _prune(self, now: float) -> None:
        samples = self.samples
        while len(samples) >= 2 and samples[1][0] <= now - self.window:
            samples.popleft()


async def _download_once(
    session: aiohttp.ClientSession, url: str, dest: Path, rules: _DownloadRules
) -> DownloadedVideo:
    policy, what = rules.policy, rules.what
    async with open_url(
        session, url, policy=policy, headers=rules.headers, what=what, request_timeout=rules.request_timeout
    ) as response:
        if response.status >= 400:
            if policy is None or policy.is_gateway(response.url.host):
                error = await error_from_response(response, rules.secrets)
            else:
                error = foreign_error(response.status, what)
            if response.status in RETRY_STATUSES:
                raise _RetryableStatus(error, retry_after_seconds(response.headers))
            raise error
        max_bytes = rules.max_bytes
        declared = response.content_length
        if declared is not None and declared > max_bytes:
            raise TooLarge(f"the {what} is {declared / 2**20:.0f} MiB, over the {max_bytes / 2**20:.0f} MiB cap")
        size = 0
        content_type = response.headers.get("Content-Type", "application/octet-stream").split(";")[0]
        loop = asyncio.get_running_loop()
        floor = RateFloor(rules.min_rate, rules.rate_window, loop.time()) if rules.min_rate > 0 else None
        content = response.content
        handle = await asyncio.to_thread(open, dest, "wb")
        try:
            pending = bytearray()
            checked = not rules.verify_video
            while True:
                if floor is None:
                    chunk: bytes | None = await content.read(rules.chunk_size)
                else:
                    wait = asyncio.timeout(floor.check_every())
                    try:
                        async with wait:
                            chunk = await content.read(rules.chunk_size)
                    except TimeoutError:
                        if not wait.expired():
                            raise  # the socket's own read timeout: a retryable stall
                        chunk = None  # nothing arrived for a while: time to look at the rate
                    now = loop.time()
                    if chunk:
                        floor.add(now, size + len(chunk))
                    if floor.too_slow(now, size + len(chunk or b"")):
                        raise UpstreamTimeout(f"the {what} download was slower than {rules.min_rate / 1024:g} KiB/s")
                    if chunk is None:
                        continue
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"the {what} is over the {max_bytes / 2**20:.0f} MiB cap")
                pending += chunk
                if not checked and len(pending) >= 16:
                    sniffed = sniff_video(bytes(pending[:16]))
                    if sniffed is None:
                        raise NotAVideo(f"the gateway's {what} link returned something that is not a video")
                    content_type, checked = sniffed, True
                if len(pending) >= 1024 * 1024:
                    await asyncio.to_thread(handle.write, bytes(pending))
                    pending.clear()
            if not checked:
                sniffed = sniff_video(bytes(pending[:16]))
                if sniffed is None:
                    raise NotAVideo(f"the gateway's {what} link returned something that is not a video")
                content_type = sniffed
            if pending:
                await asyncio.to_thread(handle.write, bytes(pending))
        finally:
            await asyncio.to_thread(handle.close)
    return DownloadedVideo(path=str(dest), size=size, content_type=content_type)


async def fetch_image(
    session: aiohttp.ClientSession,
    url: str,
    *,
    policy: UrlPolicy,
    max_bytes: int,
    deadline: float = IMAGE_FETCH_TIMEOUT,
) -> ReferenceImage:
    """Fetch a reference image from a link (under the URL policy, at most `max_bytes`, within `deadline` s)."""
    limit = asyncio.timeout(deadline)
    try:
        async with limit, open_url(session, url, policy=policy, what="image") as response:
            if response.status >= 400:
                raise foreign_error(response.status, "image")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not content_type.startswith("image/"):
                raise BadRequest("the image link did not return an image")
            data = await read_limited(response, max_bytes, "the image")
    except TimeoutError:
        if limit.expired():
            raise UpstreamTimeout(f"the image download took longer than {deadline:g} s") from None
        raise UpstreamTimeout("the image host stopped answering") from None
    name = url_path_name(url) or "reference"
    return ReferenceImage(data=data, filename=name, content_type=content_type)


def url_path_name(url: str) -> str:
    """The last segment of a URL's path, without its query (`https://x/a/cat.png?sig=…` → `cat.png`)."""
    return url.split("?", 1)[0].split("#", 1)[0].rstrip("/").rpartition("/")[2]


__all__ = [
    "MAX_ASSISTANT_TEXT",
    "MAX_ERROR_BYTES",
    "MAX_JSON_BYTES",
    "RATE_WINDOW",
    "Cancelled",
    "JobStatus",
    "PollSchedule",
    "RateFloor",
    "UpstreamClient",
    "UpstreamOptions",
    "backoff_delay",
    "bearer_token",
    "classify_error",
    "download_to_file",
    "error_from_response",
    "error_message",
    "failure_from_body",
    "fetch_image",
    "foreign_error",
    "guard_events",
    "normalise_status",
    "parse_progress",
    "poll_after_seconds",
    "read_limited",
    "redact_secret",
    "request_json",
    "retry_after_seconds",
    "size_text",
    "sniff_video",
]
