"""The chat wire format: `POST /v1/chat/completions` with `stream: true`, progress as prose (seeds 000-003).

The request is an ordinary chat conversation. A text-to-video job is one user message; image-to-video sends
content parts (`text` + `image_url`); continuous modification (seed 001) sends the earlier turns back verbatim,
user / assistant alternating, then the new instruction: the earlier assistant text carries the task id and
sid by which the gateway finds the parent video. `messages_for` builds exactly that and nothing else.

The answer streams as SSE (`bot.upstream.sse`); `ChatStream` turns its bytes into events, reading the text of
`delta.content` and `delta.reasoning_content` with `bot.upstream.progress`. It is pure and synchronous (the
benchmark drives it directly); `ChatClient` only moves bytes and enforces time limits.

Time limits: `stall_timeout` bounds every wait for bytes, the response headers included (a gateway that holds
the request open without a word until the video is done needs a larger value); the job as a whole is bounded
by `guard_events`. Silence or a lost connection after the answer is complete costs nothing. The create call is
never retried once it may have reached the gateway (a second POST is a second bill): only a refused or
timed-out connect, or a 429 (which is a refusal), is tried again.

Duration and orientation go into the outgoing prompt (`prompt_with_hints`, seed 003's FAQ); the model name
carries the rest (sora-2 vs sora-2-pro/-hd). No extra top-level fields are sent: strict OpenAI-compatible
gateways reject unknown parameters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from json.decoder import scanstring
from json.scanner import make_scanner
from typing import Any, ClassVar

import aiohttp

from bot.upstream.base import (
    MAX_ASSISTANT_TEXT,
    UpstreamClient,
    backoff_delay,
    classify_error,
    error_from_response,
    error_message,
    read_limited,
    retry_after_seconds,
    size_text,
)
from bot.upstream.progress import ProgressParser, clean_reason
from bot.upstream.redact import redact, redact_secrets
from bot.upstream.sse import MAX_EVENT_BYTES, SSEDecoder
from bot.upstream.types import (
    AnswerTooLarge,
    ChatTurn,
    Event,
    Failed,
    FailureKind,
    ReferenceImage,
    Succeeded,
    UpstreamError,
    UpstreamTimeout,
    VideoRequest,
)

log = logging.getLogger(__name__)

CHAT_PATH = "/v1/chat/completions"
HEAD_LIMIT = 1024 * 1024  # how much of an answer is kept in case it turns out not to be an event stream

DURATION_MENTIONED = re.compile(r"duration\s*[:：=]|时长|\b\d+\s*(?:s|secs?|seconds?)\b|\d+\s*秒", re.IGNORECASE)
ORIENTATION_MENTIONED = re.compile(r"landscape|portrait|horizontal|vertical|横屏|竖屏|横版|竖版|16:9|9:16", re.I)

_scan_json = make_scanner(json.JSONDecoder())  # json.loads without its per-call overhead
_scan_string = scanstring
TEMPLATE_FIELDS = {"content": "content", "reasoning_content": "reasoning", "reasoning": "reasoning"}
TEMPLATE_PROBE = "probe-\u2063-probe"
MAX_LESSONS = 8  # a gateway whose chunks never repeat their envelope stops being studied
_JSON_ERRORS = (ValueError, StopIteration, RecursionError)


# --- the request -----------------------------------------------------------------------------------------


def user_message(prompt: str, images: Sequence[ReferenceImage] = ()) -> dict[str, Any]:
    """A user turn: plain text, or content parts when there are reference images (bytes go as data URLs)."""
    if not images:
        return {"role": "user", "content": prompt}
    parts: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
    parts.extend({"type": "image_url", "image_url": {"url": image.as_data_url()}} for image in images)
    return {"role": "user", "content": parts}


def messages_for(
    history: Sequence[ChatTurn], prompt: str, images: Sequence[ReferenceImage] = ()
) -> list[dict[str, Any]]:
    """The conversation for a new video: each earlier turn as user + assistant (verbatim), then `prompt`."""
    messages: list[dict[str, Any]] = []
    for turn in history:
        messages.append(user_message(turn.prompt, turn.images))
        messages.append({"role": "assistant", "content": turn.assistant_text})
    messages.append(user_message(prompt, images))
    return messages


def orientation_of(size: str | None) -> str | None:
    if not size or "x" not in size:
        return None
    width, _, height = size.partition("x")
    try:
        return "portrait" if int(height) > int(width) else "landscape"
    except ValueError:
        return None


def prompt_with_hints(
    prompt: str, *, seconds: int | None = None, size: str | None = None, orientation: str | None = None
) -> str:
    """The prompt with the duration and orientation spelled out, which is how chat gateways take them (seed
    003's FAQ: "add a duration flag in the prompt, such as 'duration: 5 seconds'"). Anything the member already
    wrote is left alone. Only the outgoing message gets this; the stored history keeps the member's words."""
    hints: list[str] = []
    if seconds and not DURATION_MENTIONED.search(prompt):
        hints.append(f"duration: {seconds} seconds")
    orientation = orientation or orientation_of(size)
    if orientation and not ORIENTATION_MENTIONED.search(prompt):
        hints.append(f"orientation: {orientation}")
    return f"{prompt}\n\n{', '.join(hints)}" if hints else prompt


# --- the answer ------------------------------------------------------------------------------------------


class ChatStream:
    """One chat answer, fed as raw bytes (SSE) or as a whole JSON body; produces events. No I/O.

    `secrets` are redacted from the gateway's words before they are cut into a failure reason. One event over
    `max_event_bytes`, or assistant text over `max_text` characters, raises `AnswerTooLarge`."""

    def __init__(
        self,
        *,
        ignore: Sequence[str] = (),
        secrets: Sequence[str] = (),
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_text: int = MAX_ASSISTANT_TEXT,
    ) -> None:
        self.decoder = SSEDecoder(max_event_bytes=max_event_bytes)
        self.parser = ProgressParser(ignore=tuple(ignore), secrets=tuple(secrets))
        self.secrets = tuple(secrets)
        self.max_text = max_text
        self.done = False  # `[DONE]` arrived
        self.finish_reason: str | None = None
        self.events = 0  # SSE events decoded
        self.garbage = 0  # events whose data was not a JSON object
        self.error: Failed | None = None  # an `{"error": …}` payload
        self._head = bytearray()
        self._source = ""  # "content" | "reasoning": where the last text came from
        self._templates: list[tuple[bytes, bytes, str, int, int]] = []  # (prefix, suffix, source, lengths)
        self._lessons = 0

    # --- feeding -------------------------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Take the next bytes of an event stream; returns the events they completed."""
        if self.done:
            return []
        if not self.events and len(self._head) < HEAD_LIMIT:
            self._head += data[: HEAD_LIMIT - len(self._head)]
        out: list[Event] = []
        templates = self._templates
        # Text of consecutive template chunks is handed to the parser in one piece per read: the parser gives
        # the same events for any split of its text, and one call per read costs far less than one per chunk.
        batch: list[str] = []
        batch_source = ""
        scan_string = _scan_string
        events = self.decoder.feed_data(data)
        self.events += len(events)
        for raw in events:
            handled = False
            for prefix, suffix, source, start, tail in templates:
                # The hot path (see _learn): the same envelope as an earlier chunk around one new string, so
                # only that string is decoded.
                if raw.startswith(prefix) and raw.endswith(suffix):
                    literal = raw[start : len(raw) - tail].decode("utf-8", "replace")
                    try:
                        value, end = scan_string(literal, 0)
                    except ValueError:
                        break
                    if end == len(literal):
                        handled = True
                        if value:
                            if source != batch_source:
                                if batch:
                                    out.extend(self._text("".join(batch), batch_source))
                                    batch.clear()
                                batch_source = source
                            batch.append(value)
                    break
            if handled:
                continue
            text = raw.decode("utf-8", "replace")
            if batch:
                out.extend(self._text("".join(batch), batch_source))
                batch.clear()
            if text[:5] == "[DONE" or text.lstrip().startswith("[DONE"):
                self.done = True
                break
            try:
                payload, end = _scan_json(text, 0)
                if end != len(text) and text[end:].strip():
                    raise ValueError("trailing data")
            except _JSON_ERRORS:
                payload = _lenient_json(text)
                if payload is None:
                    self.garbage += 1
                    log.debug("skipping an undecodable event (%d bytes)", len(text))
                    continue
            if type(payload) is not dict:
                self.garbage += 1
                continue
            found = self._payload(payload, text)
            if found:
                out.extend(found)
            if self.error is not None:
                self.done = True
                break
            if self._lessons < MAX_LESSONS:
                self._learn(payload, text)
        if batch:
            out.extend(self._text("".join(batch), batch_source))
        return out

    def feed_json(self, body: bytes | str) -> list[Event]:
        """Take a whole non-streaming answer (`chat.completion`, or an error body); returns all its events,
        the terminal one last."""
        try:
            payload = json.loads(body)
        except ValueError:
            return [self.failed(FailureKind.UPSTREAM, "the gateway answered with JSON that does not parse")]
        if not isinstance(payload, dict):
            return [self.failed(FailureKind.UPSTREAM, "the gateway answered with an unexpected JSON document")]
        self.events += 1
        raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        out = self._payload(payload, raw)
        out.extend(self.finish())
        return out

    def finish(self, *, trusted: bool = True) -> list[Event]:
        """The answer ended. Returns the last events, the terminal `Succeeded`/`Failed` last.

        `trusted=False` when the connection broke: the unfinished last line may hold a cut-off URL, so only
        complete lines count then."""
        out: list[Event] = []
        if self.events == 0 and self._head:
            head = bytes(self._head)
            self._head.clear()
            if head.lstrip()[:1] == b"{":  # a JSON body behind an event-stream content type
                return self.feed_json(head)
        if trusted:
            for sse in self.decoder.finish():
                out.extend(self._last_event(sse.data))
            out.extend(self.parser.finish())
        out.append(self.verdict())
        return out

    def _last_event(self, data: str) -> list[Event]:
        """The stream's last event when no blank line ended it (the decoder hands it over at the end)."""
        if self.done or data.lstrip().startswith("[DONE"):
            self.done = True
            return []
        self.events += 1
        payload = _lenient_json(data)
        if not isinstance(payload, dict):
            self.garbage += 1
            return []
        return self._payload(payload, data)

    # --- the outcome ---------------------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """The gateway said the answer is over (`[DONE]`, a finish reason, an error payload)."""
        return self.done or self.finish_reason is not None or self.error is not None

    @property
    def settled(self) -> bool:
        """The answer has said all it needs to: a lost connection or silence now costs nothing."""
        if self.complete:
            return True
        parser = self.parser
        return (parser.success_line is not None or bool(parser.failures)) and parser.outcome() is not None

    def failed(self, kind: FailureKind, reason: str) -> Failed:
        parser = self.parser
        return Failed(kind, reason, task_id=parser.task_id or parser.sid, assistant_text=parser.text)

    def verdict(self) -> Succeeded | Failed:
        """What the whole answer amounts to."""
        if self.error is not None:
            return replace(self.error, task_id=self.parser.task_id or self.parser.sid, assistant_text=self.parser.text)
        outcome = self.parser.outcome()
        if outcome is not None:
            return outcome
        if self.finish_reason == "content_filter":
            return self.failed(FailureKind.MODERATION, "the gateway's content filter stopped the answer")
        if self.garbage:
            return self.failed(
                FailureKind.UPSTREAM, f"the gateway sent {self.garbage} undecodable event(s) and no video link"
            )
        if self.events == 0:
            return self.failed(FailureKind.UPSTREAM, "the gateway's answer was empty or not an event stream")
        if self.parser.success_line is not None:
            return self.failed(FailureKind.UPSTREAM, "the gateway said the video is ready but gave no link to it")
        text = self.parser.text.strip()
        last_line = clean_reason(redact(text.splitlines()[-1], self.secrets)) if text else ""
        reason = "the gateway ended its answer without a video link"
        return self.failed(FailureKind.UPSTREAM, f"{reason}: {last_line}" if last_line else reason)

    # --- internals -----------------------------------------------------------------------------------------

    # Within one answer every chunk repeats the same envelope (id, created, model, index, finish_reason: null)
    # around one changing string. Once a chunk has been fully parsed, the text before and after that string is
    # a template: a later event made of the same prefix, one valid JSON string literal and the same suffix is
    # the same JSON document with another string, so only the string needs decoding. Anything else takes the
    # full parse. This makes JSON cost a fraction of the decoding instead of most of it.

    def _learn(self, payload: dict[str, Any], text: str) -> None:
        choices = payload.get("choices")
        if type(choices) is not list or len(choices) != 1 or type(choices[0]) is not dict:
            return
        choice = choices[0]
        delta = choice.get("delta")
        if choice.get("finish_reason") is not None or type(delta) is not dict or len(delta) != 1:
            return
        ((key, value),) = delta.items()
        source = TEMPLATE_FIELDS.get(key)
        if source is None or type(value) is not str:
            return
        self._lessons += 1
        # A template for this field that did not fit this chunk is stale (the envelope changed): replace it.
        self._templates[:] = [t for t in self._templates if t[2] != source]
        marker = f'"{key}":'
        at = text.find(marker)
        while at >= 0:
            start = at + len(marker)
            while start < len(text) and text[start] in " \t\r\n":
                start += 1
            if text[start : start + 1] == '"':
                try:
                    found, end = _scan_string(text, start + 1)
                except ValueError:
                    found, end = None, 0
                prefix, suffix = text[: start + 1], text[end:]
                if found == value and self._template_holds(prefix, suffix, payload, key):
                    head, tail = prefix.encode(), suffix.encode()
                    self._templates.append((head, tail, source, len(head), len(tail)))
                    return
            at = text.find(marker, at + 1)

    @staticmethod
    def _template_holds(prefix: str, suffix: str, payload: dict[str, Any], key: str) -> bool:
        """The template really puts its string at choices[0].delta[key] (checked once, with a probe)."""
        try:
            probe = json.loads(f"{prefix}{TEMPLATE_PROBE}\"{suffix}")
        except ValueError:
            return False
        choice = payload["choices"][0]
        expected = {**payload, "choices": [{**choice, "delta": {**choice["delta"], key: TEMPLATE_PROBE}}]}
        return bool(probe == expected)

    def _payload(self, payload: dict[str, Any], raw: str) -> list[Event]:
        choices = payload.get("choices")
        if not choices:
            if payload.get("error"):
                self._error(raw)
            return []
        out: list[Event] = []
        for choice in choices:
            if type(choice) is not dict or choice.get("index", 0) not in (0, None):
                continue
            delta = choice.get("delta") or choice.get("message")
            if delta and type(delta) is dict:
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                if reasoning:
                    out.extend(self._text(reasoning, "reasoning"))
                content = delta.get("content")
                if content:
                    out.extend(self._text(content, "content"))
            finish = choice.get("finish_reason")
            if finish:
                self.finish_reason = str(finish).lower()
        return out

    def _text(self, text: Any, source: str) -> Sequence[Event]:
        if type(text) is not str:
            text = _parts_text(text)
            if not text:
                return ()
        if source != self._source:
            text = self._switch(text, source)
        events = self.parser.feed(text)
        if self.parser.size > self.max_text:
            limit = size_text(self.max_text)
            raise AnswerTooLarge(f"the gateway's answer text is over {limit}, more than sora-bot keeps")
        return events

    def _switch(self, text: str, source: str) -> str:
        """Text from the other field (content vs reasoning_content) starts on a line of its own."""
        previous = self.parser.text if self._source else ""
        self._source = source
        return text if not previous or previous[-1] == "\n" else "\n" + text

    def _error(self, raw: str) -> None:
        message, code = error_message(redact(raw, self.secrets))
        status = int(code) if code and code.isdigit() and 100 <= int(code) < 600 else None
        error = classify_error(status, message or "the gateway reported an error", code)
        self.error = error.to_event()


def _salvage(content: aiohttp.StreamReader) -> bytes:
    """The bytes that arrived with a broken connection but were not read yet. aiohttp's reader raises the
    connection error before handing them over, and a gateway that hangs up right after its last event has
    often sent that event in the same breath: this takes them from the buffer directly (a private method,
    hence the guard: if it ever fails, those bytes are lost and nothing else changes)."""
    try:
        data = content._read_nowait(-1)
    except Exception:  # any change inside aiohttp only costs the salvage
        return b""
    return bytes(data) if isinstance(data, bytes | bytearray) else b""


def _lenient_json(text: str) -> Any:
    """JSON, tolerating surrounding whitespace; None when it is not JSON at all."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _parts_text(parts: Any) -> str:
    """Text out of a content-parts list (`[{"type": "text", "text": …}]`), which a few gateways stream."""
    if isinstance(parts, list):
        return "".join(str(p.get("text", "")) for p in parts if isinstance(p, dict) and p.get("type") == "text")
    return ""


# --- the client ------------------------------------------------------------------------------------------


class ChatClient(UpstreamClient):
    """Streams one chat completion per video; remixes by sending the earlier turns (`VideoRequest.history`)."""

    api_format: ClassVar[str] = "chat"
    prompt_hints: ClassVar[bool] = True  # spell duration/orientation out in the outgoing prompt

    def wire_prompt(self, request: VideoRequest) -> str:
        if not self.prompt_hints:
            return request.prompt
        return prompt_with_hints(
            request.prompt, seconds=request.seconds, size=request.size, orientation=request.orientation
        )

    def request_body(self, request: VideoRequest) -> dict[str, Any]:
        return {
            "model": request.model,
            "messages": messages_for(request.history, self.wire_prompt(request), request.images),
            "stream": True,
        }

    async def _generate(self, request: VideoRequest) -> AsyncIterator[Event]:
        body = self.request_body(request)
        options = self.options
        stream = ChatStream(
            ignore=(self.wire_prompt(request),),
            secrets=(options.api_key,),
            max_event_bytes=options.max_event_bytes,
            max_text=options.max_assistant_text,
        )
        response = await self._open(body)
        try:
            async for event in self._read(response, stream):
                yield self._redacted(event)
        finally:
            # Whatever ended the job (the answer, an error, aclose(), a cancelled task): give the connection
            # back, closing it when the body was not read to the end.
            if response.content.at_eof():
                response.release()
            else:
                response.close()

    async def _open(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=self.options.connect_timeout, sock_read=self.options.stall_timeout
        )
        headers = self.headers({"Accept": "text/event-stream"})
        attempt = 0
        while True:
            try:
                response = await self.session.post(self.url(CHAT_PATH), json=body, headers=headers, timeout=timeout)
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                if attempt >= self.options.retry_attempts:
                    raise UpstreamError(f"could not connect to the gateway ({type(exc).__name__})") from None
                delay = backoff_delay(attempt)
            except (aiohttp.ServerTimeoutError, TimeoutError):
                raise UpstreamTimeout(
                    f"the gateway did not answer within {self.options.stall_timeout:g} s"
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                # It may have reached the gateway and started a billed job: never sent twice.
                raise UpstreamError(f"the gateway dropped the connection ({type(exc).__name__})") from None
            else:
                if response.status < 400:
                    return response
                try:
                    if response.status == 429 and attempt < self.options.retry_attempts:
                        after = retry_after_seconds(response.headers)
                        delay = after if after is not None else backoff_delay(attempt)
                    else:
                        error = await error_from_response(response, (self.options.api_key,))
                        raise type(error)(self.redact(error.message), status=error.status)
                finally:
                    response.release()
            attempt += 1
            log.debug("chat create not accepted, trying again in %.2fs (attempt %d)", delay, attempt)
            await asyncio.sleep(delay)

    async def _read(self, response: aiohttp.ClientResponse, stream: ChatStream) -> AsyncIterator[Event]:
        content_type = response.headers.get("Content-Type", "").lower()
        if "json" in content_type and "event-stream" not in content_type:
            try:
                body = await read_limited(response, self.options.max_json_bytes)
            except (aiohttp.ServerTimeoutError, TimeoutError):
                yield stream.failed(FailureKind.TIMEOUT, self._silence())
                return
            except (aiohttp.ClientError, OSError):
                yield stream.failed(FailureKind.UPSTREAM, "the gateway dropped the connection mid-answer")
                return
            for event in stream.feed_json(body):
                yield event
            return
        content = response.content
        trusted = True
        while True:
            try:
                data = await content.readany()
            except (aiohttp.ServerTimeoutError, TimeoutError):
                if stream.settled:  # silence after the answer was all there: what it says stands
                    trusted = stream.complete
                    break
                yield stream.failed(FailureKind.TIMEOUT, self._silence())
                return
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, OSError):
                for event in stream.feed(_salvage(content)):
                    yield event
                if stream.settled:
                    trusted = stream.complete  # else the unfinished last line may be a cut-off URL
                    break
                yield stream.failed(FailureKind.UPSTREAM, "the gateway dropped the connection mid-stream")
                return
            if not data:
                break
            for event in stream.feed(data):
                yield event
            if stream.done:
                break
        for event in stream.finish(trusted=trusted):
            yield event

    def _silence(self) -> str:
        return f"the gateway sent nothing for {self.options.stall_timeout:g} s"

    def _redacted(self, event: Event) -> Event:
        """The key (or a piece of it) out of what is kept: the reason (signed links' signatures too) and the
        assistant text (only the key: its links stay as the gateway wrote them, for the remix history)."""
        if not isinstance(event, Failed | Succeeded):
            return event
        secrets = (self.options.api_key,)
        text = redact_secrets(event.assistant_text, secrets)
        if isinstance(event, Failed):
            reason = self.redact(event.reason)
            if reason != event.reason or text != event.assistant_text:
                return replace(event, reason=reason, assistant_text=text)
        elif text != event.assistant_text:
            return replace(event, assistant_text=text)
        return event


__all__ = [
    "ChatClient",
    "ChatStream",
    "messages_for",
    "orientation_of",
    "prompt_with_hints",
    "user_message",
]
