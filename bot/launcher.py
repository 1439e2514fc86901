"""The entry point of `sora-bot run`: owns logging and resources, and starts the bot."""

from __future__ import annotations

import asyncio
import logging

import discord

from bot.client import SoraBot
from bot.config import Settings
from bot.log import setup_logging
from bot.runtime import point_discord_at
from bot.upstream import make_session

log = logging.getLogger(__name__)


async def start(settings: Settings) -> None:
    """Open the shared resources, run the bot until it stops, close them in reverse order."""
    point_discord_at(settings.discord_api_base, settings.discord_gateway_url)
    assert settings.discord_token is not None
    async with make_session(settings) as session:
        bot = SoraBot(settings=settings, session=session)
        async with bot:
            await bot.start(settings.discord_token.get_secret_value())


def run_bot(settings: Settings) -> int:
    settings.require_discord()
    settings.require_upstream()
    setup_logging(settings.log_level, settings.secrets())
    try:
        asyncio.run(start(settings))
    except discord.LoginFailure:
        log.error("Discord refused DISCORD_TOKEN: check the token in the Developer Portal (Bot → Reset Token)")
        return 1
    except discord.PrivilegedIntentsRequired:
        log.error(
            "the Message Content intent is not enabled: Developer Portal → Bot → Privileged Gateway Intents → "
            "Message Content Intent"
        )
        return 1
    except KeyboardInterrupt:
        log.info("stopped")
    return 0
