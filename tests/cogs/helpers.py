"""Running the quota and admin cogs through the Discord double and reading their ephemeral answers."""

from __future__ import annotations

from typing import Any

from storage import Database, NewGeneration, Reservation
from tests.discord_double import DiscordDouble, Member, Message, MessageFlag
from tests.fixtures.discord import BotHarness

EXTENSIONS = ("cogs.quota", "cogs.admin")


async def start_bot(bot_harness: BotHarness, **overrides: Any) -> None:
    await bot_harness.start(extensions=EXTENSIONS, settings_overrides=overrides or None)


async def run(double: DiscordDouble, command: str, *, user: Member, locale: str = "en-US", **options: Any) -> Message:
    """Run `/command` as `user` (options by name, `channel` included), wait for the answer, and check it is an
    immediate ephemeral message."""
    handle = await double.slash(command, user=user, locale=locale, options=options)
    assert await handle.wait_response() == 4, handle.callbacks
    message = await handle.wait_original()
    assert message.flags & MessageFlag.EPHEMERAL, f"/{command} answered publicly: {message.content!r}"
    return message


def fields(message: Message) -> dict[str, str]:
    """The first embed's fields by name."""
    (embed,) = message.embeds
    return {field["name"]: field["value"] for field in embed.get("fields", [])}


async def reserve(db: Database, member: Member | int, guild_id: int, **overrides: Any) -> Reservation:
    user_id = member if isinstance(member, int) else member.id
    values: dict[str, Any] = {
        "guild_id": guild_id,
        "channel_id": 1,
        "user_id": user_id,
        "model": "sora-2",
        "prompt": "a lighthouse in a storm",
        "cost": 1,
    }
    values.update(overrides)
    result = await db.create_generation(NewGeneration(**values))
    assert isinstance(result, Reservation), result
    return result
