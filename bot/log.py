"""Logging set-up with a filter that redacts secrets from every record, whoever logs it."""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TextIO

import aiohttp

MASK = "**********"
REDACTED = "[redacted]"
BEARER = re.compile(r"(Bearer|Bot)\s+[A-Za-z0-9._\-]{8,}")
# An interaction token (or a webhook's token) is a credential: whoever has it can post as the bot for 15 minutes.
# discord.py logs the URLs carrying them at DEBUG, and the raw gateway events (`"token": ...`) too.
TOKEN_IN_PATH = re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/\s?#'\"<>]+")
TOKEN_FIELD = re.compile(r"""(["']token["']\s*:\s*["'])[^"']+""")
# A secret cut short (a truncated key in an error message) still leaks if this much of it shows.
FRAGMENT_CHARS = 8
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class SecretFragments:
    """Finds every run of 8+ characters of a text that also occurs somewhere in one secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.starts: dict[str, list[int]] = defaultdict(list)
        for start in range(len(secret) - FRAGMENT_CHARS + 1):
            self.starts[secret[start : start + FRAGMENT_CHARS]].append(start)

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        position = 0
        while position <= len(text) - FRAGMENT_CHARS:
            starts = self.starts.get(text[position : position + FRAGMENT_CHARS])
            if starts is None:
                position += 1
                continue
            length = max(self._common_length(text, position, start) for start in starts)
            yield position, position + length
            position += length

    def _common_length(self, text: str, position: int, start: int) -> int:
        length = FRAGMENT_CHARS
        while (
            position + length < len(text)
            and start + length < len(self.secret)
            and text[position + length] == self.secret[start + length]
        ):
            length += 1
        return length


class RedactingFilter(logging.Filter):
    """Replaces known secrets, any 8+ character piece of one, anything shaped like an Authorization value and
    Discord interaction/webhook tokens with a mask, in the message, its arguments and the exception text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.fragments = [SecretFragments(s) for s in self.secrets if len(s) >= FRAGMENT_CHARS]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        text = self._mask_fragments(text)
        text = BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
        text = TOKEN_IN_PATH.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
        return TOKEN_FIELD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)

    def _mask_fragments(self, text: str) -> str:
        spans = sorted(span for finder in self.fragments for span in finder.spans(text))
        if not spans:
            return text
        pieces: list[str] = []
        written = 0
        for start, end in spans:
            if end <= written:
                continue
            pieces.append(text[written : max(start, written)])
            pieces.append(MASK)
            written = end
        pieces.append(text[written:])
        return "".join(pieces)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that don't fit the format: keep both, as text
            message = f"{record.msg} {record.args}"
        redacted = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


def redacting_handler(redactor: RedactingFilter, stream: TextIO | None = None) -> logging.Handler:
    """The project's log handler: one line per record (on stderr unless told otherwise), through `redactor`."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(redactor)
    return handler


def connection_problem(exc: BaseException) -> str:
    """A few words on why a connection failed ("Connection refused", "Name or service not known", ...)."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    os_error = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(os_error, socket.gaierror):  # negative errno values that os.strerror doesn't know
        return str(os_error.strerror or "the host name does not resolve")
    number = getattr(os_error, "errno", None)
    if isinstance(number, int) and number > 0:
        return os.strerror(number)
    reason = getattr(os_error, "strerror", None)
    return str(reason) if reason else type(exc).__name__


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> RedactingFilter:
    """Configure the root logger once: one line per record on stderr, secrets redacted."""
    redactor = RedactingFilter(secrets)
    handler = redacting_handler(redactor)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("discord.http").setLevel(max(logging.getLevelName(level), logging.INFO))
    return redactor


__all__ = ["RedactingFilter", "connection_problem", "redacting_handler", "setup_logging"]
