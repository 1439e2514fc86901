"""`DiscordDouble`: the server (REST + gateway + CDN on 127.0.0.1) and the API tests drive it with.

Beyond building the world and acting as members, a test can inject Discord's bad minutes: `inject_rate_limit`,
`inject_error`, and `delay(route, seconds, after_commit=)`, which holds requests before the double applies them
or after it applied them but before it answers (`await delay.wait_held()` marks the window). Message creates
honour `enforce_nonce` (`deduplicated_requests` counts the hits). Sessions that IDENTIFY with a shard receive only
their shard's guilds, and IDENTIFYs are checked against max_concurrency; see README.md.
"""

# The waiting helpers take `timeout=` on purpose: they poll the double's state, and a test reads best as
# `await double.wait_for_message(channel, pred, timeout=5)`.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import logging
import mimetypes
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from .clock import Clock, ManualClock
from .gateway import IDENTIFY_SPACING, Frame, Gateway, GatewaySession, Identify
from .latency import Delay
from .models import (
    Attachment,
    Channel,
    ChannelType,
    Command,
    Guild,
    Interaction,
    InteractionType,
    Member,
    Message,
    Role,
    User,
)
from .permissions import DEFAULT_EVERYONE, Overwrite
from .ratelimit import RateLimiter
from .rest import RecordedRequest, RestApi
from .spec import OpenAPISpec
from .state import AppFlags, World

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_TOKEN = "MTAwMDAwMDAwMDAwMDAwMDA.double.bot-token"


@dataclass(frozen=True)
class Upload:
    """A file a member attaches (to a message or a slash command option)."""

    filename: str
    data: bytes
    content_type: str | None = None

    @classmethod
    def of(cls, value: Upload | bytes | tuple[str, bytes] | Attachment, default_name: str = "file") -> Upload:
        if isinstance(value, Upload):
            return value
        if isinstance(value, Attachment):
            return cls(value.filename, value.data, value.content_type)
        if isinstance(value, tuple):
            return cls(value[0], value[1])
        return cls(_guess_name(value, default_name), bytes(value))


def _guess_name(data: bytes, default: str) -> str:
    if data.startswith(b"\x89PNG"):
        return f"{default}.png"
    if data.startswith(b"\xff\xd8"):
        return f"{default}.jpg"
    if data[4:8] == b"ftyp":
        return f"{default}.mp4"
    if data.startswith(b"GIF8"):
        return f"{default}.gif"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return f"{default}.webp"
    return f"{default}.bin"


AnyUser = User | Member


def _user(who: AnyUser) -> User:
    return who.user if isinstance(who, Member) else who


class InteractionHandle:
    """What a test holds after `slash`/`click`/`submit_modal`: the interaction and how the bot answered it."""

    def __init__(self, double: DiscordDouble, interaction: Interaction) -> None:
        self.double = double
        self.interaction = interaction

    @property
    def id(self) -> int:
        return self.interaction.id

    @property
    def token(self) -> str:
        return self.interaction.token

    @property
    def response_type(self) -> int | None:
        """The accepted callback type (4 message, 5 deferred, 6 deferred update, 7 update, 9 modal) or None."""
        return self.interaction.response_type

    @property
    def original(self) -> Message | None:
        return self.interaction.original

    @property
    def followups(self) -> list[Message]:
        return list(self.interaction.followups)

    @property
    def modal(self) -> dict[str, Any] | None:
        return self.interaction.modal

    @property
    def callbacks(self) -> list[Any]:
        return list(self.interaction.callbacks)

    def requests(self) -> list[RecordedRequest]:
        """Requests that used this interaction's id or token."""
        token = self.interaction.token
        return [r for r in self.double.requests if token in r.path]

    async def wait_response(self, timeout: float = 5.0) -> int:
        """Wait until the bot acknowledged the interaction; returns the callback type."""
        await self.double.wait_for(
            lambda: (
                self.interaction.response_type is not None or any(c.status >= 400 for c in self.interaction.callbacks)
            ),
            timeout,
            what=f"a response to interaction {self.id}",
        )
        if self.interaction.response_type is None:
            failed = [c for c in self.interaction.callbacks if c.status >= 400]
            raise AssertionError(f"the bot's callback was refused: {failed}; requests: {self.requests()}")
        return self.interaction.response_type

    async def wait_original(self, predicate: Callable[[Message], Any] | None = None, timeout: float = 5.0) -> Message:
        """The original response once it exists (and satisfies `predicate`, e.g. `lambda m: not m.loading`)."""

        def check() -> Message | None:
            message = self.interaction.original
            if message is not None and (predicate is None or predicate(message)):
                return message
            return None

        return await self.double.wait_for(check, timeout, what=f"the original response of interaction {self.id}")

    async def wait_followup(self, predicate: Callable[[Message], Any] | None = None, timeout: float = 5.0) -> Message:
        def check() -> Message | None:
            return next((m for m in self.interaction.followups if predicate is None or predicate(m)), None)

        return await self.double.wait_for(check, timeout, what=f"a followup of interaction {self.id}")

    async def wait_modal(self, timeout: float = 5.0) -> dict[str, Any]:
        return await self.double.wait_for(lambda: self.interaction.modal, timeout, what="a modal")

    def __repr__(self) -> str:
        return f"<InteractionHandle {self.interaction!r}>"


class DiscordDouble:
    """A loopback Discord: REST v10 under `/api/v10`, the gateway at `/`, attachments under `/cdn`.

    A fresh double has one unboosted guild (`double.guild`) with a text channel (`double.channel`), the bot as a
    member and @everyone allowed to read, send, attach, embed and create threads.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        token: str = DEFAULT_TOKEN,
        bot_name: str = "Sora",
        spec: OpenAPISpec | bool | None = True,
        host: str = "127.0.0.1",
        shards: int = 1,
        max_concurrency: int = 1,
        identify_spacing: float = IDENTIFY_SPACING,
    ) -> None:
        self.clock: Clock = clock or ManualClock()
        self.token = token
        self.host = host
        self.world = World(self.clock, bot_name=bot_name, application_name=bot_name)
        self.spec = OpenAPISpec.load() if spec is True else (spec or None)
        self.limiter = RateLimiter(self.clock)
        self.gateway = Gateway(self.world, resume_url=lambda: self.resume_gateway_url, notify=self._notify)
        self.gateway.token = token
        self.gateway.max_concurrency = max_concurrency
        self.gateway.identify_spacing = identify_spacing
        self.recommended_shards = shards  # the `shards` of `GET /gateway/bot`
        self.rest = RestApi(self, self.limiter, self.spec)
        self.requests: list[RecordedRequest] = []
        self.cdn_requests: list[str] = []
        self.command_syncs: list[tuple[int | None, list[str]]] = []
        self._expected: list[int | str] | None = []
        self._injected_errors: list[list[Any]] = []  # [method, route template, status, times left]
        self._delays: list[Delay] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.guild = self.world.add_guild("Test Guild")
        self.channel = self.guild.text_channels[0]

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def start(self) -> DiscordDouble:
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_route("GET", "/", self.gateway.handle)
        app.router.add_route("GET", "/resume/", self.gateway.handle)
        app.router.add_route("GET", "/cdn/{tail:.*}", self._cdn)
        app.router.add_route("*", "/{tail:.*}", self.rest.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.world.cdn_base = f"{self.base_url}/cdn"
        return self

    async def stop(self) -> None:
        for delay in self._delays:  # held handlers finish now instead of outliving the server
            delay.release()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DiscordDouble:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """For `DISCORD_API_BASE` / `discord.http.Route.BASE`."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """For `DISCORD_GATEWAY_URL` / `DiscordWebSocket.DEFAULT_GATEWAY`."""
        return f"ws://{self.host}:{self.port}/"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/resume/"

    # --- the bot's identity -------------------------------------------------------------------------------------

    @property
    def bot_user(self) -> User:
        return self.world.bot_user

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def message_content_enabled(self) -> bool:
        """The Developer Portal toggle: off → IDENTIFY with the intent closes 4014."""
        return bool(self.world.app_flags & AppFlags.GATEWAY_MESSAGE_CONTENT)

    @message_content_enabled.setter
    def message_content_enabled(self, value: bool) -> None:
        if value:
            self.world.app_flags |= AppFlags.GATEWAY_MESSAGE_CONTENT
        else:
            self.world.app_flags &= ~AppFlags.GATEWAY_MESSAGE_CONTENT

    # --- sharding and identify limits ----------------------------------------------------------------------------

    @property
    def max_concurrency(self) -> int:
        """`session_start_limit.max_concurrency`: IDENTIFY buckets (`shard_id % max_concurrency`) per spacing."""
        return self.gateway.max_concurrency

    @max_concurrency.setter
    def max_concurrency(self, value: int) -> None:
        if value < 1:
            raise ValueError("max_concurrency is at least 1")
        self.gateway.max_concurrency = value

    @property
    def identify_spacing(self) -> float:
        """Seconds (on the double's clock) two IDENTIFYs of one bucket must be apart; Discord's is 5."""
        return self.gateway.identify_spacing

    @identify_spacing.setter
    def identify_spacing(self, value: float) -> None:
        self.gateway.identify_spacing = value

    @property
    def enforce_identify_spacing(self) -> bool:
        """Off: a too-early IDENTIFY is only recorded (`identify_violations`). On: answered with op 9 Invalid
        Session (not resumable), as Discord does, and the client must IDENTIFY again later."""
        return self.gateway.enforce_identify_spacing

    @enforce_identify_spacing.setter
    def enforce_identify_spacing(self, value: bool) -> None:
        self.gateway.enforce_identify_spacing = value

    @property
    def identifies(self) -> list[Identify]:
        """Every IDENTIFY received, oldest first: shard, bucket, when, the gap to the bucket's previous one."""
        return list(self.gateway.identifies)

    @property
    def identify_violations(self) -> list[Identify]:
        """IDENTIFYs that came less than `identify_spacing` after the previous accepted one of their bucket."""
        return self.gateway.identify_violations

    def shard_sessions(self, shard_id: int) -> list[GatewaySession]:
        """Live sessions identified as shard `shard_id` (sessions without a shard count as shard 0 of 1)."""
        return [s for s in self.gateway.live_sessions() if s.shard_id == shard_id]

    # --- world factories -----------------------------------------------------------------------------------------

    def add_user(self, name: str, *, bot: bool = False) -> User:
        return self.world.add_user(name, bot=bot)

    def add_guild(
        self,
        name: str = "Guild",
        *,
        premium_tier: int = 0,
        everyone_permissions: int = DEFAULT_EVERYONE,
        bot_permissions: int | None = None,
        channels: Iterable[str] = ("general",),
        preferred_locale: str = "en-US",
        shard: tuple[int, int] | None = None,
    ) -> Guild:
        """A guild with the bot in it; announced with GUILD_CREATE when the bot is connected. `shard=(i, n)` gives
        it an id that shard i of n owns (`(guild_id >> 22) % n == i`)."""
        return self.world.add_guild(
            name,
            premium_tier=premium_tier,
            everyone_permissions=everyone_permissions,
            bot_permissions=bot_permissions,
            channels=channels,
            preferred_locale=preferred_locale,
            shard=shard,
        )

    def add_role(self, guild: Guild, name: str, permissions: int = 0) -> Role:
        return self.world.add_role(guild, name, permissions)

    def add_member(
        self,
        guild: Guild | None = None,
        name: str | User = "member",
        *,
        roles: Iterable[Role] = (),
        permissions: int | None = None,
    ) -> Member:
        """A member (a new user unless a `User` is given); `permissions` adds a role granting them."""
        return self.world.add_member(guild or self.guild, name, roles=roles, permissions=permissions)

    def add_channel(
        self,
        guild: Guild | None = None,
        name: str = "channel",
        *,
        type: int = ChannelType.GUILD_TEXT,
        overwrites: Iterable[Overwrite] = (),
    ) -> Channel:
        """A channel; `overwrites=[Overwrite.for_role(guild.everyone, deny=Permission.ATTACH_FILES)]` etc."""
        return self.world.add_channel(guild or self.guild, name, type=type, overwrites=overwrites)

    def add_thread(
        self,
        channel: Channel | None = None,
        name: str = "thread",
        *,
        owner: AnyUser | None = None,
        archived: bool = False,
    ) -> Channel:
        return self.world.add_thread(
            channel or self.channel, name, owner=_user(owner) if owner else None, archived=archived
        )

    def archive_thread(self, thread: Channel, *, archived: bool = True, locked: bool = False) -> None:
        self.world.update_thread(thread, archived=archived, locked=locked)

    def set_premium_tier(self, guild: Guild, tier: int) -> None:
        self.world.set_premium_tier(guild, tier)

    def set_overwrites(self, channel: Channel, overwrites: Iterable[Overwrite]) -> None:
        channel.overwrites = list(overwrites)
        self.world.dispatch("CHANNEL_UPDATE", lambda intents: channel.to_payload(), guild=channel.guild)

    def dm_channel(self, user: AnyUser) -> Channel:
        return self.world.dm_channel(_user(user))

    def permissions(self, who: AnyUser, channel: Channel) -> int:
        return self.world.permissions(_user(who).id, channel)

    # --- members acting -----------------------------------------------------------------------------------------

    def _uploads(self, channel: Channel, attachments: Iterable[Any], *, ephemeral: bool = False) -> list[Attachment]:
        stored = []
        for index, item in enumerate(attachments):
            upload = Upload.of(item, default_name=f"file{index}")
            stored.append(
                self.world.store_attachment(
                    channel,
                    upload.filename,
                    upload.data,
                    content_type=upload.content_type or mimetypes.guess_type(upload.filename)[0],
                    ephemeral=ephemeral,
                )
            )
        return stored

    async def send_message(
        self,
        channel: Channel | None = None,
        content: str = "",
        *,
        user: AnyUser,
        attachments: Iterable[Any] = (),
        embeds: list[dict[str, Any]] | None = None,
    ) -> Message:
        """A member posts in a channel (MESSAGE_CREATE). Mention the bot with `double.bot_user.mention`."""
        channel = channel or self.channel
        return self.world.create_message(
            channel, _user(user), content=content, embeds=embeds, attachments=self._uploads(channel, attachments)
        )

    async def reply(
        self,
        message: Message,
        content: str = "",
        *,
        user: AnyUser,
        ping: bool = True,
        attachments: Iterable[Any] = (),
    ) -> Message:
        """A member replies to `message`; `ping=False` is the reply with the mention toggled off."""
        channel = message.channel
        return self.world.create_message(
            channel,
            _user(user),
            content=content,
            attachments=self._uploads(channel, attachments),
            reference=message,
            allowed_mentions=None if ping else {"parse": ["users", "roles", "everyone"], "replied_user": False},
        )

    async def edit_message(self, message: Message, content: str) -> Message:
        """The author edits their message (MESSAGE_UPDATE)."""
        return self.world.edit_message(message, content=content)

    async def delete_message(self, message: Message) -> None:
        """The message disappears (author or moderator deletes it): MESSAGE_DELETE."""
        self.world.delete_message(message)

    # --- interactions -------------------------------------------------------------------------------------------

    def commands(self, guild: Guild | None = None) -> list[Command]:
        """Registered commands: global ones, or those of `guild`."""
        guild_id = guild.id if guild else None
        return [c for c in self.world.commands.values() if c.guild_id == guild_id]

    def find_command(self, name: str, guild: Guild | None) -> Command:
        candidates = [c for c in self.world.commands.values() if c.name == name and c.type == 1]
        for command in candidates:
            if guild is not None and command.guild_id == guild.id:
                return command
        for command in candidates:
            if command.guild_id is None:
                return command
        known = sorted(
            {f"/{c.name}" + (f" (guild {c.guild_id})" if c.guild_id else "") for c in self.world.commands.values()}
        )
        raise LookupError(f"no command /{name} registered for this channel; registered: {known or 'none'}")

    async def slash(
        self,
        name: str,
        *,
        user: AnyUser,
        channel: Channel | None = None,
        locale: str = "en-US",
        age: float = 0.0,
        options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> InteractionHandle:
        """A member runs `/name` (or `"group sub"`) with options by name; attachments as bytes or `Upload`.

        The options are checked against the registered command as Discord's client would (required, choices,
        types). `age` makes the interaction that many seconds old on arrival.
        """
        channel = channel or self.channel
        parts = name.split()
        command = self.find_command(parts[0], channel.guild)
        values = {**(options or {}), **kwargs}
        resolved: dict[str, dict[str, Any]] = {}
        definitions = command.options
        nested_path = parts[1:]
        built = []
        container = built
        for part in nested_path:
            option = next((o for o in definitions if o.get("name") == part and o.get("type") in (1, 2)), None)
            if option is None:
                raise LookupError(f"/{command.name} has no subcommand {part!r}")
            entry: dict[str, Any] = {"name": part, "type": option["type"], "options": []}
            container.append(entry)
            container = entry["options"]
            definitions = option.get("options") or []
        container.extend(self._options(definitions, values, channel, resolved, user))
        data: dict[str, Any] = {"id": str(command.id), "name": command.name, "type": 1}
        if built:
            data["options"] = built
        elif container:
            data["options"] = container
        if resolved:
            data["resolved"] = resolved
        if command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)
        interaction = self.world.create_interaction(
            InteractionType.APPLICATION_COMMAND, user=_user(user), channel=channel, data=data, locale=locale, age=age
        )
        return InteractionHandle(self, interaction)

    async def autocomplete(
        self,
        name: str,
        *,
        user: AnyUser,
        focused: str,
        channel: Channel | None = None,
        locale: str = "en-US",
        **typed: Any,
    ) -> list[dict[str, Any]]:
        """A member is typing option `focused` of `/name`; returns the choices the bot offered (callback type 8).

        `typed` holds what is in each option box so far, sent as Discord does: raw, unvalidated, as strings.
        """
        channel = channel or self.channel
        command = self.find_command(name, channel.guild)
        kinds = {o["name"]: o["type"] for o in command.options}
        if focused not in kinds:
            raise LookupError(f"/{name} has no option {focused!r}")
        options = [
            {"name": key, "type": kinds[key], "value": str(value), **({"focused": True} if key == focused else {})}
            for key, value in typed.items()
        ]
        if focused not in typed:
            options.append({"name": focused, "type": kinds[focused], "value": "", "focused": True})
        data: dict[str, Any] = {"id": str(command.id), "name": command.name, "type": 1, "options": options}
        if command.guild_id is not None:
            data["guild_id"] = str(command.guild_id)
        interaction = self.world.create_interaction(
            InteractionType.AUTOCOMPLETE, user=_user(user), channel=channel, data=data, locale=locale
        )
        handle = InteractionHandle(self, interaction)
        assert await handle.wait_response() == 8
        (callback,) = [c for c in interaction.callbacks if c.status < 400]
        return list((callback.data or {}).get("choices", []))

    def _options(
        self,
        definitions: list[dict[str, Any]],
        values: dict[str, Any],
        channel: Channel,
        resolved: dict[str, dict[str, Any]],
        user: AnyUser,
    ) -> list[dict[str, Any]]:
        out = []
        names = [d.get("name") for d in definitions]
        unknown = [k for k in values if k not in names]
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; the command takes {names}")
        for definition in definitions:
            option_name = definition["name"]
            if option_name not in values or values[option_name] is None:
                if definition.get("required"):
                    raise ValueError(f"option {option_name!r} is required")
                continue
            value = values[option_name]
            kind = definition["type"]
            choices = definition.get("choices") or []
            if kind == 3:
                value = str(value)
                low, high = definition.get("min_length"), definition.get("max_length")
                if (low is not None and len(value) < low) or (high is not None and len(value) > high):
                    raise ValueError(f"option {option_name!r}: length must be within {low}..{high}")
            elif kind == 4:
                value = int(value)
            elif kind == 10:
                value = float(value)
            elif kind == 5:
                value = bool(value)
            elif kind in (6, 9) and isinstance(value, (User, Member)):
                target = _user(value)
                resolved.setdefault("users", {})[str(target.id)] = target.to_payload()
                if channel.guild and target.id in channel.guild.members:
                    member = channel.guild.members[target.id]
                    resolved.setdefault("members", {})[str(target.id)] = {
                        **member.to_payload(with_user=False),
                        "permissions": str(self.world.permissions(target.id, channel)),
                    }
                value = str(target.id)
            elif kind == 7 and isinstance(value, Channel):
                resolved.setdefault("channels", {})[str(value.id)] = {
                    "id": str(value.id),
                    "name": value.name,
                    "type": value.type,
                    "permissions": str(self.world.permissions(_user(user).id, value)),
                    **({"parent_id": str(value.parent_id)} if value.parent_id else {}),
                    **({"thread_metadata": value.to_payload()["thread_metadata"]} if value.is_thread else {}),
                }
                value = str(value.id)
            elif kind in (8, 9) and isinstance(value, Role):
                resolved.setdefault("roles", {})[str(value.id)] = value.to_payload()
                value = str(value.id)
            elif kind == 11:
                upload = Upload.of(value, default_name=option_name)
                attachment = self.world.store_attachment(
                    channel, upload.filename, upload.data, content_type=upload.content_type, ephemeral=True
                )
                resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.to_payload()
                value = str(attachment.id)
            if choices and value not in [c.get("value") for c in choices]:
                raise ValueError(f"option {option_name!r}: {value!r} is not one of the choices {choices}")
            if kind in (4, 10):
                low, high = definition.get("min_value"), definition.get("max_value")
                if (low is not None and value < low) or (high is not None and value > high):
                    raise ValueError(f"option {option_name!r}: {value} is outside {low}..{high}")
            out.append({"name": option_name, "type": kind, "value": value})
        return out

    async def click(self, message: Message, custom_id: str, *, user: AnyUser) -> InteractionHandle:
        """A member presses the button `custom_id` on `message`."""
        component = message.find_component(custom_id)
        if component is None:
            raise LookupError(f"{message!r} has no component {custom_id!r}; it has {message.custom_ids()}")
        if component.get("type") != 2:
            raise ValueError(f"{custom_id!r} is not a button (type {component.get('type')}); use select()")
        if component.get("disabled"):
            raise ValueError(f"button {custom_id!r} is disabled; Discord's client would not send the press")
        data = {"custom_id": custom_id, "component_type": 2}
        if "id" in component:
            data["id"] = component["id"]
        return self._component(message, data, user)

    async def select(self, message: Message, custom_id: str, values: list[str], *, user: AnyUser) -> InteractionHandle:
        """A member picks `values` in the select menu `custom_id` on `message`."""
        component = message.find_component(custom_id)
        if component is None or component.get("type") not in (3, 5, 6, 7, 8):
            raise LookupError(f"{message!r} has no select menu {custom_id!r}")
        if component.get("type") == 3:
            allowed = [o.get("value") for o in component.get("options") or []]
            if any(v not in allowed for v in values):
                raise ValueError(f"{values} are not all options of {custom_id!r}: {allowed}")
        data = {"custom_id": custom_id, "component_type": component["type"], "values": list(values)}
        return self._component(message, data, user)

    def _component(self, message: Message, data: dict[str, Any], user: AnyUser) -> InteractionHandle:
        interaction = self.world.create_interaction(
            InteractionType.MESSAGE_COMPONENT, user=_user(user), channel=message.channel, data=data, message=message
        )
        return InteractionHandle(self, interaction)

    async def submit_modal(
        self,
        source: InteractionHandle | Interaction | Message,
        custom_id: str | None = None,
        values: Mapping[str, str] | None = None,
        *,
        user: AnyUser | None = None,
    ) -> InteractionHandle:
        """Submit the modal the bot opened in answer to `source` (an interaction, or the message whose button opened
        it), with text input values by custom_id."""
        opener = self._modal_opener(source)
        modal = opener.modal
        assert modal is not None
        if custom_id is not None and modal.get("custom_id") != custom_id:
            raise LookupError(f"the open modal is {modal.get('custom_id')!r}, not {custom_id!r}")
        values = dict(values or {})
        components = self._modal_components(modal.get("components") or [], values)
        if values:
            raise TypeError(f"the modal has no text input(s) {sorted(values)}")
        interaction = self.world.create_interaction(
            InteractionType.MODAL_SUBMIT,
            user=_user(user) if user is not None else opener.user,
            channel=opener.channel,
            data={"custom_id": modal.get("custom_id"), "components": components},
            message=opener.message,
        )
        return InteractionHandle(self, interaction)

    def _modal_opener(self, source: InteractionHandle | Interaction | Message) -> Interaction:
        if isinstance(source, InteractionHandle):
            source = source.interaction
        if isinstance(source, Interaction):
            if source.modal is None:
                raise LookupError(f"{source!r} was not answered with a modal")
            return source
        openers = [i for i in self.world.interactions.values() if i.message is source and i.modal is not None]
        if not openers:
            raise LookupError(f"no modal was opened from {source!r}")
        return openers[-1]

    def _modal_components(self, layout: list[dict[str, Any]], values: dict[str, str]) -> list[dict[str, Any]]:
        def answer(text_input: dict[str, Any]) -> dict[str, Any]:
            key = text_input.get("custom_id", "")
            value = values.pop(key, text_input.get("value") or "")
            if text_input.get("required", True) and not value:
                raise ValueError(f"text input {key!r} is required")
            low, high = text_input.get("min_length"), text_input.get("max_length") or 4000
            if len(value) > high or (low is not None and value and len(value) < low):
                raise ValueError(f"text input {key!r}: length {len(value)} is outside {low or 0}..{high}")
            return {"type": 4, "custom_id": key, "value": value}

        out: list[dict[str, Any]] = []
        for component in layout:
            if component.get("type") == 1:
                out.append(
                    {
                        "type": 1,
                        "components": [answer(c) for c in component.get("components") or [] if c.get("type") == 4],
                    }
                )
            elif component.get("type") == 18 and isinstance(component.get("component"), dict):
                inner = component["component"]
                if inner.get("type") == 4:
                    out.append({"type": 18, "component": answer(inner)})
        return out

    # --- reading state -------------------------------------------------------------------------------------------

    def messages(
        self, channel: Channel | None = None, *, include_deleted: bool = False, include_ephemeral: bool = True
    ) -> list[Message]:
        """Messages in `channel`, oldest first, each with `.history` (creation + every edit) and attachments."""
        found = self.world.channel_messages(channel or self.channel, include_deleted=include_deleted)
        return [m for m in found if include_ephemeral or not m.ephemeral]

    def message(self, message_id: int) -> Message:
        return self.world.messages[message_id]

    def threads(self, channel: Channel | None = None) -> list[Channel]:
        parent = channel or self.channel
        return [c for c in self.world.channels.values() if c.is_thread and c.parent_id == parent.id]

    @property
    def interactions(self) -> list[Interaction]:
        return list(self.world.interactions.values())

    @property
    def sessions(self) -> list[GatewaySession]:
        return list(self.gateway.sessions.values())

    @property
    def gateway_log(self) -> list[Frame]:
        return self.gateway.log

    def requests_to(self, method: str, route: str) -> list[RecordedRequest]:
        """Recorded requests for a route template, e.g. `("POST", "/channels/{channel_id}/messages")`."""
        return [r for r in self.requests if r.method == method.upper() and r.route == route]

    @property
    def deduplicated_requests(self) -> list[RecordedRequest]:
        """Message creates that `enforce_nonce` answered with an earlier message instead of creating one."""
        return [r for r in self.requests if r.deduplicated]

    @property
    def unknown_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.kind == "unknown_route"]

    @property
    def invalid_requests(self) -> list[RecordedRequest]:
        """Requests Discord would refuse as malformed: spec/limit violations, empty messages, oversized uploads."""
        return [r for r in self.requests if r.invalid and r.kind != "unknown_route"]

    def rejections(self, code: int | None = None, *, kind: str | None = None) -> list[RecordedRequest]:
        """Every refused request (status ≥ 400), optionally by Discord error code or kind."""
        return [
            r
            for r in self.requests
            if r.status >= 400 and (code is None or r.code == code) and (kind is None or r.kind == kind)
        ]

    # --- expectations and the end-of-test check -----------------------------------------------------------------

    def expect_rejections(self, *what: int | str) -> None:
        """Declare that this test provokes refusals on purpose: error codes (50035, 40005) or kinds
        ("unknown_route", "too_large", ...). Without arguments, every refusal is expected."""
        if not what:
            self._expected = None
        elif self._expected is not None:
            self._expected.extend(what)

    def _is_expected(self, record: RecordedRequest) -> bool:
        if self._expected is None:
            return True
        return record.code in self._expected or record.kind in self._expected

    def problems(self) -> list[RecordedRequest]:
        """Unknown routes and invalid bodies that no `expect_rejections` covers."""
        return [
            r
            for r in self.requests
            if (r.kind == "unknown_route" or r.invalid or r.kind == "double_error") and not self._is_expected(r)
        ]

    def check_clean(self) -> None:
        """Fail loudly if the bot called a route the double does not know or sent a body Discord would refuse."""
        problems = self.problems()
        if problems:
            lines = [f"  {r.method} {r.path} → {r.status} {r.response}" for r in problems]
            raise AssertionError(
                "the bot made requests real Discord would refuse or that the double does not know "
                "(use double.expect_rejections(...) if the test provokes them):\n" + "\n".join(lines)
            )

    # --- time, rate limits, gateway control ---------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the clock forward (the bot shares it): rate-limit windows, the 3 s rule, token expiry."""
        advance = getattr(self.clock, "advance", None)
        if advance is None:
            raise TypeError(f"{type(self.clock).__name__} cannot advance; give the double a FakeClock/ManualClock")
        advance(seconds)
        self._notify()

    def set_rate_limit(self, bucket: str, *, limit: int | None = None, window: float | None = None) -> None:
        """Change a bucket ("message_create", "webhook", "default", ...); e.g. a short window for a fast test."""
        self.limiter.configure(bucket, limit=limit, window=window)

    def inject_rate_limit(
        self, route: str, *, retry_after: float = 0.05, times: int = 1, is_global: bool = False
    ) -> None:
        """Answer the next `times` requests to `route` ("POST /channels/{channel_id}/messages") with a 429."""
        method, template = route.split(" ", 1)
        self.limiter.inject(method, template, retry_after=retry_after, times=times, is_global=is_global)

    def inject_error(self, route: str, *, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests to `route` ("PATCH /webhooks/{webhook_id}/{webhook_token}/messages/
        {message_id}") with a server error (`status` 500/502/503/504), as Discord does in a bad minute."""
        method, template = route.split(" ", 1)
        self._injected_errors.append([method.upper(), template, status, times])

    def _take_injected_error(self, method: str, template: str) -> int | None:
        for entry in self._injected_errors:
            if entry[0] == method and entry[1] == template and entry[3] > 0:
                entry[3] -= 1
                return int(entry[2])
        return None

    def delay(self, route: str, seconds: float | None, *, times: int = 1, after_commit: bool = False) -> Delay:
        """Hold the next `times` requests to `route` ("POST /interactions/{interaction_id}/{interaction_token}/
        callback") for `seconds` real seconds (None: until `release()`), before the double applies them, or with
        `after_commit=True` after it applied them but before it answers. Returns the `Delay`: `await
        delay.wait_held()` → the held request, `delay.holding`, `delay.held`, `delay.release()`."""
        method, template = self._known_route(route)
        delay = Delay(self, method, template, seconds, times=times, after_commit=after_commit)
        self._delays.append(delay)
        return delay

    async def wait_held(self, route: str, timeout: float = 5.0) -> RecordedRequest:
        """The oldest request to `route` that a delay is holding right now, waiting until there is one."""
        method, template = self._known_route(route)

        def held() -> RecordedRequest | None:
            return next((r for d in self._delays if d.matches(method, template) for r in d.holding), None)

        return await self.wait_for(held, timeout, what=f"a held {route}")

    def _take_delay(self, method: str, template: str) -> Delay | None:
        return next((d for d in self._delays if d.matches(method, template) and d.take()), None)

    def _known_route(self, route: str) -> tuple[str, str]:
        method, _, template = route.partition(" ")
        method = method.upper()
        if not any(r.method == method and r.template == template for r in self.rest.routes):
            known = sorted(f"{r.method} {r.template}" for r in self.rest.routes)
            raise ValueError(f"the double serves no route {route!r}; it serves: {known}")
        return method, template

    def force_reconnect(self) -> int:
        """Send op 7 RECONNECT; the client reconnects to the resume URL and RESUMEs."""
        return self.gateway.reconnect()

    def invalidate_session(self, *, resumable: bool = False) -> int:
        """Send op 9 INVALID_SESSION; with `resumable=False` the client must IDENTIFY again."""
        return self.gateway.invalidate(resumable=resumable)

    async def drop_connections(self, code: int = 4000) -> int:
        return await self.gateway.drop(code)

    async def wait_until_ready(self, timeout: float = 5.0, *, shard: int | None = None) -> GatewaySession:
        """Wait for an identified, connected session (READY sent), of shard `shard` if given."""
        return await self.wait_for(
            lambda: next(
                (
                    s
                    for s in self.gateway.live_sessions()
                    if s.ready and s.connected and (shard is None or s.shard_id == shard)
                ),
                None,
            ),
            timeout,
            what="a READY gateway session" + (f" of shard {shard}" if shard is not None else ""),
        )

    # --- waiting ------------------------------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()

    def _record(self, record: RecordedRequest) -> None:
        self.requests.append(record)

    async def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0, *, what: str = "") -> T:
        """Poll `predicate` whenever the double's state changes (and at least every 20 ms) until it returns
        something truthy; raise `TimeoutError` with the recent requests after `timeout` real seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n".join(f"  {r!r}" for r in self.requests[-8:]) or "  (none)"
                raise TimeoutError(
                    f"timed out after {timeout} s waiting for {what or predicate}; last requests:\n{recent}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.02))

    async def wait_for_message(
        self,
        channel: Channel | None = None,
        predicate: Callable[[Message], Any] | None = None,
        timeout: float = 5.0,
        *,
        author: AnyUser | None = None,
    ) -> Message:
        """The first (oldest) message in `channel` matching `predicate` (and `author`), waiting if needed."""
        channel = channel or self.channel
        author_id = _user(author).id if author is not None else None

        def find() -> Message | None:
            for message in self.world.channel_messages(channel):
                if author_id is not None and message.author.id != author_id:
                    continue
                if predicate is None or predicate(message):
                    return message
            return None

        return await self.wait_for(find, timeout, what=f"a message in #{channel.name}")

    async def wait_for_request(
        self, method: str, route: str, predicate: Callable[[RecordedRequest], Any] | None = None, timeout: float = 5.0
    ) -> RecordedRequest:
        def find() -> RecordedRequest | None:
            for record in self.requests_to(method, route):
                if record.status and (predicate is None or predicate(record)):
                    return record
            return None

        return await self.wait_for(find, timeout, what=f"{method} {route}")

    # --- CDN ----------------------------------------------------------------------------------------------------

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self.cdn_requests.append(request.path)
        parts = request.match_info["tail"].split("/")
        attachment = None
        if len(parts) >= 3 and parts[-2].isdigit():
            attachment = self.world.attachments.get(int(parts[-2]))
        if attachment is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(
            body=attachment.data, headers={"Content-Type": attachment.content_type or "application/octet-stream"}
        )


__all__ = ["DEFAULT_TOKEN", "DiscordDouble", "InteractionHandle", "Upload"]
