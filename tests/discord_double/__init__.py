"""A loopback Discord for testing a real discord.py client: REST v10, the gateway, a CDN, and Discord's rules.

Self-contained (aiohttp, jsonschema): it knows nothing of the bot under test, so it could become its own package.

    async with DiscordDouble(clock=clock) as double:
        discord.http.Route.BASE = double.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(double.gateway_url)
        ...  # start the bot with token double.token
        handle = await double.slash("sora", user=alice, prompt="a cat")
        message = await handle.wait_original(lambda m: not m.loading)
"""

from .clock import AdvanceableClock, Clock, ManualClock
from .double import DEFAULT_TOKEN, DiscordDouble, InteractionHandle, Upload
from .gateway import Frame, GatewaySession, Identify
from .latency import Delay
from .models import (
    FILESIZE_BY_TIER,
    MIB,
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
    Revision,
    Role,
    User,
)
from .permissions import ALL_PERMISSIONS, DEFAULT_EVERYONE, Overwrite, Permission
from .rest import RecordedRequest, UploadedFile
from .spec import OpenAPISpec
from .state import NONCE_WINDOW, Intents, shard_of

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_EVERYONE",
    "DEFAULT_TOKEN",
    "FILESIZE_BY_TIER",
    "MIB",
    "NONCE_WINDOW",
    "AdvanceableClock",
    "Attachment",
    "Channel",
    "ChannelType",
    "Clock",
    "Command",
    "Delay",
    "DiscordDouble",
    "Frame",
    "GatewaySession",
    "Guild",
    "Identify",
    "Intents",
    "Interaction",
    "InteractionHandle",
    "InteractionType",
    "ManualClock",
    "Member",
    "Message",
    "MessageFlag",
    "OpenAPISpec",
    "Overwrite",
    "Permission",
    "RecordedRequest",
    "Revision",
    "Role",
    "Upload",
    "UploadedFile",
    "User",
    "shard_of",
]
