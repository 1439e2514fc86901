"""Secrets never reach a log line, whoever logs them."""

from __future__ import annotations

import io
import logging

from bot.log import RedactingFilter


def test_redacts_known_secrets_args_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(["sk-live-abcdef123456", "MTIz.discord.token"]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling with key %s", "sk-live-abcdef123456")
        logger.warning("header Authorization: Bearer some-other-token-12345")
        try:
            raise RuntimeError("token MTIz.discord.token leaked")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "sk-live-abcdef123456" not in output
    assert "MTIz.discord.token" not in output
    assert "some-other-token-12345" not in output
    assert output.count("**********") >= 3
    assert "RuntimeError" in output  # the traceback itself is kept
