"""`/sora-admin`: quota rules, usage, channel allow-list, bans and an overview, for members with Manage Server.

Discord hides the group from members without Manage Server (`default_permissions`), but a server can change who
sees a command, so every invocation is checked again here; bot owners from the configuration always pass.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import SoraBot
from bot.i18n import cmd, interaction_locale
from cogs._quota_text import credits as credit_text
from cogs._quota_text import listing, text, timestamp, when
from cogs.quota import has_manage_guild
from storage import DAY, Database, GuildSettings, PeriodMode, UsageReport, next_daily_reset, period_start

log = logging.getLogger(__name__)

MAX_CREDITS = 1_000_000
EMBED_COLOUR = discord.Colour.dark_gold()
UsagePeriod = Literal["current", "previous", "7d", "30d", "all"]
AllowableChannel = discord.TextChannel | discord.Thread


class NotAnAdmin(app_commands.CheckFailure):
    """The member lacks Manage Server; `str()` is the localized refusal."""


class InvalidOptions(app_commands.CheckFailure):
    """Options that contradict each other; `str()` says which."""


def period_phrase(settings: GuildSettings, locale: str) -> str:
    if settings.period_mode == PeriodMode.DAILY:
        return text("period.daily", locale, hour=settings.reset_hour)
    return text("period.rolling", locale)


def amount(credits: int | None, unlimited: bool, locale: str) -> tuple[bool, int | None]:
    """(whether anything was asked for, the new value: None = unlimited)."""
    if credits is not None and unlimited:
        raise InvalidOptions(text("admin.conflict", locale))
    if unlimited:
        return True, None
    return credits is not None, credits


def usage_window(period: UsagePeriod, settings: GuildSettings, now: float) -> tuple[float | None, float | None]:
    """[since, until) of a usage report; None: open-ended (until: now)."""
    start = period_start(settings.period_mode, settings.reset_hour, now)
    match period:
        case "previous":
            return start - DAY, start
        case "7d":
            return now - 7 * DAY, None
        case "30d":
            return now - 30 * DAY, None
        case "all":
            return None, None
    return start, None


def usage_embed(report: UsageReport, period: UsagePeriod, locale: str) -> discord.Embed:
    embed = discord.Embed(
        title=text("usage.title", locale, period=text(f"usage.period.{period}", locale)), colour=EMBED_COLOUR
    )
    if report.since is not None:
        embed.description = text("usage.since", locale, when=timestamp(report.since))
    embed.add_field(
        name=text("usage.field.totals", locale),
        value=text(
            "usage.totals",
            locale,
            jobs=report.jobs,
            succeeded=report.succeeded,
            failed=report.failed,
            cancelled=report.cancelled,
            unfinished=report.unfinished,
            charged=report.charged,
            reserved=report.reserved,
            refunded=report.refunded,
        ),
        inline=False,
    )
    members = [
        text("usage.line", locale, name=f"<@{m.user_id}>", credits=credit_text(m.credits, locale), jobs=m.jobs)
        for m in report.top_members
    ]
    embed.add_field(
        name=text("usage.field.top", locale),
        value=listing(members, locale) if members else text("usage.nothing", locale),
        inline=False,
    )
    models = [
        text("usage.line", locale, name=m.model, credits=credit_text(m.credits, locale), jobs=m.jobs)
        for m in report.per_model
    ]
    embed.add_field(
        name=text("usage.field.models", locale),
        value=listing(models, locale) if models else text("usage.nothing", locale),
        inline=False,
    )
    failures = [text("usage.failure", locale, kind=kind, count=count) for kind, count in report.failures]
    failures.append(text("usage.refunds", locale, refunds=report.refunds, refunded=report.refunded))
    embed.add_field(name=text("usage.field.failures", locale), value=listing(failures, locale), inline=False)
    return embed


async def settings_embed(db: Database, guild_id: int, locale: str) -> discord.Embed:
    settings = await db.get_guild_settings(guild_id)
    roles = await db.role_allowances(guild_id)
    members = await db.member_overrides(guild_id)
    channels = await db.allowed_channels(guild_id)
    bans = await db.bans(guild_id)

    def per_period(value: int | None) -> str:
        return text("settings.per_period", locale, credits=credit_text(value, locale))

    embed = discord.Embed(title=text("settings.title", locale), colour=EMBED_COLOUR)
    embed.add_field(name=text("settings.field.default", locale), value=per_period(settings.default_allowance))
    embed.add_field(
        name=text("settings.field.budget", locale),
        value=per_period(settings.budget) if settings.budget is not None else text("none", locale),
    )
    embed.add_field(name=text("settings.field.period", locale), value=period_phrase(settings, locale))
    role_lines = [
        text("settings.line", locale, who=f"<@&{role}>", credits=credit_text(value, locale))
        for role, value in roles.items()
    ]
    embed.add_field(name=text("settings.field.roles", locale), value=listing(role_lines, locale), inline=False)
    member_lines = [
        text("settings.line", locale, who=f"<@{user}>", credits=credit_text(value, locale))
        for user, value in members.items()
    ]
    embed.add_field(name=text("settings.field.members", locale), value=listing(member_lines, locale), inline=False)
    guild_limit = (
        str(settings.max_concurrent_guild) if settings.max_concurrent_guild is not None else text("unlimited", locale)
    )
    embed.add_field(
        name=text("settings.field.concurrency", locale),
        value=text("settings.concurrency", locale, member=settings.max_concurrent_member, guild=guild_limit),
    )
    embed.add_field(
        name=text("settings.field.policy", locale),
        value=policy_text(settings, locale),
    )
    embed.add_field(
        name=text("settings.field.channels", locale),
        value=listing([f"<#{c}>" for c in channels], locale) if channels else text("settings.channels_all", locale),
        inline=False,
    )
    embed.add_field(
        name=text("settings.field.bans", locale),
        value=text("settings.bans", locale, n=len(bans)) if bans else text("none", locale),
        inline=False,
    )
    return embed


def policy_text(settings: GuildSettings, locale: str) -> str:
    return text(
        "admin.policy",
        locale,
        exempt=text("yes" if settings.admins_exempt else "no", locale),
        moderation=text("moderation.charge" if settings.charge_moderation else "moderation.refund", locale),
    )


def channel_list(channels: tuple[int, ...]) -> str:
    return ", ".join(f"<#{c}>" for c in channels)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Admin(
    commands.GroupCog,
    group_name="sora-admin",
    group_description=cmd("Manage sora-bot for this server", "cmd.sora_admin.description"),
):
    quota = app_commands.Group(
        name="quota", description=cmd("Credits: allowances, budget, period, limits", "cmd.sora_admin.quota")
    )
    channels = app_commands.Group(
        name="channels", description=cmd("Where /sora may be used", "cmd.sora_admin.channels")
    )

    def __init__(self, bot: SoraBot) -> None:
        self.bot = bot
        super().__init__()

    @property
    def db(self) -> Database:
        assert self.bot.db is not None, "the bot was started without a database"
        return self.bot.db

    async def interaction_check(self, interaction: discord.Interaction[SoraBot]) -> bool:  # type: ignore[override]
        if self.bot.is_bot_owner(interaction.user.id) or (interaction.guild_id and has_manage_guild(interaction)):
            return True
        log.info("user %s refused /sora-admin in guild %s", interaction.user.id, interaction.guild_id)
        raise NotAnAdmin(text("admin.not_admin", interaction_locale(interaction)))

    async def _reply(
        self,
        interaction: discord.Interaction[SoraBot],
        content: str | None = None,
        *,
        embed: discord.Embed | None = None,
    ) -> None:
        if embed is not None:
            await interaction.response.send_message(content, embed=embed, ephemeral=True)
        else:
            await interaction.response.send_message(content, ephemeral=True)

    async def _allowance(
        self,
        interaction: discord.Interaction[SoraBot],
        kind: Literal["role", "member"],
        subject_id: int,
        mention: str,
        credits: int | None,
        unlimited: bool,
        clear: bool,
        *,
        remove: Callable[[], Awaitable[bool]],
        store: Callable[[int | None], Awaitable[None]],
        current: Callable[[], Awaitable[dict[int, int | None]]],
    ) -> None:
        """Show, set or clear the allowance of one role or one member (the two commands differ only in this)."""
        locale = interaction_locale(interaction)
        change, value = amount(credits, unlimited, locale)
        if clear and change:
            raise InvalidOptions(text("admin.conflict", locale))
        if clear:
            removed = await remove()
            self._audit(interaction, f"cleared the allowance of {kind}", subject_id)
            message = text(f"admin.{kind}.cleared" if removed else f"admin.{kind}.not_set", locale, **{kind: mention})
        elif change:
            await store(value)
            self._audit(interaction, f"set the allowance of {kind} {subject_id} to", value)
            message = text(f"admin.{kind}.set", locale, **{kind: mention}, credits=credit_text(value, locale))
        else:
            allowances = await current()
            if subject_id in allowances:
                message = text(
                    f"admin.{kind}.show", locale, **{kind: mention}, credits=credit_text(allowances[subject_id], locale)
                )
            else:
                message = text(f"admin.{kind}.not_set", locale, **{kind: mention})
        await self._reply(interaction, message)

    def _audit(self, interaction: discord.Interaction[SoraBot], action: str, *values: object) -> None:
        log.info(
            "guild %s: user %s %s %s", interaction.guild_id, interaction.user.id, action, " ".join(map(str, values))
        )

    @staticmethod
    def _guild(interaction: discord.Interaction[SoraBot]) -> int:
        assert interaction.guild_id is not None
        return interaction.guild_id

    # --- quota ---------------------------------------------------------------------------------------------

    @quota.command(
        name="default", description=cmd("Credits each member gets per period", "cmd.sora_admin.quota.default")
    )
    @app_commands.describe(
        credits="Credits per member per period (leave empty to see the current value)",
        unlimited="No limit for members without a role or personal allowance",
    )
    async def quota_default(
        self,
        interaction: discord.Interaction[SoraBot],
        credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None,
        unlimited: bool = False,
    ) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        change, value = amount(credits, unlimited, locale)
        if change:
            settings = await self.db.set_default_allowance(guild_id, value)
            self._audit(interaction, "set the default allowance to", value)
            key = "admin.default.set"
        else:
            settings = await self.db.get_guild_settings(guild_id)
            key = "admin.default.show"
        await self._reply(
            interaction,
            text(
                key,
                locale,
                credits=credit_text(settings.default_allowance, locale),
                period=period_phrase(settings, locale),
            ),
        )

    @quota.command(
        name="role", description=cmd("Credits members with a role get per period", "cmd.sora_admin.quota.role")
    )
    @app_commands.describe(
        role="The role",
        credits="Credits per period for members with this role",
        unlimited="No limit for members with this role",
        clear="Remove this role's allowance",
    )
    async def quota_role(
        self,
        interaction: discord.Interaction[SoraBot],
        role: discord.Role,
        credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None,
        unlimited: bool = False,
        clear: bool = False,
    ) -> None:
        guild_id = self._guild(interaction)
        await self._allowance(
            interaction,
            "role",
            role.id,
            role.mention,
            credits,
            unlimited,
            clear,
            remove=lambda: self.db.remove_role_allowance(guild_id, role.id),
            store=lambda value: self.db.set_role_allowance(guild_id, role.id, value),
            current=lambda: self.db.role_allowances(guild_id),
        )

    @quota.command(name="member", description=cmd("Credits one member gets per period", "cmd.sora_admin.quota.member"))
    @app_commands.describe(
        member="The member",
        credits="Credits per period for this member (beats their roles)",
        unlimited="No limit for this member",
        clear="Remove this member's own allowance",
    )
    async def quota_member(
        self,
        interaction: discord.Interaction[SoraBot],
        member: discord.User,
        credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None,
        unlimited: bool = False,
        clear: bool = False,
    ) -> None:
        guild_id = self._guild(interaction)
        await self._allowance(
            interaction,
            "member",
            member.id,
            member.mention,
            credits,
            unlimited,
            clear,
            remove=lambda: self.db.remove_member_override(guild_id, member.id),
            store=lambda value: self.db.set_member_override(guild_id, member.id, value),
            current=lambda: self.db.member_overrides(guild_id),
        )

    @quota.command(
        name="budget", description=cmd("Credits the whole server may use per period", "cmd.sora_admin.quota.budget")
    )
    @app_commands.describe(
        credits="Credits per period for the whole server (leave empty to see the current value)",
        unlimited="No server budget: only member allowances apply",
    )
    async def quota_budget(
        self,
        interaction: discord.Interaction[SoraBot],
        credits: app_commands.Range[int, 0, MAX_CREDITS] | None = None,
        unlimited: bool = False,
    ) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        change, value = amount(credits, unlimited, locale)
        if change:
            settings = await self.db.set_budget(guild_id, value)
            self._audit(interaction, "set the budget to", value)
            if settings.budget is None:
                message = text("admin.budget.off", locale)
            else:
                message = text(
                    "admin.budget.set",
                    locale,
                    credits=credit_text(settings.budget, locale),
                    period=period_phrase(settings, locale),
                )
        else:
            status = await self.db.quota_status(guild_id, interaction.user.id)
            settings = await self.db.get_guild_settings(guild_id)
            if settings.budget is None:
                message = text("admin.budget.show_off", locale)
            else:
                message = text(
                    "admin.budget.show",
                    locale,
                    credits=credit_text(settings.budget, locale),
                    period=period_phrase(settings, locale),
                    used=credit_text(status.budget_used, locale),
                )
        await self._reply(interaction, message)

    @quota.command(name="period", description=cmd("When credits reset", "cmd.sora_admin.quota.period"))
    @app_commands.describe(
        mode="daily: reset every day at one UTC hour; rolling: count the last 24 hours",
        reset_hour="For daily: the UTC hour of the reset (0-23)",
    )
    async def quota_period(
        self,
        interaction: discord.Interaction[SoraBot],
        mode: Literal["daily", "rolling"],
        reset_hour: app_commands.Range[int, 0, 23] | None = None,
    ) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        settings = await self.db.set_period(guild_id, PeriodMode(mode), reset_hour)
        self._audit(interaction, "set the period to", mode, reset_hour)
        if settings.period_mode == PeriodMode.DAILY:
            next_reset = next_daily_reset(settings.reset_hour, self.bot.clock.time())
            message = text("admin.period.daily", locale, hour=settings.reset_hour, when=when(next_reset))
        else:
            message = text("admin.period.rolling", locale)
        await self._reply(interaction, message)

    @quota.command(
        name="concurrency", description=cmd("How many videos may run at once", "cmd.sora_admin.quota.concurrency")
    )
    @app_commands.describe(
        per_member="Videos one member may have in progress at once",
        per_server="Videos the whole server may have in progress at once",
        no_server_limit="Remove the server-wide limit",
    )
    async def quota_concurrency(
        self,
        interaction: discord.Interaction[SoraBot],
        per_member: app_commands.Range[int, 1, 100] | None = None,
        per_server: app_commands.Range[int, 1, 10_000] | None = None,
        no_server_limit: bool = False,
    ) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        if per_server is not None and no_server_limit:
            raise InvalidOptions(text("admin.concurrency.conflict", locale))
        settings = await self.db.get_guild_settings(guild_id)
        if per_member is not None or per_server is not None or no_server_limit:
            guild_limit = None if no_server_limit else (per_server or settings.max_concurrent_guild)
            settings = await self.db.set_concurrency(
                guild_id, per_member=per_member or settings.max_concurrent_member, per_guild=guild_limit
            )
            self._audit(
                interaction, "set concurrency to", settings.max_concurrent_member, settings.max_concurrent_guild
            )
        if settings.max_concurrent_guild is None:
            guild = text("admin.concurrency.guild_none", locale)
        else:
            guild = text("admin.concurrency.guild", locale, n=settings.max_concurrent_guild)
        await self._reply(
            interaction, text("admin.concurrency", locale, member=settings.max_concurrent_member, guild=guild)
        )

    @quota.command(name="reset", description=cmd("Start this period's count afresh", "cmd.sora_admin.quota.reset"))
    @app_commands.describe(member="Only this member (leave empty: everyone, and the server budget)")
    async def quota_reset(self, interaction: discord.Interaction[SoraBot], member: discord.User | None = None) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        await self.db.reset_usage(guild_id, member.id if member else None, reset_by=interaction.user.id)
        self._audit(interaction, "reset usage of", member.id if member else "everyone")
        if member is not None:
            message = text("admin.reset.member", locale, member=member.mention)
        else:
            message = text("admin.reset.guild", locale)
        await self._reply(interaction, message)

    @quota.command(
        name="policy", description=cmd("Admin exemption and moderation charges", "cmd.sora_admin.quota.policy")
    )
    @app_commands.describe(
        admins_exempt="Members with Manage Server skip member allowances and the per-member job limit",
        moderation="When the gateway's content policy rejects a prompt: charge or refund the credits",
    )
    async def quota_policy(
        self,
        interaction: discord.Interaction[SoraBot],
        admins_exempt: bool | None = None,
        moderation: Literal["charge", "refund"] | None = None,
    ) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        changes: dict[str, bool] = {}
        if admins_exempt is not None:
            changes["admins_exempt"] = admins_exempt
        if moderation is not None:
            changes["charge_moderation"] = moderation == "charge"
        if changes:
            settings = await self.db.update_guild_settings(guild_id, **changes)
            self._audit(interaction, "set policy", changes)
        else:
            settings = await self.db.get_guild_settings(guild_id)
        await self._reply(interaction, policy_text(settings, locale))

    # --- usage ----------------------------------------------------------------------------------------------

    @app_commands.command(
        name="usage", description=cmd("Credits used: totals, top members, models, failures", "cmd.sora_admin.usage")
    )
    @app_commands.describe(period="Which stretch of time (default: the current quota period)")
    async def usage(self, interaction: discord.Interaction[SoraBot], period: UsagePeriod = "current") -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        settings = await self.db.get_guild_settings(guild_id)
        since, until = usage_window(period, settings, self.bot.clock.time())
        report = await self.db.usage_report(guild_id, since=since, until=until)
        await self._reply(interaction, embed=usage_embed(report, period, locale))

    # --- channels -------------------------------------------------------------------------------------------

    @channels.command(name="allow", description=cmd("Let /sora be used in a channel", "cmd.sora_admin.channels.allow"))
    @app_commands.describe(channel="The channel (threads under it are included)")
    async def channels_allow(self, interaction: discord.Interaction[SoraBot], channel: AllowableChannel) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        added = await self.db.allow_channel(guild_id, channel.id, added_by=interaction.user.id)
        self._audit(interaction, "allowed channel", channel.id)
        allowed = await self.db.allowed_channels(guild_id)
        key = "admin.channels.allowed" if added else "admin.channels.already"
        await self._reply(interaction, text(key, locale, channel=channel.mention, channels=channel_list(allowed)))

    @channels.command(name="deny", description=cmd("Take a channel off the allow-list", "cmd.sora_admin.channels.deny"))
    @app_commands.describe(channel="The channel")
    async def channels_deny(self, interaction: discord.Interaction[SoraBot], channel: AllowableChannel) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        removed = await self.db.disallow_channel(guild_id, channel.id)
        self._audit(interaction, "removed channel", channel.id)
        allowed = await self.db.allowed_channels(guild_id)
        if not removed:
            message = text("admin.channels.not_listed", locale, channel=channel.mention)
        elif allowed:
            message = text("admin.channels.removed", locale, channel=channel.mention, channels=channel_list(allowed))
        else:
            message = text("admin.channels.removed_empty", locale, channel=channel.mention)
        await self._reply(interaction, message)

    @channels.command(name="list", description=cmd("Where /sora may be used", "cmd.sora_admin.channels.list"))
    async def channels_list(self, interaction: discord.Interaction[SoraBot]) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        allowed = await self.db.allowed_channels(guild_id)
        if allowed:
            message = text("admin.channels.list", locale, channels=channel_list(allowed))
        else:
            message = text("admin.channels.list_empty", locale)
        await self._reply(interaction, message)

    # --- bans -----------------------------------------------------------------------------------------------

    @app_commands.command(name="ban", description=cmd("Stop a member from making videos", "cmd.sora_admin.ban"))
    @app_commands.describe(member="The member", reason="Shown to them when they try")
    async def ban(
        self,
        interaction: discord.Interaction[SoraBot],
        member: discord.User,
        reason: app_commands.Range[str, 1, 200] | None = None,
    ) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        new = await self.db.ban_member(guild_id, member.id, reason=reason, banned_by=interaction.user.id)
        self._audit(interaction, "banned", member.id, reason or "")
        key = "admin.ban.done" if new else "admin.ban.updated"
        await self._reply(interaction, text(key, locale, member=member.mention, reason=f": {reason}" if reason else ""))

    @app_commands.command(
        name="unban", description=cmd("Let a banned member make videos again", "cmd.sora_admin.unban")
    )
    @app_commands.describe(member="The member")
    async def unban(self, interaction: discord.Interaction[SoraBot], member: discord.User) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        removed = await self.db.unban_member(guild_id, member.id)
        self._audit(interaction, "unbanned", member.id)
        key = "admin.unban.done" if removed else "admin.unban.not_banned"
        await self._reply(interaction, text(key, locale, member=member.mention))

    @app_commands.command(name="bans", description=cmd("Who is banned from /sora", "cmd.sora_admin.bans"))
    async def bans(self, interaction: discord.Interaction[SoraBot]) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        bans = await self.db.bans(guild_id)
        if not bans:
            await self._reply(interaction, text("admin.bans.empty", locale))
            return
        lines = [
            text(
                "admin.bans.line",
                locale,
                member=f"<@{ban.user_id}>",
                reason=ban.reason or text("admin.bans.no_reason", locale),
                when=timestamp(ban.created_at, "d"),
            )
            for ban in bans
        ]
        embed = discord.Embed(
            title=text("admin.bans.title", locale), description=listing(lines, locale, limit=4000), colour=EMBED_COLOUR
        )
        await self._reply(interaction, embed=embed)

    # --- overview -------------------------------------------------------------------------------------------

    @app_commands.command(
        name="settings", description=cmd("Everything sora-bot is set to here", "cmd.sora_admin.settings")
    )
    async def settings(self, interaction: discord.Interaction[SoraBot]) -> None:
        locale, guild_id = interaction_locale(interaction), self._guild(interaction)
        await self._reply(interaction, embed=await settings_embed(self.db, guild_id, locale))


async def setup(bot: SoraBot) -> None:
    await bot.add_cog(Admin(bot))
