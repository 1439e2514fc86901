"""`/sora-quota` through the Discord double: what a member sees about their credits and limits."""

from __future__ import annotations

import pytest

from bot.clock import FakeClock
from storage import DAY, Database, PeriodMode, period_start
from tests.cogs.helpers import fields, reserve, run, start_bot
from tests.discord_double import DiscordDouble, Permission
from tests.fixtures.discord import BotHarness


@pytest.fixture
async def started(bot_harness: BotHarness) -> BotHarness:
    await start_bot(bot_harness)
    return bot_harness


async def test_a_new_member_sees_the_server_default(
    started: BotHarness, discord_double: DiscordDouble, clock: FakeClock
) -> None:
    alice = discord_double.add_member(name="alice")
    message = await run(discord_double, "sora-quota", user=alice)
    (embed,) = message.embeds
    assert embed["title"] == "Your video credits"
    shown = fields(message)
    assert shown["Credits"] == "**0** of **10** used · **10** left"
    assert shown["Your limit comes from"] == "the server default"
    midnight = int(period_start(PeriodMode.DAILY, 0, clock.time()) + DAY)
    assert shown["Resets"] == f"every day at 00:00 UTC — next <t:{midnight}:f> (<t:{midnight}:R>)"
    assert shown["Jobs running"] == "0 of 1 (you)"
    assert "Server budget" not in shown


async def test_usage_jobs_and_budget(started: BotHarness, discord_double: DiscordDouble, db: Database) -> None:
    guild = discord_double.guild.id
    alice = discord_double.add_member(name="alice")
    await db.set_budget(guild, 50)
    await db.set_concurrency(guild, per_member=2, per_guild=4)
    done = await reserve(db, alice, guild, cost=2)
    await db.mark_succeeded(done.generation_id, result_url="https://cdn.example/v.mp4")
    await reserve(db, alice, guild, cost=3)
    message = await run(discord_double, "sora-quota", user=alice)
    shown = fields(message)
    assert shown["Credits"] == "**5** of **10** used · **5** left\n3 of them held for videos in progress"
    assert shown["Jobs running"] == "1 of 2 (you)\n1 of 4 (server)"
    assert shown["Server budget"] == "5 credits of 50 credits used · 45 left"


async def test_where_the_limit_comes_from(started: BotHarness, discord_double: DiscordDouble, db: Database) -> None:
    guild = discord_double.guild
    vip = discord_double.add_role(guild, "VIP")
    fan = discord_double.add_role(guild, "Fan")
    bob = discord_double.add_member(name="bob", roles=[vip, fan])
    await db.set_role_allowance(guild.id, vip.id, 25)
    await db.set_role_allowance(guild.id, fan.id, 3)
    shown = fields(await run(discord_double, "sora-quota", user=bob))
    assert shown["Your limit comes from"] == f"your role <@&{vip.id}>"
    assert shown["Credits"] == "**0** of **25** used · **25** left"

    await db.set_member_override(guild.id, bob.id, 2)
    shown = fields(await run(discord_double, "sora-quota", user=bob))
    assert shown["Your limit comes from"] == "set for you by an admin"
    assert shown["Credits"] == "**0** of **2** used · **2** left"

    await db.set_member_override(guild.id, bob.id, None)
    shown = fields(await run(discord_double, "sora-quota", user=bob))
    assert shown["Credits"] == "**0** used · no limit"


async def test_exempt_admins(started: BotHarness, discord_double: DiscordDouble, db: Database) -> None:
    mod = discord_double.add_member(name="mod", permissions=Permission.MANAGE_GUILD)
    assert fields(await run(discord_double, "sora-quota", user=mod))["Your limit comes from"] == "the server default"
    await db.set_admins_exempt(discord_double.guild.id, True)
    shown = fields(await run(discord_double, "sora-quota", user=mod))
    assert shown["Your limit comes from"] == "none — admins are exempt here"
    assert shown["Jobs running"] == "0 (no personal limit)"


async def test_rolling_window(
    started: BotHarness, discord_double: DiscordDouble, db: Database, clock: FakeClock
) -> None:
    guild = discord_double.guild.id
    alice = discord_double.add_member(name="alice")
    await db.set_period(guild, PeriodMode.ROLLING)
    assert fields(await run(discord_double, "sora-quota", user=alice))["Resets"] == (
        "rolling 24 h window — nothing counted right now"
    )
    reservation = await reserve(db, alice, guild)
    generation = await db.get_generation(reservation.generation_id)
    assert generation is not None
    frees = int(generation.created_at + DAY)
    assert fields(await run(discord_double, "sora-quota", user=alice))["Resets"] == (
        f"rolling 24 h window — credits free up <t:{frees}:f> (<t:{frees}:R>)"
    )


async def test_a_banned_member_is_told(started: BotHarness, discord_double: DiscordDouble, db: Database) -> None:
    alice = discord_double.add_member(name="alice")
    await db.ban_member(discord_double.guild.id, alice.id, reason="spam")
    message = await run(discord_double, "sora-quota", user=alice)
    assert message.embeds[0]["description"] == "You're banned from making videos in this server: spam."


async def test_answers_in_the_members_language(started: BotHarness, discord_double: DiscordDouble) -> None:
    alice = discord_double.add_member(name="alice")
    handle = await discord_double.slash("sora-quota", user=alice, locale="zh-CN")
    assert await handle.wait_response() == 4
    message = await handle.wait_original()
    assert message.embeds[0]["title"] == "你的视频额度"
    assert fields(message)["额度"] == "已用 **0** / **10** · 剩余 **10**"


async def test_the_command_is_registered_guild_only(started: BotHarness, discord_double: DiscordDouble) -> None:
    (command,) = [c for c in discord_double.commands(discord_double.guild) if c.name == "sora-quota"]
    payload = command.to_payload()
    assert payload["contexts"] == [0]
    assert payload["default_member_permissions"] is None  # every member may check their own credits
