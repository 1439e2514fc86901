"""An incremental Server-Sent Events decoder: bytes in, in any chunking, events out.

Follows the WHATWG event-stream rules (https://html.spec.whatwg.org/multipage/server-sent-events.html):
lines end with CRLF, LF or CR; `:` starts a comment (gateways' keep-alive `: ping`); `data:` lines of one
event are joined with "\\n"; `event:`, `id:` (sticky across events) and `retry:` fields; a leading BOM is
ignored; unknown fields are ignored. Two deliberate leniencies for real gateways: an event still pending when
the stream ends is dispatched by `finish()` (the spec drops it, and with it a gateway's last chunk), and
undecodable bytes become U+FFFD instead of an error, so one bad event never poisons the rest.

One event may be at most `max_event_bytes` long (`MAX_EVENT_BYTES` by default): a gateway that never ends an
event cannot make the decoder hold its bytes without bound (`SSEEventTooLarge`, an `UpstreamError`).

It works on bytes and decodes only complete lines, so a chunk boundary inside a UTF-8 character, a JSON
object or a CRLF pair changes nothing. The `data: ` line is the fast path; everything else is rare.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal, NamedTuple, overload

from bot.upstream.types import AnswerTooLarge

log = logging.getLogger(__name__)

MAX_EVENT_BYTES = 1024 * 1024  # one event (its lines up to the blank line that ends it)
BOM = b"\xef\xbb\xbf"
DONE_MARKER = "[DONE"  # `[DONE]`; seed 001 even shows it broken over two lines as `[DONE` + `]`


class SSEEventTooLarge(AnswerTooLarge):
    """An event went on past the decoder's `max_event_bytes` without a blank line to end it."""


class SSEEvent(NamedTuple):
    """One dispatched event. `event` is None for the default ("message") type."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def is_done(self) -> bool:
        """The OpenAI-style end-of-stream sentinel, tolerant of whitespace and a lost `]`."""
        return self.data.lstrip().startswith(DONE_MARKER)


class SSEDecoder:
    """Feed bytes with `feed()`, then call `finish()` once the stream has ended. Pure and synchronous.

    Works event by event: a blank line (`\\n\\n` once line endings are normalised) always ends an event, so the
    bytes are cut there and each complete event is read whole. The common one, a single `data: …` line, takes
    one check and one UTF-8 decode; anything else goes line by line through the spec's field rules."""

    __slots__ = ("_last_id", "_max_event", "_pending", "_pending_size", "_skip_lf", "_started")

    def __init__(self, *, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max_event = max_event_bytes
        self._pending: list[bytes] = []  # the unfinished event, in pieces (joined only once it ends)
        self._pending_size = 0
        self._skip_lf = False  # the previous chunk ended with CR: a LF opening the next one is the same break
        self._started = False  # the BOM check has been done
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode one chunk; returns the events it completed (often none, sometimes many)."""
        events: list[SSEEvent] = []
        blocks = self._blocks(chunk)
        if not blocks:
            return events
        append = events.append
        last_id = self._last_id
        for block in blocks:
            if block[:6] == b"data: " and b"\n" not in block:
                append(_new_event(SSEEvent, (block[6:].decode("utf-8", "replace"), None, last_id, None)))
            elif block:
                event = self._block(block)
                last_id = self._last_id
                if event is not None:
                    append(event)
        return events

    def feed_data(self, chunk: bytes) -> list[bytes]:
        """Like `feed`, for consumers that read only the data (OpenAI-style streams): each completed event's
        data as raw UTF-8 bytes, undecoded, so a consumer can look at its shape before paying for decoding.
        Event types, ids and retry values are still tracked (`last_event_id`) but not returned."""
        blocks = self._blocks(chunk)
        if not blocks:
            return []
        data: list[bytes] = []
        append = data.append
        for block in blocks:
            if block[:6] == b"data: " and b"\n" not in block:
                append(block[6:])
            elif block:
                event = self._block(block, decode=False)
                if event is not None:
                    append(event)
        return data

    def finish(self) -> list[SSEEvent]:
        """The stream ended: dispatch the unterminated last event, if it has any data."""
        block = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if not self._started:  # a whole stream shorter than a BOM
            self._started = True
            block = block.removeprefix(BOM)
        event = self._block(block) if block else None
        return [event] if event is not None else []

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    # --- internals -----------------------------------------------------------------------------------------

    def _blocks(self, chunk: bytes) -> list[bytes]:
        """The complete events `chunk` finishes, each as its lines without the blank line that ended it."""
        if not chunk:
            return []
        if not self._started:
            chunk = self._strip_bom(chunk)
            if not chunk:
                return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == 0x0A:
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            if chunk[-1] == 0x0D:
                self._skip_lf = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        pending = self._pending
        if b"\n\n" not in chunk and not (pending and chunk[0] == 0x0A and pending[-1][-1] == 0x0A):
            pending.append(chunk)
            self._pending_size += len(chunk)
            if self._pending_size > self._max_event:
                self._too_large()
            return []
        if pending:
            pending.append(chunk)
            chunk = b"".join(pending)
            pending.clear()
        blocks = chunk.split(b"\n\n")
        tail = blocks.pop()
        self._pending_size = len(tail)
        if tail:
            pending.append(tail)
        # Only a chunk longer than the cap can hold an event longer than the cap.
        if len(chunk) > self._max_event and (
            self._pending_size > self._max_event or any(len(block) > self._max_event for block in blocks)
        ):
            self._too_large()
        return blocks

    def _too_large(self) -> None:
        self._pending.clear()
        self._pending_size = 0
        raise SSEEventTooLarge(f"the gateway sent one stream event over {self._max_event / 1024:g} KiB")

    def _strip_bom(self, chunk: bytes) -> bytes:
        head = b"".join(self._pending) + chunk if self._pending else chunk
        if len(head) < len(BOM) and BOM.startswith(head):
            self._pending = [head]  # could still be a BOM split across chunks: wait for more
            self._pending_size = len(head)
            return b""
        self._pending.clear()
        self._pending_size = 0
        self._started = True
        return head.removeprefix(BOM)

    @overload
    def _block(self, block: bytes) -> SSEEvent | None: ...
    @overload
    def _block(self, block: bytes, *, decode: Literal[False]) -> bytes | None: ...

    def _block(self, block: bytes, *, decode: bool = True) -> SSEEvent | bytes | None:
        """One event's lines (it ends with the blank line that cut it off), by the spec's field rules."""
        data: list[bytes] = []
        event_type: str | None = None
        retry: int | None = None
        for line in block.split(b"\n"):
            if not line:  # only a block's first line can be blank (a third newline in a row): nothing pending
                continue
            if line[0] == 0x3A:  # ":" starts a comment
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event_type = value.decode("utf-8", "replace") or None
            elif name == b"id":
                if b"\0" not in value:
                    self._last_id = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():
                retry = int(value)
            # any other field name is ignored, as the spec says
        if not data:
            return None
        raw = b"\n".join(data)
        if not decode:
            return raw
        return SSEEvent(raw.decode("utf-8", "replace"), event_type, self._last_id, retry)


_new_event = tuple.__new__  # SSEEvent without the Python-level __new__ of NamedTuple, on the hot path


def decode_all(chunks: list[bytes] | tuple[bytes, ...]) -> list[SSEEvent]:
    """Decode a whole stream given as chunks (tests and tools)."""
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.finish())
    return events


__all__ = ["DONE_MARKER", "MAX_EVENT_BYTES", "SSEDecoder", "SSEEvent", "SSEEventTooLarge", "decode_all"]
