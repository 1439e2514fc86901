"""`/sora-admin` through the Discord double: who may use it, and every subcommand's answer and effect."""

from __future__ import annotations

import pytest

from bot.clock import FakeClock
from storage import DAY, Database, DenyReason, PeriodMode, QuotaDenied, next_daily_reset
from tests.cogs.helpers import fields, reserve, run, start_bot
from tests.discord_double import DiscordDouble, Member, Permission
from tests.fixtures.discord import BotHarness

NOT_ADMIN = "Only members with the **Manage Server** permission can use /sora-admin."


@pytest.fixture
async def started(bot_harness: BotHarness) -> BotHarness:
    await start_bot(bot_harness)
    return bot_harness


@pytest.fixture
def mod(discord_double: DiscordDouble) -> Member:
    return discord_double.add_member(name="mod", permissions=Permission.MANAGE_GUILD)


@pytest.fixture
def alice(discord_double: DiscordDouble) -> Member:
    return discord_double.add_member(name="alice")


async def admin(double: DiscordDouble, user: Member, command: str, **options: object) -> str:
    """The text of the answer to `/sora-admin <command>`."""
    return (await run(double, f"sora-admin {command}", user=user, **options)).content


# --- who may use it ------------------------------------------------------------------------------------------


async def test_registered_for_manage_server_and_guild_only(started: BotHarness, discord_double: DiscordDouble) -> None:
    (command,) = [c for c in discord_double.commands(discord_double.guild) if c.name == "sora-admin"]
    payload = command.to_payload()
    assert int(payload["default_member_permissions"]) == Permission.MANAGE_GUILD
    assert payload["contexts"] == [0]
    groups = {o["name"]: [s["name"] for s in o.get("options", []) if s["type"] == 1] for o in command.options}
    assert groups["quota"] == ["default", "role", "member", "budget", "period", "concurrency", "reset", "policy"]
    assert groups["channels"] == ["allow", "deny", "list"]
    assert {"usage", "ban", "unban", "bans", "settings"} <= set(groups)


async def test_a_member_without_manage_server_is_refused(
    started: BotHarness, discord_double: DiscordDouble, alice: Member, db: Database
) -> None:
    """Discord hides the command from them, but a server can change that: the bot checks again."""
    guild = discord_double.guild.id
    assert await admin(discord_double, alice, "settings") == NOT_ADMIN
    assert await admin(discord_double, alice, "quota default", credits=500) == NOT_ADMIN
    assert await admin(discord_double, alice, "ban", member=alice) == NOT_ADMIN
    assert (await db.get_guild_settings(guild)).default_allowance == 10
    assert await db.bans(guild) == []


async def test_the_refusal_speaks_the_members_language(
    started: BotHarness, discord_double: DiscordDouble, alice: Member
) -> None:
    handle = await discord_double.slash("sora-admin settings", user=alice, locale="zh-CN")
    assert await handle.wait_response() == 4
    assert (await handle.wait_original()).content == "只有拥有 **管理服务器** 权限的成员才能使用 /sora-admin。"


async def test_an_admin_is_accepted(started: BotHarness, discord_double: DiscordDouble, mod: Member) -> None:
    message = await run(discord_double, "sora-admin settings", user=mod)
    assert message.embeds[0]["title"] == "sora-bot settings"


async def test_administrator_counts_as_manage_server(started: BotHarness, discord_double: DiscordDouble) -> None:
    owner = discord_double.add_member(name="owner", permissions=Permission.ADMINISTRATOR)
    assert (await run(discord_double, "sora-admin settings", user=owner)).embeds


async def test_bot_owners_from_the_configuration_always_pass(
    bot_harness: BotHarness, discord_double: DiscordDouble, alice: Member
) -> None:
    await start_bot(bot_harness, bot_owner_ids=[alice.id])
    assert (await run(discord_double, "sora-admin settings", user=alice)).embeds


# --- quota ---------------------------------------------------------------------------------------------------


async def test_quota_default(started: BotHarness, discord_double: DiscordDouble, mod: Member, db: Database) -> None:
    guild = discord_double.guild.id
    assert await admin(discord_double, mod, "quota default") == (
        "Members get 10 credits per day (resets at 00:00 UTC)."
    )
    assert await admin(discord_double, mod, "quota default", credits=1) == (
        "Members now get 1 credit per day (resets at 00:00 UTC)."
    )
    assert (await db.get_guild_settings(guild)).default_allowance == 1
    assert await admin(discord_double, mod, "quota default", unlimited=True) == (
        "Members now get unlimited per day (resets at 00:00 UTC)."
    )
    assert (await db.get_guild_settings(guild)).default_allowance is None
    assert await admin(discord_double, mod, "quota default", credits=3, unlimited=True) == (
        "Give either a number of credits or `unlimited`, not both."
    )
    assert (await db.get_guild_settings(guild)).default_allowance is None


async def test_quota_role(started: BotHarness, discord_double: DiscordDouble, mod: Member, db: Database) -> None:
    guild = discord_double.guild
    vip = discord_double.add_role(guild, "VIP")
    role = f"<@&{vip.id}>"
    assert await admin(discord_double, mod, "quota role", role=vip) == f"{role} has no allowance of its own."
    assert await admin(discord_double, mod, "quota role", role=vip, credits=30) == (
        f"{role} now gets 30 credits per period. A member gets the most generous of their roles."
    )
    assert await db.role_allowances(guild.id) == {vip.id: 30}
    assert await admin(discord_double, mod, "quota role", role=vip) == f"{role} gets 30 credits per period."
    assert await admin(discord_double, mod, "quota role", role=vip, clear=True) == (
        f"{role} no longer has an allowance of its own."
    )
    assert await db.role_allowances(guild.id) == {}
    assert await admin(discord_double, mod, "quota role", role=vip, clear=True) == (
        f"{role} has no allowance of its own."
    )


async def test_quota_member(
    started: BotHarness, discord_double: DiscordDouble, mod: Member, alice: Member, db: Database
) -> None:
    guild = discord_double.guild.id
    who = f"<@{alice.id}>"
    assert await admin(discord_double, mod, "quota member", member=alice, unlimited=True) == (
        f"{who} now gets unlimited per period, whatever their roles."
    )
    assert await db.member_overrides(guild) == {alice.id: None}
    assert await admin(discord_double, mod, "quota member", member=alice) == (
        f"{who} gets unlimited per period (set for them)."
    )
    assert await admin(discord_double, mod, "quota member", member=alice, credits=2) == (
        f"{who} now gets 2 credits per period, whatever their roles."
    )
    assert await admin(discord_double, mod, "quota member", member=alice, clear=True) == (
        f"{who} no longer has an allowance of their own; their roles or the default apply."
    )
    assert await db.member_overrides(guild) == {}
    assert await admin(discord_double, mod, "quota member", member=alice) == f"{who} has no allowance of their own."


async def test_quota_budget(
    started: BotHarness, discord_double: DiscordDouble, mod: Member, alice: Member, db: Database
) -> None:
    guild = discord_double.guild.id
    assert await admin(discord_double, mod, "quota budget") == (
        "The server has no budget: only member allowances apply."
    )
    assert await admin(discord_double, mod, "quota budget", credits=100) == (
        "The server budget is now 100 credits per day (resets at 00:00 UTC)."
    )
    await reserve(db, alice, guild, cost=4)
    assert await admin(discord_double, mod, "quota budget") == (
        "The server budget is 100 credits per day (resets at 00:00 UTC); 4 credits used so far."
    )
    assert await admin(discord_double, mod, "quota budget", unlimited=True) == (
        "The server has no budget now: only member allowances apply."
    )
    assert (await db.get_guild_settings(guild)).budget is None


async def test_quota_period(
    started: BotHarness, discord_double: DiscordDouble, mod: Member, db: Database, clock: FakeClock
) -> None:
    guild = discord_double.guild.id
    reset = int(next_daily_reset(6, clock.time()))
    assert await admin(discord_double, mod, "quota period", mode="daily", reset_hour=6) == (
        f"Credits now reset every day at 06:00 UTC (next <t:{reset}:f> (<t:{reset}:R>))."
    )
    settings = await db.get_guild_settings(guild)
    assert (settings.period_mode, settings.reset_hour) == (PeriodMode.DAILY, 6)
    assert await admin(discord_double, mod, "quota period", mode="rolling") == (
        "Credits now count over a rolling 24-hour window."
    )
    assert (await db.get_guild_settings(guild)).period_mode == PeriodMode.ROLLING


async def test_quota_concurrency(started: BotHarness, discord_double: DiscordDouble, mod: Member, db: Database) -> None:
    guild = discord_double.guild.id
    assert await admin(discord_double, mod, "quota concurrency") == (
        "Each member can run 1 video(s) at a time; the server has no overall limit."
    )
    assert await admin(discord_double, mod, "quota concurrency", per_member=2, per_server=5) == (
        "Each member can run 2 video(s) at a time; the server at most 5 at a time."
    )
    assert await admin(discord_double, mod, "quota concurrency", per_member=3) == (
        "Each member can run 3 video(s) at a time; the server at most 5 at a time."
    )
    assert await admin(discord_double, mod, "quota concurrency", no_server_limit=True) == (
        "Each member can run 3 video(s) at a time; the server has no overall limit."
    )
    settings = await db.get_guild_settings(guild)
    assert (settings.max_concurrent_member, settings.max_concurrent_guild) == (3, None)
    assert await admin(discord_double, mod, "quota concurrency", per_server=2, no_server_limit=True) == (
        "Give either a server limit or `no_server_limit`, not both."
    )


async def test_quota_reset(
    started: BotHarness, discord_double: DiscordDouble, mod: Member, alice: Member, db: Database
) -> None:
    guild = discord_double.guild.id
    await db.set_default_allowance(guild, 1)
    done = await reserve(db, alice, guild)
    await db.mark_succeeded(done.generation_id, result_url="u")
    assert (await db.quota_status(guild, alice.id)).left == 0
    assert await admin(discord_double, mod, "quota reset", member=alice) == (
        f"<@{alice.id}>'s usage for this period was reset."
    )
    assert (await db.quota_status(guild, alice.id)).left == 1
    assert await admin(discord_double, mod, "quota reset") == (
        "Everyone's usage and the server budget for this period were reset."
    )


async def test_quota_policy(started: BotHarness, discord_double: DiscordDouble, mod: Member, db: Database) -> None:
    guild = discord_double.guild.id
    assert await admin(discord_double, mod, "quota policy") == (
        "Admins exempt from member limits: **no**. Moderation rejections are **refunded**."
    )
    assert await admin(discord_double, mod, "quota policy", admins_exempt=True, moderation="charge") == (
        "Admins exempt from member limits: **yes**. Moderation rejections are **charged**."
    )
    settings = await db.get_guild_settings(guild)
    assert settings.admins_exempt and settings.charge_moderation


# --- usage ---------------------------------------------------------------------------------------------------


async def test_usage(
    started: BotHarness, discord_double: DiscordDouble, mod: Member, alice: Member, db: Database, clock: FakeClock
) -> None:
    guild = discord_double.guild.id
    await db.set_concurrency(guild, per_member=5, per_guild=None)
    await db.set_default_allowance(guild, None)
    old = await reserve(db, alice, guild, cost=7)
    await db.mark_succeeded(old.generation_id, result_url="u")
    clock.advance(DAY)  # yesterday's video is outside the current period
    ok = await reserve(db, alice, guild, cost=5, model="sora-2-pro")
    await db.mark_succeeded(ok.generation_id, result_url="u")
    bad = await reserve(db, mod, guild, cost=1)
    await db.mark_failed(bad.generation_id, "moderation", "policy")
    await reserve(db, mod, guild, cost=1)

    message = await run(discord_double, "sora-admin usage", user=mod)
    (embed,) = message.embeds
    assert embed["title"] == "Usage — this period"
    shown = fields(message)
    assert shown["Totals"] == (
        "3 videos: 1 made, 1 failed, 0 cancelled, 1 in progress\n5 credits charged · 1 held · 1 refunded"
    )
    assert shown["Top members"] == f"<@{alice.id}>: 5 credits (1 videos)\n<@{mod.id}>: 1 credit (2 videos)"
    assert shown["Per model"] == "sora-2-pro: 5 credits (1 videos)\nsora-2: 1 credit (2 videos)"
    assert shown["Failures and refunds"] == "moderation: 1\n1 refunds, 1 credits back"

    previous = fields(await run(discord_double, "sora-admin usage", user=mod, period="previous"))
    assert previous["Totals"].startswith("1 videos: 1 made")
    everything = fields(await run(discord_double, "sora-admin usage", user=mod, period="all"))
    assert everything["Totals"].startswith("4 videos")
    assert "12 credits charged" in everything["Totals"]
    empty = await run(discord_double, "sora-admin usage", user=mod, period="7d")
    assert empty.embeds[0]["title"] == "Usage — the last 7 days"


async def test_usage_of_a_quiet_server(started: BotHarness, discord_double: DiscordDouble, mod: Member) -> None:
    shown = fields(await run(discord_double, "sora-admin usage", user=mod, period="30d"))
    assert shown["Top members"] == "Nothing yet."
    assert shown["Per model"] == "Nothing yet."
    assert shown["Failures and refunds"] == "0 refunds, 0 credits back"


# --- channels ------------------------------------------------------------------------------------------------


async def test_channels(
    started: BotHarness, discord_double: DiscordDouble, mod: Member, alice: Member, db: Database
) -> None:
    guild = discord_double.guild.id
    general = discord_double.channel
    videos = discord_double.add_channel(name="videos")
    assert await admin(discord_double, mod, "channels list") == "/sora works in every channel (no allow-list)."
    assert await admin(discord_double, mod, "channels allow", channel=videos) == (
        f"/sora now works in <#{videos.id}>. Allowed: <#{videos.id}>."
    )
    assert await admin(discord_double, mod, "channels allow", channel=videos) == (
        f"<#{videos.id}> is already allowed. Allowed: <#{videos.id}>."
    )
    assert await admin(discord_double, mod, "channels allow", channel=general) == (
        f"/sora now works in <#{general.id}>. Allowed: <#{videos.id}>, <#{general.id}>."
    )
    assert await admin(discord_double, mod, "channels list") == (
        f"/sora works only in: <#{videos.id}>, <#{general.id}>"
    )
    assert await admin(discord_double, mod, "channels deny", channel=general) == (
        f"<#{general.id}> is off the list. Allowed: <#{videos.id}>."
    )
    # The effect: /sora in #general is refused, naming the allowed channel.
    assert await db.check_access(guild, alice.id, general.id) == QuotaDenied(
        DenyReason.CHANNEL_NOT_ALLOWED, allowed_channel_ids=(videos.id,)
    )
    assert await admin(discord_double, mod, "channels deny", channel=general) == f"<#{general.id}> wasn't on the list."
    assert await admin(discord_double, mod, "channels deny", channel=videos) == (
        f"<#{videos.id}> is off the list, which is now empty: /sora works in every channel."
    )
    assert await db.check_access(guild, alice.id, general.id) is None


# --- bans ----------------------------------------------------------------------------------------------------


async def test_ban_unban_bans(
    started: BotHarness, discord_double: DiscordDouble, mod: Member, alice: Member, db: Database
) -> None:
    guild = discord_double.guild.id
    who = f"<@{alice.id}>"
    assert await admin(discord_double, mod, "bans") == "Nobody is banned from /sora here."
    assert await admin(discord_double, mod, "ban", member=alice, reason="spam") == (
        f"{who} can no longer make videos here: spam."
    )
    denied = await db.check_access(guild, alice.id, discord_double.channel.id)
    assert denied is not None and (denied.reason, denied.ban_reason) == (DenyReason.BANNED, "spam")
    assert (
        await admin(discord_double, mod, "ban", member=alice) == f"{who} was already banned; the reason is now updated."
    )

    listed = await run(discord_double, "sora-admin bans", user=mod)
    (embed,) = listed.embeds
    assert embed["title"] == "Banned from /sora"
    (ban,) = await db.bans(guild)
    assert embed["description"] == f"{who} — no reason given (<t:{int(ban.created_at)}:d>)"

    assert await admin(discord_double, mod, "unban", member=alice) == f"{who} can make videos again."
    assert await admin(discord_double, mod, "unban", member=alice) == f"{who} isn't banned."
    assert await db.bans(guild) == []


# --- settings ------------------------------------------------------------------------------------------------


async def test_settings_shows_everything_in_one_embed(
    started: BotHarness, discord_double: DiscordDouble, mod: Member, alice: Member, db: Database
) -> None:
    guild = discord_double.guild
    vip = discord_double.add_role(guild, "VIP")
    await db.set_default_allowance(guild.id, 5)
    await db.set_budget(guild.id, 200)
    await db.set_period(guild.id, PeriodMode.DAILY, reset_hour=4)
    await db.set_role_allowance(guild.id, vip.id, None)
    await db.set_member_override(guild.id, alice.id, 1)
    await db.set_concurrency(guild.id, per_member=2, per_guild=8)
    await db.set_admins_exempt(guild.id, True)
    await db.allow_channel(guild.id, discord_double.channel.id)
    await db.ban_member(guild.id, 999, reason="x")

    message = await run(discord_double, "sora-admin settings", user=mod)
    assert fields(message) == {
        "Default allowance": "5 credits per period",
        "Server budget": "200 credits per period",
        "Period": "day (resets at 04:00 UTC)",
        "Role allowances": f"<@&{vip.id}>: unlimited",
        "Member allowances": f"<@{alice.id}>: 1 credit",
        "Concurrent videos": "2 per member · 8 per server",
        "Policy": "Admins exempt from member limits: **yes**. Moderation rejections are **refunded**.",
        "Allowed channels": f"<#{discord_double.channel.id}>",
        "Bans": "1 banned (see /sora-admin bans)",
    }


async def test_settings_of_a_fresh_server(started: BotHarness, discord_double: DiscordDouble, mod: Member) -> None:
    shown = fields(await run(discord_double, "sora-admin settings", user=mod))
    assert shown["Default allowance"] == "10 credits per period"
    assert shown["Server budget"] == "none"
    assert shown["Role allowances"] == "none"
    assert shown["Allowed channels"] == "every channel"
    assert shown["Bans"] == "none"
