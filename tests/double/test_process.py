"""`sora-bot run` as a separate process, pointed at the double only through DISCORD_API_BASE/DISCORD_GATEWAY_URL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tests.discord_double import DiscordDouble
from tests.fixtures.discord import BotProcess


async def test_sora_bot_run_logs_in_and_syncs_against_the_double(
    bot_process: Callable[..., Awaitable[BotProcess]], discord_double: DiscordDouble
) -> None:
    process = await bot_process()

    session = await discord_double.wait_until_ready(timeout=30)
    sync = await discord_double.wait_for_request(
        "PUT", "/applications/{application_id}/guilds/{guild_id}/commands", timeout=30
    )
    assert sync.status == 200 and sync.params["guild_id"] == str(discord_double.guild.id)
    assert [r.key for r in discord_double.requests[:2]] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert session.intents & (1 << 15)
    await discord_double.wait_for(lambda: "logged in as" in process.output, timeout=10)

    assert await process.stop() == 0, process.output
    assert discord_double.token not in process.output  # the launcher redacts secrets from its logs
