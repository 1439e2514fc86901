"""The thin Bot subclass: holds the shared resources and loads the cogs. No business logic lives here."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiohttp
import discord
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket

from bot.buttons import DYNAMIC_ITEMS
from bot.clock import Clock
from bot.config import Settings
from bot.i18n import CatalogueTranslator, interaction_locale, permission_names, t
from bot.jobs import JobManager
from bot.permissions import is_bot_owner
from bot.ratelimit import RateBucket, limit_bot_requests
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


class SoraBot(commands.AutoShardedBot):
    """The bot. Resources are opened by the entry point and injected here.

    It runs the shards `settings.shard_ids` of `settings.shard_count` (unsharded: shard 0 of 1, one connection),
    so `shard_ids`/`shard_count` are always set and `owns_guild` says whose events this process receives.
    """

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
        trace = options.get("http_trace") or scheduler.trace_config()
        # Real time, not `clock`: Discord counts requests per real second whatever a test does to business time.
        global_rate = RateBucket(settings.discord_global_rate)
        limit_bot_requests(trace, global_rate)
        options["http_trace"] = trace
        # Always explicit, so discord.py never asks /gateway/bot how many shards to run.
        options["shard_count"] = settings.shard_count
        options["shard_ids"] = settings.shard_ids
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
        self.global_rate = global_rate
        self._max_concurrency: int | None = None
        self.initial_extensions = tuple(extensions)
        self.jobs = JobManager(
            client=self, settings=settings, db=db, session=session, scheduler=scheduler, clock=clock
        )
        self._resumed = False

    def __repr__(self) -> str:
        return f"<SoraBot user={self.user!s}>"

    # --- shards -------------------------------------------------------------------------------------------

    def owns_guild(self, guild_id: int | None) -> bool:
        """Whether this process runs the shard that receives `guild_id`'s events (None, a DM: shard 0)."""
        return self.settings.owns_guild(guild_id)

    @property  # type: ignore[override]
    def ws(self) -> DiscordWebSocket | None:
        """The gateway connection of this process's first shard. An AutoShardedClient keeps one per shard and
        would leave `Client.ws` None; unsharded, this is the one connection."""
        try:
            return self._get_websocket(shard_id=self.settings.shard_ids[0])
        except (AttributeError, KeyError):  # not connected yet
            return None

    @ws.setter
    def ws(self, value: DiscordWebSocket | None) -> None:
        """`Client.__init__` assigns None here; the connections belong to the shards."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """Space IDENTIFYs of one max_concurrency bucket by `SORA_IDENTIFY_INTERVAL` across every process sharing
        the database (discord.py's own hook only sleeps 5 s in this process, and not before the first one)."""
        shard = shard_id or 0
        # Shard 0 is in bucket 0 whatever max_concurrency is, so an unsharded bot never asks /gateway/bot.
        bucket = shard % await self.max_concurrency() if shard else 0
        interval = self.settings.sora_identify_interval
        try:
            await self.db.identify_turn(bucket, interval)
        except Exception:
            log.warning(
                "shard %d: could not take an identify turn in the database; waiting %.1f s here",
                shard,
                interval,
                exc_info=True,
            )
            await asyncio.sleep(interval)
        log.debug("shard %d identifies (bucket %d)", shard, bucket)

    async def max_concurrency(self) -> int:
        """How many IDENTIFY buckets Discord gives this bot (`session_start_limit.max_concurrency`), asked once;
        1, the strictest, while it can't be asked."""
        if self._max_concurrency is None:
            try:
                limits = await self.fetch_session_start_limits()
            except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
                log.warning("could not read the session start limits (%s); assuming max_concurrency 1", exc)
                return 1
            self._max_concurrency = max(1, limits.max_concurrency)
        return self._max_concurrency

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
