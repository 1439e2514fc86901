"""Discord permission bits and the channel permission algorithm (roles, then overwrites, then implicit denies)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntFlag


class Permission(IntFlag):
    CREATE_INSTANT_INVITE = 1 << 0
    KICK_MEMBERS = 1 << 1
    BAN_MEMBERS = 1 << 2
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    MANAGE_GUILD = 1 << 5
    ADD_REACTIONS = 1 << 6
    VIEW_AUDIT_LOG = 1 << 7
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    SEND_TTS_MESSAGES = 1 << 12
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    MANAGE_ROLES = 1 << 28
    MANAGE_WEBHOOKS = 1 << 29
    USE_APPLICATION_COMMANDS = 1 << 31
    MANAGE_THREADS = 1 << 34
    CREATE_PUBLIC_THREADS = 1 << 35
    CREATE_PRIVATE_THREADS = 1 << 36
    SEND_MESSAGES_IN_THREADS = 1 << 38


ALL_PERMISSIONS = (1 << 51) - 1

DEFAULT_EVERYONE = (
    Permission.VIEW_CHANNEL
    | Permission.SEND_MESSAGES
    | Permission.SEND_MESSAGES_IN_THREADS
    | Permission.CREATE_PUBLIC_THREADS
    | Permission.EMBED_LINKS
    | Permission.ATTACH_FILES
    | Permission.READ_MESSAGE_HISTORY
    | Permission.ADD_REACTIONS
    | Permission.USE_EXTERNAL_EMOJIS
    | Permission.USE_APPLICATION_COMMANDS
)

# Without SEND_MESSAGES these are implicitly denied in a text channel (Discord's documented behaviour).
_NEEDS_SEND = (
    Permission.MENTION_EVERYONE | Permission.SEND_TTS_MESSAGES | Permission.ATTACH_FILES | Permission.EMBED_LINKS
)


@dataclass
class Overwrite:
    """A channel permission overwrite: `type` 0 for a role, 1 for a member."""

    id: int
    type: int
    allow: int = 0
    deny: int = 0

    @classmethod
    def for_role(cls, role: object, *, allow: int = 0, deny: int = 0) -> Overwrite:
        return cls(id=_id(role), type=0, allow=int(allow), deny=int(deny))

    @classmethod
    def for_member(cls, member: object, *, allow: int = 0, deny: int = 0) -> Overwrite:
        return cls(id=_id(member), type=1, allow=int(allow), deny=int(deny))

    def to_payload(self) -> dict[str, object]:
        return {"id": str(self.id), "type": self.type, "allow": str(self.allow), "deny": str(self.deny)}


def _id(thing: object) -> int:
    return thing if isinstance(thing, int) else int(thing.id)  # type: ignore[attr-defined]


def base_permissions(*, everyone: int, role_permissions: Iterable[int], is_owner: bool) -> int:
    if is_owner:
        return ALL_PERMISSIONS
    permissions = everyone
    for value in role_permissions:
        permissions |= value
    if permissions & Permission.ADMINISTRATOR:
        return ALL_PERMISSIONS
    return permissions


def channel_permissions(
    base: int,
    *,
    guild_id: int,
    member_id: int,
    member_roles: Iterable[int],
    overwrites: Iterable[Overwrite],
    is_thread: bool = False,
) -> int:
    """Apply overwrites as Discord does: @everyone, then all roles (deny then allow), then the member."""
    if base & Permission.ADMINISTRATOR:
        return ALL_PERMISSIONS
    overwrites = list(overwrites)
    roles = set(member_roles)
    permissions = base
    for ow in overwrites:
        if ow.type == 0 and ow.id == guild_id:
            permissions = (permissions & ~ow.deny) | ow.allow
    allow = deny = 0
    for ow in overwrites:
        if ow.type == 0 and ow.id in roles:
            allow |= ow.allow
            deny |= ow.deny
    permissions = (permissions & ~deny) | allow
    for ow in overwrites:
        if ow.type == 1 and ow.id == member_id:
            permissions = (permissions & ~ow.deny) | ow.allow
    if not permissions & Permission.VIEW_CHANNEL:
        return 0
    gate = Permission.SEND_MESSAGES_IN_THREADS if is_thread else Permission.SEND_MESSAGES
    if not permissions & gate:
        permissions &= ~_NEEDS_SEND
    return permissions


__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_EVERYONE",
    "Overwrite",
    "Permission",
    "base_permissions",
    "channel_permissions",
]
