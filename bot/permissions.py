"""The exact permissions the bot needs, and the invite URL that asks for them."""

from __future__ import annotations

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


__all__ = ["PERMISSION_NAMES", "REQUIRED_PERMISSIONS", "invite_url", "missing_permissions"]
