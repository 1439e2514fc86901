"""The double's world: users, guilds, roles, members, channels, threads, messages, attachments, interactions.

Every entity knows how to render itself as the JSON Discord would send (`to_payload`). Entities are plain mutable
dataclasses compared by identity; tests read them directly (`message.content`, `message.history`, ...).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .permissions import Overwrite

DISCORD_EPOCH_MS = 1_420_070_400_000
MIB = 1024 * 1024
# Upload limit per file by boost tier (https://discord.com/developers/docs/reference#uploading-files).
FILESIZE_BY_TIER = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}


class ChannelType:
    GUILD_TEXT = 0
    DM = 1
    GUILD_CATEGORY = 4
    GUILD_ANNOUNCEMENT = 5
    ANNOUNCEMENT_THREAD = 10
    PUBLIC_THREAD = 11
    PRIVATE_THREAD = 12
    GUILD_FORUM = 15
    THREADS = frozenset({10, 11, 12})


class MessageFlag:
    SUPPRESS_EMBEDS = 1 << 2
    HAS_THREAD = 1 << 5
    EPHEMERAL = 1 << 6
    LOADING = 1 << 7
    SUPPRESS_NOTIFICATIONS = 1 << 12
    IS_COMPONENTS_V2 = 1 << 15


class InteractionType:
    PING = 1
    APPLICATION_COMMAND = 2
    MESSAGE_COMPONENT = 3
    AUTOCOMPLETE = 4
    MODAL_SUBMIT = 5


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


@dataclass(eq=False)
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    @property
    def name(self) -> str:
        return self.username

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": self.global_name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }

    def __repr__(self) -> str:
        return f"<User {self.username} {self.id}>"


@dataclass(eq=False)
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "permissions": str(self.permissions),
            "position": self.position,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "managed": self.managed,
            "mentionable": False,
            "icon": None,
            "unicode_emoji": None,
            "flags": 0,
        }

    def __repr__(self) -> str:
        return f"<Role {self.name} {self.id}>"


@dataclass(eq=False)
class Member:
    user: User
    guild: Guild
    roles: list[int]
    joined_at: float
    nick: str | None = None

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def name(self) -> str:
        return self.user.username

    @property
    def mention(self) -> str:
        return self.user.mention

    def to_payload(self, *, with_user: bool = True) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "roles": [str(r) for r in self.roles],
            "joined_at": iso(self.joined_at),
            "nick": self.nick,
            "avatar": None,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
            "communication_disabled_until": None,
        }
        if with_user:
            payload["user"] = self.user.to_payload()
        return payload

    def __repr__(self) -> str:
        return f"<Member {self.user.username} of {self.guild.name}>"


@dataclass(eq=False)
class Guild:
    id: int
    name: str
    owner_id: int
    created: float
    premium_tier: int = 0
    preferred_locale: str = "en-US"
    roles: dict[int, Role] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)

    @property
    def everyone(self) -> Role:
        return self.roles[self.id]

    @property
    def filesize_limit(self) -> int:
        return FILESIZE_BY_TIER.get(self.premium_tier, FILESIZE_BY_TIER[0])

    @property
    def text_channels(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.type == ChannelType.GUILD_TEXT]

    @property
    def threads(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.is_thread]

    def to_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": self.premium_tier,
            "premium_subscription_count": {0: 0, 1: 2, 2: 7, 3: 14}.get(self.premium_tier, 0),
            "preferred_locale": self.preferred_locale,
            "features": [],
            "roles": [r.to_payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "premium_progress_bar_enabled": False,
            "application_id": None,
        }

    def __repr__(self) -> str:
        return f"<Guild {self.name} {self.id} tier={self.premium_tier}>"


@dataclass(eq=False)
class Channel:
    id: int
    type: int
    name: str | None
    guild: Guild | None
    created: float
    position: int = 0
    parent_id: int | None = None
    overwrites: list[Overwrite] = field(default_factory=list)
    topic: str | None = None
    nsfw: bool = False
    # threads
    owner_id: int | None = None
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    archive_timestamp: float | None = None
    message_count: int = 0
    member_ids: set[int] = field(default_factory=set)
    # DMs
    recipients: list[User] = field(default_factory=list)
    last_message_id: int | None = None

    @property
    def is_thread(self) -> bool:
        return self.type in ChannelType.THREADS

    @property
    def guild_id(self) -> int | None:
        return self.guild.id if self.guild else None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": str(self.id), "type": self.type, "flags": 0}
        if self.type == ChannelType.DM:
            payload.update(
                recipients=[u.to_payload() for u in self.recipients], last_message_id=_opt(self.last_message_id)
            )
            return payload
        payload.update(
            guild_id=str(self.guild_id),
            name=self.name,
            parent_id=_opt(self.parent_id),
            last_message_id=_opt(self.last_message_id),
            rate_limit_per_user=0,
            nsfw=self.nsfw,
        )
        if self.is_thread:
            payload.update(
                owner_id=_opt(self.owner_id),
                message_count=self.message_count,
                total_message_sent=self.message_count,
                member_count=len(self.member_ids),
                thread_metadata={
                    "archived": self.archived,
                    "auto_archive_duration": self.auto_archive_duration,
                    "archive_timestamp": iso(self.archive_timestamp or self.created),
                    "locked": self.locked,
                    "create_timestamp": iso(self.created),
                },
                applied_tags=[],
            )
        else:
            payload.update(
                position=self.position,
                permission_overwrites=[ow.to_payload() for ow in self.overwrites],
                topic=self.topic,
                default_auto_archive_duration=1440,
                default_thread_rate_limit_per_user=0,
            )
        return payload

    def __repr__(self) -> str:
        return f"<Channel #{self.name} {self.id} type={self.type}>"


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)


@dataclass(eq=False)
class Attachment:
    id: int
    filename: str
    data: bytes
    content_type: str | None
    url: str
    description: str | None = None
    ephemeral: bool = False

    @property
    def size(self) -> int:
        return len(self.data)

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
            "content_type": self.content_type,
        }
        if self.description is not None:
            payload["description"] = self.description
        if self.ephemeral:
            payload["ephemeral"] = True
        return payload

    def __repr__(self) -> str:
        return f"<Attachment {self.filename} {self.size} bytes>"


@dataclass(frozen=True)
class Revision:
    """One state of a message: the first is its creation, each later one an edit."""

    at: float
    monotonic: float
    content: str
    embeds: list[dict[str, Any]]
    attachments: tuple[str, ...]
    components: list[dict[str, Any]]
    flags: int


@dataclass(eq=False)
class Message:
    id: int
    channel: Channel
    author: User
    created: float
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    type: int = 0
    flags: int = 0
    mentions: list[User] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    reference: Message | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    interaction: Interaction | None = None
    edited: float | None = None
    deleted: bool = False
    thread: Channel | None = None
    tts: bool = False
    nonce: str | int | None = None
    history: list[Revision] = field(default_factory=list)
    reactions: dict[str, set[int]] = field(default_factory=dict)

    @property
    def guild(self) -> Guild | None:
        return self.channel.guild

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & MessageFlag.EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & MessageFlag.LOADING)

    @property
    def edits(self) -> list[Revision]:
        return self.history[1:]

    @property
    def jump_url(self) -> str:
        return f"https://discord.com/channels/{self.channel.guild_id or '@me'}/{self.channel.id}/{self.id}"

    def custom_ids(self) -> list[str]:
        """Every component custom_id on the message (buttons, selects), in order."""
        found: list[str] = []

        def walk(components: list[dict[str, Any]]) -> None:
            for component in components:
                if component.get("custom_id"):
                    found.append(component["custom_id"])
                walk(component.get("components") or [])
                if isinstance(component.get("accessory"), dict):
                    walk([component["accessory"]])

        walk(self.components)
        return found

    def find_component(self, custom_id: str) -> dict[str, Any] | None:
        def walk(components: list[dict[str, Any]]) -> dict[str, Any] | None:
            for component in components:
                if component.get("custom_id") == custom_id:
                    return component
                inner = list(component.get("components") or [])
                if isinstance(component.get("accessory"), dict):
                    inner.append(component["accessory"])
                hit = walk(inner)
                if hit is not None:
                    return hit
            return None

        return walk(self.components)

    def snapshot(self, at: float, monotonic: float) -> Revision:
        return Revision(
            at=at,
            monotonic=monotonic,
            content=self.content,
            embeds=copy.deepcopy(self.embeds),
            attachments=tuple(a.filename for a in self.attachments),
            components=copy.deepcopy(self.components),
            flags=self.flags,
        )

    def to_payload(
        self, *, hide_content: bool = False, with_reference: bool = True, hide_reference: bool = False
    ) -> dict[str, Any]:
        channel = self.channel
        payload: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(channel.id),
            "type": self.type,
            "author": self.author.to_payload(),
            "content": "" if hide_content else self.content,
            "timestamp": iso(self.created),
            "edited_timestamp": iso(self.edited),
            "tts": self.tts,
            "mention_everyone": self.mention_everyone,
            "mentions": [u.to_payload() for u in self.mentions],
            "mention_roles": [str(r) for r in self.mention_roles],
            "attachments": [] if hide_content else [a.to_payload() for a in self.attachments],
            "embeds": [] if hide_content else copy.deepcopy(self.embeds),
            "components": [] if hide_content else copy.deepcopy(self.components),
            "pinned": False,
            "flags": self.flags,
        }
        if channel.guild is not None:
            payload["guild_id"] = str(channel.guild.id)
        if self.webhook_id is not None:
            payload["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            payload["application_id"] = str(self.application_id)
        if self.nonce is not None:
            payload["nonce"] = self.nonce
        if self.thread is not None:
            payload["thread"] = self.thread.to_payload()
        if self.reactions:
            payload["reactions"] = [
                {
                    "emoji": {"id": None, "name": name},
                    "count": len(users),
                    "me": False,
                    "burst_colors": [],
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me_burst": False,
                    "burst_me": False,
                    "burst_count": 0,
                }
                for name, users in self.reactions.items()
                if users
            ]
        if self.reference is not None:
            payload["message_reference"] = {
                "type": 0,
                "message_id": str(self.reference.id),
                "channel_id": str(self.reference.channel.id),
                "guild_id": _opt(self.reference.channel.guild_id),
            }
            if with_reference:
                payload["referenced_message"] = (
                    None
                    if self.reference.deleted
                    else self.reference.to_payload(hide_content=hide_reference, with_reference=False)
                )
        if self.interaction is not None:
            inter = self.interaction
            metadata: dict[str, Any] = {
                "id": str(inter.id),
                "type": inter.type,
                "user": inter.user.to_payload(),
                "authorizing_integration_owners": {"0": str(inter.guild.id)}
                if inter.guild
                else {"1": str(inter.user.id)},
            }
            if inter.type == InteractionType.APPLICATION_COMMAND:
                metadata["name"] = inter.command_name
                metadata["command_type"] = 1
                payload["interaction"] = {
                    "id": str(inter.id),
                    "type": inter.type,
                    "name": inter.command_name,
                    "user": inter.user.to_payload(),
                }
            if inter.message is not None:
                metadata["interacted_message_id"] = str(inter.message.id)
            payload["interaction_metadata"] = metadata
        return payload

    def __repr__(self) -> str:
        text = self.content if len(self.content) <= 40 else self.content[:37] + "..."
        return f"<Message {self.id} by {self.author.username} in #{self.channel.name}: {text!r}>"


@dataclass
class Callback:
    """One interaction callback the bot sent, accepted or not."""

    type: int
    data: dict[str, Any] | None
    at: float
    status: int


@dataclass(eq=False)
class Interaction:
    id: int
    token: str
    type: int
    application_id: int
    user: User
    member: Member | None
    channel: Channel
    guild: Guild | None
    data: dict[str, Any]
    created: float
    created_monotonic: float
    attachment_size_limit: int
    locale: str = "en-US"
    message: Message | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Callback] = field(default_factory=list)
    response_type: int | None = None
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    modal: dict[str, Any] | None = None

    @property
    def command_name(self) -> str:
        return str(self.data.get("name", ""))

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    def __repr__(self) -> str:
        return f"<Interaction {self.id} type={self.type} response={self.response_type}>"


@dataclass(eq=False)
class Command:
    id: int
    application_id: int
    guild_id: int | None
    name: str
    type: int
    payload: dict[str, Any]
    version: int

    @property
    def options(self) -> list[dict[str, Any]]:
        return list(self.payload.get("options") or [])

    def to_payload(self) -> dict[str, Any]:
        body = copy.deepcopy(self.payload)
        body.setdefault("description", "")
        body.setdefault("options", [])
        body.setdefault("default_member_permissions", None)
        body.setdefault("nsfw", False)
        body.setdefault("name_localizations", None)
        body.setdefault("description_localizations", None)
        body.setdefault("contexts", None)
        body.setdefault("integration_types", [0])
        body.update(
            id=str(self.id),
            application_id=str(self.application_id),
            type=self.type,
            version=str(self.version),
        )
        if self.guild_id is not None:
            body["guild_id"] = str(self.guild_id)
        else:
            body.pop("guild_id", None)
        return body

    def __repr__(self) -> str:
        return f"<Command /{self.name} {self.id} guild={self.guild_id}>"


__all__ = [
    "FILESIZE_BY_TIER",
    "MIB",
    "Attachment",
    "Callback",
    "Channel",
    "ChannelType",
    "Command",
    "Guild",
    "Interaction",
    "InteractionType",
    "Member",
    "Message",
    "MessageFlag",
    "Revision",
    "Role",
    "User",
    "iso",
    "snowflake_time",
]
