"""`/sora-quota`: a member's credits used and left, when they reset, jobs running, and where the limits come from."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.i18n import cmd, interaction_locale
from cogs._quota_text import credits, text, when
from storage import LimitSource, PeriodMode, QuotaStatus

log = logging.getLogger(__name__)

EMBED_COLOUR = discord.Colour.blurple()


def member_role_ids(member: discord.abc.User) -> tuple[int, ...]:
    roles = getattr(member, "roles", None) or ()
    return tuple(role.id for role in roles)


def has_manage_guild(interaction: discord.Interaction[SoraBot]) -> bool:
    permissions = interaction.permissions
    return permissions.manage_guild or permissions.administrator


def limit_source(status: QuotaStatus, locale: str) -> str:
    match status.limit.source:
        case LimitSource.ROLE:
            return text("source.role", locale, role=f"<@&{status.limit.role_id}>")
        case LimitSource.OVERRIDE:
            return text("source.override", locale)
        case LimitSource.EXEMPT:
            return text("source.exempt", locale)
    return text("source.default", locale)


def quota_embed(status: QuotaStatus, locale: str) -> discord.Embed:
    """The `/sora-quota` answer: pure, so it can be checked without Discord."""
    embed = discord.Embed(title=text("quota.title", locale), colour=EMBED_COLOUR)
    if status.ban is not None:
        reason = f": {status.ban.reason}" if status.ban.reason else ""
        embed.description = text("quota.banned", locale, reason=reason)
    if status.limit.credits is None:
        used = text("quota.credits_unlimited", locale, used=status.used)
    else:
        used = text("quota.credits", locale, used=status.used, limit=status.limit.credits, left=status.left)
    if status.in_flight:
        used += "\n" + text("quota.in_flight", locale, n=status.in_flight)
    embed.add_field(name=text("quota.field.credits", locale), value=used, inline=False)
    embed.add_field(name=text("quota.field.limit", locale), value=limit_source(status, locale), inline=False)

    if status.period_mode == PeriodMode.DAILY:
        assert status.resets_at is not None
        resets = text("quota.resets.daily", locale, hour=status.reset_hour, when=when(status.resets_at))
    elif status.resets_at is not None:
        resets = text("quota.resets.rolling", locale, when=when(status.resets_at))
    else:
        resets = text("quota.resets.rolling_idle", locale)
    embed.add_field(name=text("quota.field.resets", locale), value=resets, inline=False)

    if status.max_running is None:
        jobs = text("quota.jobs_unlimited", locale, running=status.running)
    else:
        jobs = text("quota.jobs", locale, running=status.running, max=status.max_running)
    if status.max_guild_running is not None:
        jobs += "\n" + text("quota.jobs_guild", locale, running=status.guild_running, max=status.max_guild_running)
    embed.add_field(name=text("quota.field.jobs", locale), value=jobs, inline=False)

    if status.budget is not None:
        budget = text(
            "quota.budget",
            locale,
            used=credits(status.budget_used, locale),
            limit=credits(status.budget, locale),
            left=status.budget_left,
        )
        embed.add_field(name=text("quota.field.budget", locale), value=budget, inline=False)
    return embed


class Quota(commands.Cog):
    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot

    @app_commands.command(
        name="sora-quota", description=cmd("Show your video credits and limits", "cmd.sora_quota.description")
    )
    @app_commands.guild_only()
    async def sora_quota(self, interaction: discord.Interaction[SoraBot]) -> None:
        assert interaction.guild_id is not None and self.bot.db is not None
        status = await self.bot.db.quota_status(
            interaction.guild_id,
            interaction.user.id,
            member_role_ids(interaction.user),
            is_admin=has_manage_guild(interaction),
        )
        await interaction.response.send_message(
            embed=quota_embed(status, interaction_locale(interaction)), ephemeral=True
        )


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(Quota(bot))
