"""An incremental Server-Sent Events decoder: bytes in, in any chunking, events out.

Follows the WHATWG event-stream rules (https://html.spec.whatwg.org/multipage/server-sent-events.html):
lines end with CRLF, LF or CR; `:` starts a comment (gateways' keep-alive `: ping`); `data:` lines of one
event are joined with "\\n"; `event:`, `id:` (sticky across events) and `retry:` fields; a leading BOM is
ignored; unknown fields are ignored. Two deliberate leniencies for real gateways: an event still pending when
the stream ends is dispatched by `finish()` (the spec drops it, and with it a gateway's last chunk), and
undecodable bytes become U+FFFD instead of an error, so one bad event never poisons the rest.

It works on bytes and decodes only complete lines, so a chunk boundary inside a UTF-8 character, a JSON
object or a CRLF pair changes nothing. The `data: ` line is the fast path; everything else is rare.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

BOM = b"\xef\xbb\xbf"
DONE_MARKER = "[DONE"  # `[DONE]`; seed 001 even shows it broken over two lines as `[DONE` + `]`


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
    """Feed bytes with `feed()`, then call `finish()` once the stream has ended. Pure and synchronous."""

    __slots__ = ("_data", "_event", "_last_id", "_pending", "_retry", "_skip_lf", "_started")

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # the unfinished last line, in pieces (joined only once it ends)
        self._skip_lf = False  # the previous chunk ended with CR: a LF opening the next one is the same break
        self._started = False  # the BOM check has been done
        self._data: list[bytes] = []
        self._event: str | None = None
        self._retry: int | None = None
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode one chunk; returns the events it completed (often none, sometimes many)."""
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
        if b"\n" not in chunk:
            self._pending.append(chunk)
            return []
        lines = chunk.split(b"\n")
        if self._pending:
            self._pending.append(lines[0])
            lines[0] = b"".join(self._pending)
            self._pending.clear()
        tail = lines.pop()
        if tail:
            self._pending.append(tail)
        return self._lines(lines)

    def finish(self) -> list[SSEEvent]:
        """The stream ended: decode the unterminated last line and dispatch whatever event is pending."""
        lines = [b"".join(self._pending)] if self._pending else []
        self._pending.clear()
        if not self._started and lines:  # a whole stream shorter than a BOM
            self._started = True
            lines[0] = lines[0].removeprefix(BOM)
        lines.append(b"")
        return self._lines(lines)

    # --- internals -----------------------------------------------------------------------------------------

    def _strip_bom(self, chunk: bytes) -> bytes:
        head = b"".join(self._pending) + chunk if self._pending else chunk
        if len(head) < len(BOM) and BOM.startswith(head):
            self._pending = [head]  # could still be a BOM split across chunks: wait for more
            return b""
        self._pending.clear()
        self._started = True
        return head.removeprefix(BOM)

    def _lines(self, lines: list[bytes]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        data = self._data
        for line in lines:
            if line.startswith(b"data: "):
                data.append(line[6:])
            elif not line:
                if data:
                    raw = data[0] if len(data) == 1 else b"\n".join(data)
                    events.append(
                        SSEEvent(raw.decode("utf-8", "replace"), self._event, self._last_id, self._retry)
                    )
                    data = self._data = []
                self._event = None
                self._retry = None
            elif line[0] != 0x3A:  # ":" starts a comment
                self._field(line, data)
        return events

    def _field(self, line: bytes, data: list[bytes]) -> None:
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace") or None
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
        # any other field name is ignored, as the spec says


def decode_all(chunks: list[bytes] | tuple[bytes, ...]) -> list[SSEEvent]:
    """Decode a whole stream given as chunks (tests and tools)."""
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    events.extend(decoder.finish())
    return events


__all__ = ["DONE_MARKER", "SSEDecoder", "SSEEvent", "decode_all"]
