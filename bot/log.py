"""Logging set-up with a filter that redacts secrets from every record, whoever logs it."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

BEARER = re.compile(r"(Bearer|Bot)\s+[A-Za-z0-9._\-]{8,}")


class RedactingFilter(logging.Filter):
    """Replaces known secrets (and anything shaped like an Authorization value) with asterisks."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "**********")
        return BEARER.sub(lambda m: f"{m.group(1)} **********", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> RedactingFilter:
    """Configure the root logger once: one line per record on stderr, secrets redacted."""
    redactor = RedactingFilter(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(redactor)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("discord.http").setLevel(max(logging.getLevelName(level), logging.INFO))
    return redactor


__all__ = ["RedactingFilter", "setup_logging"]
