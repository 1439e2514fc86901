"""The entry point of `sora-bot run`: owns logging and resources, and starts the bot."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import discord

from bot.client import SoraBot
from bot.clock import Clock
from bot.config import ConfigError, Settings
from bot.log import connection_problem, setup_logging
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
        await Database.open(settings.database_url, clock=clock) as db,
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
    except discord.PrivilegedIntentsRequired:
        log.error("Discord refused the bot's intents: check Privileged Gateway Intents in the Developer Portal")
        return 1
    except discord.GatewayNotFound:
        log.error("Discord gave no gateway to connect to: check DISCORD_API_BASE, or try again later")
        return 1
    except discord.ConnectionClosed as exc:
        log.error("Discord closed the gateway (code %s %s): check DISCORD_GATEWAY_URL", exc.code, exc.reason or "")
        return 1
    except discord.HTTPException as exc:
        # Mostly the command sync: a guild in DISCORD_GUILD_IDS the bot was never invited to answers 403.
        log.error(
            "Discord refused a start-up call (HTTP %s: %s): check DISCORD_GUILD_IDS and the bot's invite",
            exc.status,
            exc.text or "no reason given",
        )
        return 1
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.error(
            "could not reach Discord at %s (%s): check DISCORD_API_BASE, DISCORD_GATEWAY_URL and the network",
            settings.discord_api_base,
            connection_problem(exc),
        )
        return 1
    except StorageError as exc:
        raise ConfigError(str(exc)) from None
    except KeyboardInterrupt:
        log.info("stopped")
    return 0
