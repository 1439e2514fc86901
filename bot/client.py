"""The thin Bot subclass: holds the shared resources and loads the cogs. No business logic lives here."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands

from bot.buttons import DYNAMIC_ITEMS
from bot.clock import Clock
from bot.config import Settings
from bot.i18n import CatalogueTranslator, interaction_locale, permission_names, t
from bot.jobs import JobManager
from bot.permissions import is_bot_owner
from bot.replies import send_ephemeral
from bot.runtime import default_intents
from bot.streamer import EditScheduler

if TYPE_CHECKING:
    from storage import Database

log = logging.getLogger(__name__)

# Loaded in this order by `setup_hook`; one cog per user-facing feature.
INITIAL_EXTENSIONS: tuple[str, ...] = ("cogs.generate", "cogs.remix", "cogs.quota", "cogs.admin")


class SoraCommandTree(app_commands.CommandTree["SoraBot"]):
    """One place that turns every app-command error into a short ephemeral answer."""

    async def on_error(
        self, interaction: discord.Interaction[SoraBot], error: app_commands.AppCommandError
    ) -> None:
        locale = interaction_locale(interaction)
        # CommandOnCooldown and the permission errors are CheckFailures too, so they come first. discord.py's own
        # failures carry English text; a CheckFailure subclass of ours carries the member's sentence already.
        if isinstance(error, app_commands.CommandOnCooldown):
            message = t("error.cooldown", locale, seconds=max(1, math.ceil(error.retry_after)))
        elif isinstance(error, app_commands.NoPrivateMessage):
            message = t("error.server_only", locale)
        elif isinstance(error, app_commands.MissingPermissions):
            names = permission_names(error.missing_permissions, locale)
            message = t("error.member_missing_permissions", locale, permissions=names)
        elif isinstance(error, app_commands.BotMissingPermissions):
            names = permission_names(error.missing_permissions, locale)
            message = t("error.bot_missing_permissions", locale, permissions=names)
        elif isinstance(error, app_commands.CheckFailure):
            ours = not type(error).__module__.startswith("discord.")
            message = (str(error) if ours else "") or t("error.check_failed", locale)
        elif isinstance(error, app_commands.TransformerError):
            message = t("error.bad_option", locale)
        else:
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("command /%s failed (interaction %s)", command, interaction.id, exc_info=error)
            message = t("error.command_failed", locale, reference=interaction.id)
        await send_ephemeral(interaction, message)


class SoraBot(commands.Bot):
    """The bot. Resources are opened by the entry point and injected here."""

    def __init__(
        self,
        *,
        settings: Settings,
        session: aiohttp.ClientSession,
        db: Database,
        clock: Clock | None = None,
        extensions: Sequence[str] = INITIAL_EXTENSIONS,
        message_content: bool = True,
        **options: Any,
    ) -> None:
        options.setdefault("guild_ready_timeout", 2.0)
        # No message cache: replies carry the message they answer, and with many jobs the cache only costs CPU
        # (every progress edit comes back as a MESSAGE_UPDATE).
        options.setdefault("max_messages", None)
        clock = clock or Clock()
        scheduler = EditScheduler(clock, interval=settings.sora_edit_interval)
        options.setdefault("http_trace", scheduler.trace_config())
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=default_intents(message_content),
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=SoraCommandTree,
            help_command=None,
            **options,
        )
        self.settings = settings
        self.session = session
        self.db = db
        self.clock = clock
        self.scheduler = scheduler
        self.initial_extensions = tuple(extensions)
        self.jobs = JobManager(
            client=self, settings=settings, db=db, session=session, scheduler=scheduler, clock=clock
        )
        self._resumed = False

    def __repr__(self) -> str:
        return f"<SoraBot user={self.user!s}>"

    async def setup_hook(self) -> None:
        await self.tree.set_translator(CatalogueTranslator())
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        for extension in self.initial_extensions:
            try:
                await self.load_extension(extension)
            except Exception:
                log.exception("failed to load extension %s", extension)
                raise
        await self.sync_commands()

    async def sync_commands(self) -> None:
        """Sync once per start: to the configured guilds (instant) or globally."""
        guild_ids = self.settings.discord_guild_ids
        if guild_ids:
            for guild_id in guild_ids:
                guild = discord.Object(id=guild_id)
                self.tree.copy_global_to(guild=guild)
                synced = await self.tree.sync(guild=guild)
                log.info("synced %d commands to guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands", len(synced))

    async def on_ready(self) -> None:
        log.info("logged in as %s (%s) in %d guilds", self.user, getattr(self.user, "id", "?"), len(self.guilds))
        if not self._resumed:
            # Once per process, when the guild cache is filled (not on every reconnect): the heartbeat claims
            # the jobs whose lease expired (a previous run's, a dead process's) and keeps this process's alive.
            self._resumed = True
            self.jobs.start_background()

    async def close(self) -> None:
        await self.jobs.close()
        await super().close()

    async def on_message(self, message: discord.Message, /) -> None:
        """No prefix commands: a mention of the bot is not a command (the cogs' listeners still see it)."""

    def is_bot_owner(self, user_id: int) -> bool:
        return is_bot_owner(user_id, self.settings.bot_owner_ids, self.owner_id)


__all__ = ["INITIAL_EXTENSIONS", "SoraBot", "SoraCommandTree"]
