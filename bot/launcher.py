"""The entry point of `sora-bot run`: owns logging and resources, and starts the bot."""

from __future__ import annotations

import asyncio
import logging

import discord

from bot.client import SoraBot
from bot.clock import Clock
from bot.config import ConfigError, Settings
from bot.log import setup_logging
from bot.runtime import point_discord_at
from bot.upstream import make_session
from storage import Database, StorageError

log = logging.getLogger(__name__)


async def start(settings: Settings) -> None:
    """Open the shared resources, run the bot until it stops, close them in reverse order."""
    point_discord_at(settings.discord_api_base, settings.discord_gateway_url)
    assert settings.discord_token is not None
    clock = Clock()
    async with (
        await Database.open(settings.sora_db_path, clock=clock) as db,
        make_session(settings) as session,
    ):
        token = settings.discord_token.get_secret_value()

        async def run(message_content: bool) -> None:
            bot = SoraBot(settings=settings, session=session, db=db, clock=clock, message_content=message_content)
            async with bot:
                await bot.start(token)

        try:
            await run(message_content=True)
        except discord.PrivilegedIntentsRequired:
            log.error(
                "the Message Content intent is off for this bot, so reply-to-remix only works when the reply pings "
                "the bot. To turn it on: Developer Portal → your app → Bot → Privileged Gateway Intents → Message "
                "Content Intent. Continuing without it."
            )
            await run(message_content=False)


def run_bot(settings: Settings) -> int:
    settings.require_discord()
    settings.require_upstream()
    setup_logging(settings.log_level, settings.secrets())
    try:
        asyncio.run(start(settings))
    except discord.LoginFailure:
        log.error("Discord refused DISCORD_TOKEN: check the token in the Developer Portal (Bot → Reset Token)")
        return 1
    except StorageError as exc:
        raise ConfigError(str(exc)) from None
    except KeyboardInterrupt:
        log.info("stopped")
    return 0
