"""Interaction tokens and secrets never reach a log line, even with discord.py logging everything at DEBUG."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from bot.fake_upstream import FakeUpstream
from bot.log import RedactingFilter, redacting_handler
from tests.bot.helpers import start_bot, wait_result
from tests.discord_double import DiscordDouble
from tests.fixtures.discord import BotHarness
from tests.fixtures.upstream import TEST_API_KEY

# What the double puts in front of the random part of every interaction token it issues.
TOKEN_PREFIX = "aW50ZXJhY3Rpb24"


LogTo = Callable[[RedactingFilter, str], tuple[logging.Logger, io.StringIO]]


@pytest.fixture
def log_to() -> Iterator[LogTo]:
    """`logger, output = log_to(redactor, name)`: a DEBUG logger writing through the project's handler."""
    attached: list[tuple[logging.Logger, logging.Handler]] = []

    def attach(redactor: RedactingFilter, name: str) -> tuple[logging.Logger, io.StringIO]:
        stream = io.StringIO()
        handler = redacting_handler(redactor, stream)
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        attached.append((logger, handler))
        return logger, stream

    yield attach
    for logger, handler in attached:
        logger.removeHandler(handler)
        logger.propagate = True


def test_webhook_and_interaction_tokens_are_redacted_in_messages_args_and_tracebacks(log_to: LogTo) -> None:
    logger, stream = log_to(RedactingFilter(), "test.redaction.paths")
    token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OmFiY2Rl-_x"
    logger.debug("PATCH https://discord.com/api/v10/webhooks/111/%s/messages/@original has returned 200", token)
    logger.debug(
        "Webhook ID %s with %s %s", 222, "POST", f"https://discord.com/api/v10/interactions/333/{token}/callback"
    )
    logger.debug("For Shard ID %s: WebSocket Event: %s", None, {"t": "INTERACTION_CREATE", "d": {"token": token}})
    logger.debug(json.dumps({"token": token, "id": "444"}))
    try:
        raise RuntimeError(f"404 on /webhooks/555/{token}?wait=true")
    except RuntimeError:
        logger.exception("delivery failed")

    output = stream.getvalue()
    assert token not in output and token[16:24] not in output
    assert "/webhooks/111/[redacted]/messages/@original has returned 200" in output
    assert "/interactions/333/[redacted]/callback" in output
    assert "'token': '[redacted]'" in output and '"token": "[redacted]"' in output
    assert "404 on /webhooks/555/[redacted]?wait=true" in output
    assert "RuntimeError" in output  # the traceback itself is kept


def test_a_fragment_of_a_secret_is_redacted(log_to: LogTo) -> None:
    key = "sk-live-0123456789abcdefghij"
    logger, stream = log_to(RedactingFilter([key, "MTAw.short"]), "test.redaction.fragments")
    logger.warning("Incorrect API key provided: %s...", key[:14])
    logger.warning("key ending ...%s", key[-9:])
    logger.warning("a middle piece %s here", key[6:16])
    logger.warning("seven chars of it are not enough: %s", key[:7])
    logger.warning("MTAw is a short secret: its pieces are not masked, the whole is: MTAw.short")

    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "Incorrect API key provided: **********...",
        "key ending ...**********",
        "a middle piece ********** here",
        "seven chars of it are not enough: sk-live",
        "MTAw is a short secret: its pieces are not masked, the whole is: **********",
    ]


def test_a_record_whose_arguments_do_not_fit_still_logs(log_to: LogTo) -> None:
    logger, stream = log_to(RedactingFilter(["sk-live-0123456789"]), "test.redaction.badargs")
    logger.warning("one placeholder %s %s", "sk-live-0123456789")
    output = stream.getvalue()
    assert "one placeholder" in output and "sk-live-0123456789" not in output


async def test_sora_at_debug_logs_no_interaction_token(
    bot_harness: BotHarness,
    discord_double: DiscordDouble,
    fake_upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="discord")
    caplog.set_level(logging.DEBUG, logger="discord.http")
    redactor = RedactingFilter(bot_harness.build_settings().secrets())
    caplog.handler.addFilter(redactor)
    formatted = io.StringIO()
    handler = redacting_handler(redactor, formatted)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        await start_bot(bot_harness)
        alice = discord_double.add_member(name="alice")
        handle = await discord_double.slash("sora", user=alice, prompt="a red fox in the snow")
        await wait_result(discord_double)
        await handle.wait_original(lambda m: "Your video is ready" in json.dumps(m.embeds))
        await bot_harness.stop()
    finally:
        root.removeHandler(handler)
        caplog.handler.removeFilter(redactor)

    (interaction,) = discord_double.interactions
    token = interaction.token
    assert token.startswith(TOKEN_PREFIX)
    random_part = token.removeprefix(TOKEN_PREFIX)
    captured = [
        text
        for record in caplog.records
        for text in (record.getMessage(), record.exc_text or "", record.stack_info or "")
    ]
    for output in (formatted.getvalue(), caplog.text, "\n".join(captured)):
        assert random_part[:8] not in output and random_part[-8:] not in output
        assert discord_double.token not in output and TEST_API_KEY not in output
        # discord.py did log the URLs and the gateway event carrying the token, with the token cut out.
        application_id = discord_double.application_id
        assert f"/webhooks/{application_id}/[redacted]/messages/@original" in output
        assert f"/interactions/{interaction.id}/[redacted]/callback" in output
        assert "'token': '[redacted]'" in output
