"""Where discord.py talks to: Discord itself, a REST proxy, or the test double."""

from __future__ import annotations

import logging

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

log = logging.getLogger(__name__)

DISCORD_API_BASE = "https://discord.com/api/v10"
DISCORD_GATEWAY_URL = "wss://gateway.discord.gg/"


def point_discord_at(api_base: str, gateway_url: str) -> None:
    """Aim discord.py's REST base and gateway at the given URLs (process-wide class attributes)."""
    api_base = api_base.rstrip("/")
    if not api_base.endswith(("/api/v10", "/api/v9")):
        api_base = f"{api_base}/api/v10"
    Route.BASE = api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    if api_base != DISCORD_API_BASE or gateway_url != DISCORD_GATEWAY_URL:
        log.info("Discord REST at %s, gateway at %s", api_base, gateway_url)


def default_intents(message_content: bool = True) -> discord.Intents:
    intents = discord.Intents.default()
    intents.message_content = message_content
    intents.members = False
    intents.presences = False
    return intents


__all__ = ["default_intents", "point_discord_at"]
