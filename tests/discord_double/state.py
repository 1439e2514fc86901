"""The world the double keeps: entities, factories, permissions, and the state changes that emit gateway events."""

from __future__ import annotations

import mimetypes
import re
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote

from .clock import Clock
from .models import (
    DISCORD_EPOCH_MS,
    FILESIZE_BY_TIER,
    Attachment,
    Channel,
    ChannelType,
    Command,
    Guild,
    Interaction,
    InteractionType,
    Member,
    Message,
    MessageFlag,
    Role,
    User,
)
from .permissions import (
    ALL_PERMISSIONS,
    DEFAULT_EVERYONE,
    Overwrite,
    base_permissions,
    channel_permissions,
)

# Discord checks an enforced nonce "for uniqueness in the past few minutes"; the double keeps it this long.
NONCE_WINDOW = 5 * 60.0


class Intents:
    GUILDS = 1 << 0
    GUILD_MEMBERS = 1 << 1
    GUILD_PRESENCES = 1 << 8
    GUILD_MESSAGES = 1 << 9
    GUILD_MESSAGE_REACTIONS = 1 << 10
    DIRECT_MESSAGES = 1 << 12
    MESSAGE_CONTENT = 1 << 15
    PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class AppFlags:
    GATEWAY_PRESENCE = 1 << 12
    GATEWAY_GUILD_MEMBERS = 1 << 14
    GATEWAY_MESSAGE_CONTENT = 1 << 18


# A dispatch target sees the event through its own intents; the builder returns None to skip that session.
PayloadBuilder = Callable[[int], dict[str, Any] | None]
# The guild id (None: not a guild's event, e.g. a DM) decides which shard's sessions receive the event.
Dispatcher = Callable[[str, PayloadBuilder, int | None], None]

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard whose sessions receive a guild's events, as Discord computes it; DMs belong to shard 0."""
    if guild_id is None or shard_count <= 1:
        return 0
    return (guild_id >> 22) % shard_count


class Snowflakes:
    """Snowflakes whose timestamps follow the clock, strictly increasing."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = 0

    def next(self, *, shard: tuple[int, int] | None = None) -> int:
        """The next id; with `shard=(i, n)` one whose guild would live on shard i of n (its timestamp moves up
        to n - 1 ms ahead for that)."""
        candidate = (int(self._clock.time() * 1000) - DISCORD_EPOCH_MS) << 22
        if candidate <= self._last:
            candidate = self._last + 1
        if shard is not None:
            shard_id, shard_count = shard
            if not 0 <= shard_id < shard_count:
                raise ValueError(f"shard {shard_id} is not one of 0..{shard_count - 1}")
            step = (shard_id - (candidate >> 22)) % shard_count
            if step:
                candidate = ((candidate >> 22) + step) << 22
        self._last = candidate
        return candidate


class World:
    def __init__(self, clock: Clock, *, bot_name: str = "Sora", application_name: str = "Sora") -> None:
        self.clock = clock
        self.ids = Snowflakes(clock)
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.interactions: dict[int, Interaction] = {}
        self.interactions_by_token: dict[str, Interaction] = {}
        self.commands: dict[int, Command] = {}
        self.attachments: dict[int, Attachment] = {}
        # (channel id, author id, nonce as text) → the first message created with it and when (clock.monotonic)
        self.nonces: dict[tuple[int, int, str], tuple[Message, float]] = {}
        self.cdn_base = "http://127.0.0.1:0/cdn"
        self.dispatcher: Dispatcher = lambda event, build, guild_id: None
        self.bot_user = self.add_user(bot_name, bot=True)
        self.application_id = self.bot_user.id
        self.application_name = application_name
        self.app_flags = AppFlags.GATEWAY_MESSAGE_CONTENT | AppFlags.GATEWAY_GUILD_MEMBERS
        self.owner = self.add_user("owner")

    # --- time ---------------------------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock.time()

    def dispatch(self, event: str, build: PayloadBuilder, *, guild: Guild | None) -> None:
        """Send `event` to the sessions of the shard that owns `guild` (shard 0 when None, e.g. a DM)."""
        self.dispatcher(event, build, guild.id if guild is not None else None)

    # --- factories ----------------------------------------------------------------------------------------

    def add_user(self, name: str, *, bot: bool = False, global_name: str | None = None) -> User:
        user = User(id=self.ids.next(), username=name, global_name=global_name, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str = "Test Guild",
        *,
        premium_tier: int = 0,
        everyone_permissions: int = DEFAULT_EVERYONE,
        bot_permissions: int | None = None,
        channels: Iterable[str] = ("general",),
        preferred_locale: str = "en-US",
        owner: User | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        if premium_tier not in FILESIZE_BY_TIER:
            raise ValueError("premium_tier is 0, 1, 2 or 3")
        guild_id = self.ids.next(shard=shard)
        owner = owner or self.owner
        guild = Guild(
            id=guild_id,
            name=name,
            owner_id=owner.id,
            created=self.now(),
            premium_tier=premium_tier,
            preferred_locale=preferred_locale,
        )
        guild.roles[guild_id] = Role(
            id=guild_id, guild_id=guild_id, name="@everyone", permissions=int(everyone_permissions)
        )
        self.guilds[guild_id] = guild
        self._join(guild, owner, roles=[])
        bot_roles = []
        if bot_permissions is not None:
            bot_roles.append(
                self.add_role(guild, self.bot_user.username, bot_permissions, managed=True, announce=False)
            )
        self._join(guild, self.bot_user, roles=[r.id for r in bot_roles])
        for channel_name in channels:
            self.add_channel(guild, channel_name, announce=False)
        self.dispatch("GUILD_CREATE", lambda intents: self.guild_create_payload(guild), guild=guild)
        return guild

    def add_role(
        self, guild: Guild, name: str, permissions: int = 0, *, managed: bool = False, announce: bool = True
    ) -> Role:
        role = Role(
            id=self.ids.next(),
            guild_id=guild.id,
            name=name,
            permissions=int(permissions),
            position=len(guild.roles),
            managed=managed,
        )
        guild.roles[role.id] = role
        if announce:
            self.dispatch(
                "GUILD_ROLE_CREATE", lambda intents: {"guild_id": str(guild.id), "role": role.to_payload()}, guild=guild
            )
        return role

    def _join(self, guild: Guild, user: User, *, roles: list[int]) -> Member:
        member = Member(user=user, guild=guild, roles=roles, joined_at=self.now())
        guild.members[user.id] = member
        return member

    def add_member(
        self,
        guild: Guild,
        user: User | str,
        *,
        roles: Iterable[Role] = (),
        permissions: int | None = None,
    ) -> Member:
        if isinstance(user, str):
            user = self.add_user(user)
        role_ids = [r.id for r in roles]
        if permissions is not None:
            role_ids.append(self.add_role(guild, f"{user.username}-role", permissions).id)
        member = self._join(guild, user, roles=role_ids)

        def build(intents: int) -> dict[str, Any] | None:
            if not intents & Intents.GUILD_MEMBERS:
                return None
            return {**member.to_payload(), "guild_id": str(guild.id)}

        self.dispatch("GUILD_MEMBER_ADD", build, guild=guild)
        return member

    def add_channel(
        self,
        guild: Guild,
        name: str = "channel",
        *,
        type: int = ChannelType.GUILD_TEXT,
        overwrites: Iterable[Overwrite] = (),
        parent: Channel | None = None,
        nsfw: bool = False,
        announce: bool = True,
    ) -> Channel:
        channel = Channel(
            id=self.ids.next(),
            type=type,
            name=name,
            guild=guild,
            created=self.now(),
            position=len([c for c in guild.channels.values() if not c.is_thread]),
            parent_id=parent.id if parent else None,
            overwrites=list(overwrites),
            nsfw=nsfw,
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        if announce:
            self.dispatch("CHANNEL_CREATE", lambda intents: channel.to_payload(), guild=guild)
        return channel

    def add_thread(
        self,
        parent: Channel,
        name: str,
        *,
        owner: User | None = None,
        archived: bool = False,
        type: int = ChannelType.PUBLIC_THREAD,
        thread_id: int | None = None,
        auto_archive_duration: int = 1440,
    ) -> Channel:
        if parent.guild is None:
            raise ValueError("threads live in guild channels")
        owner = owner or self.bot_user
        thread = Channel(
            id=thread_id or self.ids.next(),
            type=type,
            name=name,
            guild=parent.guild,
            created=self.now(),
            parent_id=parent.id,
            owner_id=owner.id,
            archived=archived,
            auto_archive_duration=auto_archive_duration,
            member_ids={owner.id},
        )
        parent.guild.channels[thread.id] = thread
        self.channels[thread.id] = thread
        self.dispatch(
            "THREAD_CREATE", lambda intents: {**thread.to_payload(), "newly_created": True}, guild=parent.guild
        )
        return thread

    def update_thread(self, thread: Channel, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(thread, key, value)
        if "archived" in changes:
            thread.archive_timestamp = self.now()
        self.dispatch("THREAD_UPDATE", lambda intents: thread.to_payload(), guild=thread.guild)

    def dm_channel(self, user: User) -> Channel:
        for channel in self.channels.values():
            if channel.type == ChannelType.DM and channel.recipients and channel.recipients[0].id == user.id:
                return channel
        channel = Channel(id=self.ids.next(), type=ChannelType.DM, name=None, guild=None, created=self.now())
        channel.recipients = [user]
        self.channels[channel.id] = channel
        return channel

    def set_premium_tier(self, guild: Guild, tier: int) -> None:
        if tier not in FILESIZE_BY_TIER:
            raise ValueError("premium_tier is 0, 1, 2 or 3")
        guild.premium_tier = tier
        self.dispatch("GUILD_UPDATE", lambda intents: guild.to_payload(), guild=guild)

    # --- permissions --------------------------------------------------------------------------------------

    def parent_of(self, channel: Channel) -> Channel:
        if channel.is_thread and channel.parent_id is not None:
            return self.channels[channel.parent_id]
        return channel

    def base_permissions(self, guild: Guild, user_id: int) -> int:
        member = guild.members.get(user_id)
        if member is None:
            return 0
        return base_permissions(
            everyone=guild.everyone.permissions,
            role_permissions=[guild.roles[r].permissions for r in member.roles if r in guild.roles],
            is_owner=guild.owner_id == user_id,
        )

    def permissions(self, user_id: int, channel: Channel) -> int:
        """Effective permissions of a member in a channel (threads use their parent's overwrites)."""
        guild = channel.guild
        if guild is None:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        if member is None:
            return 0
        base = self.base_permissions(guild, user_id)
        return channel_permissions(
            base,
            guild_id=guild.id,
            member_id=user_id,
            member_roles=member.roles,
            overwrites=self.parent_of(channel).overwrites,
            is_thread=channel.is_thread,
        )

    # --- attachments --------------------------------------------------------------------------------------

    def store_attachment(
        self,
        channel: Channel,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> Attachment:
        attachment_id = self.ids.next()
        kind = "ephemeral-attachments" if ephemeral else "attachments"
        url = f"{self.cdn_base}/{kind}/{channel.id}/{attachment_id}/{quote(filename)}"
        attachment = Attachment(
            id=attachment_id,
            filename=filename,
            data=bytes(data),
            content_type=content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream",
            url=url,
            description=description,
            ephemeral=ephemeral,
        )
        self.attachments[attachment_id] = attachment
        return attachment

    # --- messages -----------------------------------------------------------------------------------------

    def resolve_mentions(
        self,
        channel: Channel,
        content: str,
        allowed: dict[str, Any] | None,
        reference: Message | None,
    ) -> tuple[list[User], list[int], bool]:
        parse = {"users", "roles", "everyone"} if allowed is None else set(allowed.get("parse") or [])
        explicit_users = {int(u) for u in (allowed or {}).get("users") or []}
        explicit_roles = {int(r) for r in (allowed or {}).get("roles") or []}
        users: list[User] = []
        for match in _USER_MENTION.finditer(content or ""):
            user_id = int(match.group(1))
            user = self.users.get(user_id)
            if user and ("users" in parse or user_id in explicit_users) and user not in users:
                users.append(user)
        roles = [
            int(m.group(1))
            for m in _ROLE_MENTION.finditer(content or "")
            if "roles" in parse or int(m.group(1)) in explicit_roles
        ]
        everyone = "everyone" in parse and ("@everyone" in (content or "") or "@here" in (content or ""))
        replied_user = True if allowed is None else bool(allowed.get("replied_user", False))
        if reference is not None and replied_user and reference.author not in users:
            users.append(reference.author)
        return users, roles, everyone

    def hides_content(self, message: Message, intents: int) -> bool:
        """Discord's Message Content rule: empty unless the intent, a DM, the bot's own message or a mention."""
        if intents & Intents.MESSAGE_CONTENT:
            return False
        if message.channel.type == ChannelType.DM:
            return False
        if message.author.id == self.bot_user.id:
            return False
        return not any(u.id == self.bot_user.id for u in message.mentions)

    def message_payload(self, message: Message, intents: int) -> dict[str, Any]:
        payload = message.to_payload(
            hide_content=self.hides_content(message, intents),
            hide_reference=message.reference is not None and self.hides_content(message.reference, intents),
        )
        member = message.guild.members.get(message.author.id) if message.guild else None
        if member is not None and message.webhook_id is None:
            payload["member"] = member.to_payload(with_user=False)
        return payload

    def rest_intents(self) -> int:
        """REST reads follow the application's Message Content setting, not a gateway session's intents."""
        return Intents.MESSAGE_CONTENT if self.app_flags & AppFlags.GATEWAY_MESSAGE_CONTENT else 0

    def _message_event_intent(self, message: Message) -> int:
        return Intents.DIRECT_MESSAGES if message.channel.type == ChannelType.DM else Intents.GUILD_MESSAGES

    def create_message(
        self,
        channel: Channel,
        author: User,
        *,
        content: str = "",
        embeds: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
        attachments: list[Attachment] | None = None,
        flags: int = 0,
        reference: Message | None = None,
        allowed_mentions: dict[str, Any] | None = None,
        webhook_id: int | None = None,
        interaction: Interaction | None = None,
        type: int | None = None,
        tts: bool = False,
        nonce: str | int | None = None,
    ) -> Message:
        mentions, roles, everyone = self.resolve_mentions(channel, content, allowed_mentions, reference)
        message = Message(
            id=self.ids.next(),
            channel=channel,
            author=author,
            created=self.now(),
            content=content or "",
            embeds=list(embeds or []),
            components=list(components or []),
            attachments=list(attachments or []),
            flags=flags,
            mentions=mentions,
            mention_roles=roles,
            mention_everyone=everyone,
            reference=reference,
            webhook_id=webhook_id,
            application_id=self.application_id if webhook_id is not None else None,
            interaction=interaction,
            type=type if type is not None else (19 if reference is not None else 0),
            tts=tts,
            nonce=nonce,
        )
        message.history.append(message.snapshot(self.now(), self.clock.monotonic()))
        self.messages[message.id] = message
        if nonce is not None:
            key = (channel.id, author.id, str(nonce))
            if self.message_with_nonce(channel, author, nonce) is None:
                self.nonces[key] = (message, self.clock.monotonic())
        if not message.ephemeral:
            channel.last_message_id = message.id
            if channel.is_thread:
                channel.message_count += 1
            required = self._message_event_intent(message)
            self.dispatch(
                "MESSAGE_CREATE",
                lambda intents: self.message_payload(message, intents) if intents & required else None,
                guild=channel.guild,
            )
        return message

    def message_with_nonce(self, channel: Channel, author: User, nonce: str | int) -> Message | None:
        """The message `author` created in `channel` with `nonce` within the last `NONCE_WINDOW` seconds (it may
        have been deleted since), else None."""
        key = (channel.id, author.id, str(nonce))
        found = self.nonces.get(key)
        if found is None:
            return None
        message, created = found
        if self.clock.monotonic() - created > NONCE_WINDOW:
            del self.nonces[key]
            return None
        return message

    def edit_message(
        self,
        message: Message,
        *,
        content: str | None = None,
        embeds: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
        attachments: list[Attachment] | None = None,
        flags: int | None = None,
        allowed_mentions: dict[str, Any] | None = None,
    ) -> Message:
        if content is not None:
            message.content = content
            mentions, roles, everyone = self.resolve_mentions(message.channel, content, allowed_mentions, None)
            message.mentions, message.mention_roles, message.mention_everyone = mentions, roles, everyone
        if embeds is not None:
            message.embeds = list(embeds)
        if components is not None:
            message.components = list(components)
        if attachments is not None:
            message.attachments = list(attachments)
        if flags is not None:
            message.flags = flags
        message.edited = self.now()
        message.history.append(message.snapshot(self.now(), self.clock.monotonic()))
        if not message.ephemeral:
            required = self._message_event_intent(message)
            self.dispatch(
                "MESSAGE_UPDATE",
                lambda intents: self.message_payload(message, intents) if intents & required else None,
                guild=message.guild,
            )
        return message

    def delete_message(self, message: Message) -> None:
        message.deleted = True
        if message.ephemeral:
            return
        required = self._message_event_intent(message)
        payload = {"id": str(message.id), "channel_id": str(message.channel.id)}
        if message.guild is not None:
            payload["guild_id"] = str(message.guild.id)
        self.dispatch(
            "MESSAGE_DELETE", lambda intents: dict(payload) if intents & required else None, guild=message.guild
        )

    def channel_messages(self, channel: Channel, *, include_deleted: bool = False) -> list[Message]:
        return [m for m in self.messages.values() if m.channel is channel and (include_deleted or not m.deleted)]

    # --- gateway payloads ---------------------------------------------------------------------------------

    def guild_create_payload(self, guild: Guild) -> dict[str, Any]:
        payload = guild.to_payload()
        payload.update(
            channels=[c.to_payload() for c in guild.channels.values() if not c.is_thread],
            threads=[c.to_payload() for c in guild.channels.values() if c.is_thread and not c.archived],
            members=[m.to_payload() for m in guild.members.values()],
            member_count=len(guild.members),
            joined_at=guild.members[self.bot_user.id].to_payload()["joined_at"],
            large=False,
            unavailable=False,
            lazy=True,
            voice_states=[],
            presences=[],
            stage_instances=[],
            guild_scheduled_events=[],
            soundboard_sounds=[],
        )
        return payload

    # --- interactions -------------------------------------------------------------------------------------

    def create_interaction(
        self,
        type: int,
        *,
        user: User,
        channel: Channel,
        data: dict[str, Any],
        message: Message | None = None,
        locale: str = "en-US",
        age: float = 0.0,
    ) -> Interaction:
        guild = channel.guild
        member = guild.members.get(user.id) if guild else None
        if guild is not None and member is None:
            raise ValueError(f"{user} is not a member of {guild}")
        interaction = Interaction(
            id=self.ids.next(),
            token=f"aW50ZXJhY3Rpb24{secrets.token_urlsafe(48)}",
            type=type,
            application_id=self.application_id,
            user=user,
            member=member,
            channel=channel,
            guild=guild,
            data=data,
            created=self.now() - age,
            created_monotonic=self.clock.monotonic() - age,
            attachment_size_limit=guild.filesize_limit if guild else FILESIZE_BY_TIER[0],
            locale=locale,
            message=message,
        )
        self.interactions[interaction.id] = interaction
        self.interactions_by_token[interaction.token] = interaction
        interaction.payload = self.interaction_payload(interaction)
        self.dispatch("INTERACTION_CREATE", lambda intents: interaction.payload, guild=guild)
        return interaction

    def interaction_payload(self, interaction: Interaction) -> dict[str, Any]:
        channel, guild = interaction.channel, interaction.guild
        payload: dict[str, Any] = {
            "id": str(interaction.id),
            "application_id": str(interaction.application_id),
            "type": interaction.type,
            "data": interaction.data,
            "channel": channel.to_payload(),
            "channel_id": str(channel.id),
            "token": interaction.token,
            "version": 1,
            "locale": interaction.locale,
            "entitlements": [],
            "attachment_size_limit": interaction.attachment_size_limit,
            "app_permissions": str(self.permissions(self.bot_user.id, channel)),
        }
        if guild is not None and interaction.member is not None:
            payload.update(
                guild_id=str(guild.id),
                guild_locale=guild.preferred_locale,
                guild={"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                member={
                    **interaction.member.to_payload(),
                    "permissions": str(self.permissions(interaction.user.id, channel)),
                },
                authorizing_integration_owners={"0": str(guild.id)},
                context=0,
            )
        else:
            payload.update(
                user=interaction.user.to_payload(),
                authorizing_integration_owners={"1": str(interaction.user.id)},
                context=1,
            )
        if interaction.message is not None:
            payload["message"] = self.message_payload(interaction.message, Intents.MESSAGE_CONTENT)
        return payload

    def interaction_message_type(self, interaction: Interaction) -> int:
        return 20 if interaction.type == InteractionType.APPLICATION_COMMAND else 19

    def loading_flags(self, data: dict[str, Any] | None) -> int:
        return MessageFlag.LOADING | ((data or {}).get("flags") or 0) & MessageFlag.EPHEMERAL


__all__ = ["NONCE_WINDOW", "AppFlags", "Intents", "PayloadBuilder", "Snowflakes", "World", "shard_of"]
