"""The exact permissions the bot needs, the invite URL that asks for them, and who counts as an admin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

import discord

REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    attach_files=True,
    read_message_history=True,
)

PERMISSION_NAMES = {
    "view_channel": "View Channel",
    "send_messages": "Send Messages",
    "send_messages_in_threads": "Send Messages in Threads",
    "create_public_threads": "Create Public Threads",
    "embed_links": "Embed Links",
    "attach_files": "Attach Files",
    "read_message_history": "Read Message History",
}


def invite_url(client_id: int, permissions: discord.Permissions = REQUIRED_PERMISSIONS) -> str:
    query = urlencode(
        {"client_id": client_id, "permissions": permissions.value, "scope": "bot applications.commands"}
    )
    return f"https://discord.com/oauth2/authorize?{query}"


def missing_permissions(granted: discord.Permissions, needed: discord.Permissions = REQUIRED_PERMISSIONS) -> list[str]:
    """Human names of the needed permissions that `granted` lacks."""
    return [PERMISSION_NAMES.get(name, name) for name, value in needed if value and not getattr(granted, name)]


def is_bot_owner(user_id: int, owner_ids: Iterable[int], application_owner_id: int | None) -> bool:
    """`BOT_OWNER_IDS`, or the application's owner as Discord reports it."""
    return user_id in owner_ids or (application_owner_id is not None and user_id == application_owner_id)


def member_is_admin(member: object) -> bool:
    """Manage Server in the guild (what `/sora-admin` and managing other members' jobs require)."""
    permissions = getattr(member, "guild_permissions", None)
    return bool(permissions and permissions.manage_guild)


def bot_missing_permissions(interaction: discord.Interaction[Any]) -> list[str]:
    """Permissions the bot lacks in the interaction's channel to post progress and results."""
    needed = discord.Permissions(embed_links=True, attach_files=True)
    if isinstance(interaction.channel, discord.Thread):
        needed.send_messages_in_threads = True
    else:
        needed.send_messages = True
    return missing_permissions(interaction.app_permissions, needed)


__all__ = [
    "PERMISSION_NAMES",
    "REQUIRED_PERMISSIONS",
    "bot_missing_permissions",
    "invite_url",
    "is_bot_owner",
    "member_is_admin",
    "missing_permissions",
]
