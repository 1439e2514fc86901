"""REST API v10 as the bot sees it: routing, auth, rate limits, validation, and the stateful handlers.

Pipeline per request: read the body (JSON or multipart with `payload_json` + `files[n]`) → match a route (else
404, recorded as unknown) → auth → rate limit (429 with Discord's headers/body) → upload size (413 40005) →
OpenAPI spec + Discord limits (400 50035 with the error tree) → handler (Discord's own error codes).
Every request is recorded with its response in `double.requests`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from . import rules
from .models import (
    MIB,
    Attachment,
    Callback,
    Channel,
    ChannelType,
    Command,
    Interaction,
    InteractionType,
    Message,
    MessageFlag,
)
from .permissions import Permission
from .ratelimit import RateLimiter
from .spec import OpenAPISpec

if TYPE_CHECKING:
    from .double import DiscordDouble

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
CALLBACK_WINDOW = 3.0  # seconds to acknowledge an interaction
TOKEN_LIFETIME = 15 * 60  # seconds an interaction token works for webhooks
JSON_HEADERS = {"Content-Type": "application/json", "Via": "1.1 google"}

# Rejections that mean the bot sent something Discord would refuse: they fail the test unless expected.
INVALID_KINDS = frozenset({"unknown_route", "invalid_body", "invalid_json", "empty_message", "too_large"})


# --- records and errors -------------------------------------------------------------------------------------------


@dataclass
class UploadedFile:
    field: str
    filename: str
    content_type: str | None
    data: bytes

    @property
    def index(self) -> int | None:
        match = re.fullmatch(r"files\[(\d+)\]", self.field)
        return int(match.group(1)) if match else None

    @property
    def size(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"<UploadedFile {self.field} {self.filename} {self.size} bytes>"


@dataclass(eq=False)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    at: float
    monotonic: float
    body: Any = None
    files: list[UploadedFile] = field(default_factory=list)
    multipart: bool = False
    authorized: bool = False
    route: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    status: int = 0
    response: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    kind: str | None = None  # why it was rejected: unknown_route, invalid_body, too_large, forbidden, ...
    issues: list[str] = field(default_factory=list)
    expected: bool = False

    @property
    def key(self) -> str:
        return f"{self.method} {self.route or self.path}"

    @property
    def code(self) -> int | None:
        return self.response.get("code") if isinstance(self.response, dict) else None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def invalid(self) -> bool:
        return self.kind in INVALID_KINDS

    def __repr__(self) -> str:
        code = f" code={self.code}" if self.code is not None else ""
        extra = f" {self.issues}" if self.issues else ""
        return f"<{self.method} {self.path} → {self.status}{code}{extra}>"


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        kind: str = "error",
        errors: dict[str, Any] | None = None,
        issues: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.kind = kind
        self.errors = errors
        self.issues = issues or []

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def not_found() -> ApiError:
    return ApiError(404, 0, "404: Not Found", kind="unknown_route")


def unknown(what: str, code: int) -> ApiError:
    return ApiError(404, code, f"Unknown {what}", kind="unknown_entity")


def missing_permissions(*names: str) -> ApiError:
    return ApiError(403, 50013, "Missing Permissions", kind="forbidden", issues=list(names))


def missing_access() -> ApiError:
    return ApiError(403, 50001, "Missing Access", kind="forbidden")


def invalid_form(issues: list[Any]) -> ApiError:
    return ApiError(
        400,
        50035,
        "Invalid Form Body",
        kind="invalid_body",
        errors=rules.issues_to_tree(issues),
        issues=[str(i) for i in issues],
    )


# --- routing ------------------------------------------------------------------------------------------------------

Handler = Callable[["Ctx"], Awaitable[tuple[int, Any]]]
Checks = Callable[[Any, "Ctx"], list[rules.Issue]]


@dataclass(frozen=True)
class RouteDef:
    method: str
    template: str
    handler: Handler
    bucket: str = "default"
    major: str | None = None  # "channel_id", "guild_id", "webhook" (id + token)
    auth: bool = True  # needs the bot token
    counts_global: bool = True
    checks: Checks | None = None

    @property
    def segments(self) -> list[str]:
        return self.template.strip("/").split("/")

    def match(self, parts: list[str]) -> dict[str, str] | None:
        segments = self.segments
        if len(segments) != len(parts):
            return None
        params: dict[str, str] = {}
        for segment, part in zip(segments, parts, strict=True):
            if segment.startswith("{"):
                if not part:
                    return None
                params[segment[1:-1]] = part
            elif segment != part:
                return None
        return params

    def literal_count(self) -> int:
        return sum(1 for s in self.segments if not s.startswith("{"))


@dataclass
class Ctx:
    request: web.Request
    record: RecordedRequest
    route: RouteDef
    params: dict[str, str]
    body: Any
    files: list[UploadedFile]

    @property
    def query(self) -> dict[str, str]:
        return self.record.query

    def int_param(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise not_found() from None

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")


# --- the API ------------------------------------------------------------------------------------------------------


class RestApi:
    def __init__(self, double: DiscordDouble, limiter: RateLimiter, spec: OpenAPISpec | None) -> None:
        self.double = double
        self.world = double.world
        self.clock = double.clock
        self.limiter = limiter
        self.spec = spec
        self.routes: list[RouteDef] = self._routes()

    # --- plumbing -----------------------------------------------------------------------------------------------

    def find(self, method: str, path: str) -> tuple[RouteDef | None, dict[str, str], bool]:
        parts = path.strip("/").split("/")
        best: tuple[RouteDef, dict[str, str]] | None = None
        path_known = False
        for route in self.routes:
            params = route.match(parts)
            if params is None:
                continue
            path_known = True
            if route.method != method:
                continue
            if best is None or route.literal_count() > best[0].literal_count():
                best = (route, params)
        if best is None:
            return None, {}, path_known
        return best[0], best[1], path_known

    async def _read_body(self, request: web.Request, record: RecordedRequest) -> None:
        content_type = request.content_type
        if content_type.startswith("multipart/"):
            record.multipart = True
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader):
                    continue
                name = part.name or ""
                data = await part.read(decode=False)
                filename = part.filename
                if name == "payload_json":
                    try:
                        record.body = json.loads(bytes(data).decode("utf-8"))
                    except ValueError:
                        record.kind = "invalid_json"
                elif filename is not None:
                    part_type = part.headers.get("Content-Type")
                    record.files.append(UploadedFile(name, filename, part_type, bytes(data)))
        else:
            raw = await request.read()
            if raw:
                try:
                    record.body = json.loads(raw.decode("utf-8"))
                except ValueError:
                    record.kind = "invalid_json"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            at=self.clock.time(),
            monotonic=self.clock.monotonic(),
        )
        await self._read_body(request, record)
        self.double._record(record)
        headers = dict(JSON_HEADERS)
        status, body = 500, None
        try:
            status, body = await self._process(request, record, path, headers)
        except ApiError as error:
            status, body = error.status, error.body()
            record.kind = error.kind
            record.issues = error.issues
        except Exception as error:  # a bug in the double: answer 500 and say so loudly
            log.exception("discord double failed on %s %s", request.method, path)
            status, body = 500, {"message": f"double error: {error!r}", "code": 0}
            record.kind = "double_error"
        record.status, record.response, record.headers = status, body, headers
        self.double._notify()
        if status == 204 or body is None:
            headers.pop("Content-Type", None)
            return web.Response(status=status if body is not None or status == 204 else 204, headers=headers)
        return web.Response(status=status, body=json.dumps(body).encode(), headers=headers)

    async def _process(
        self, request: web.Request, record: RecordedRequest, path: str, headers: dict[str, str]
    ) -> tuple[int, Any]:
        if not path.startswith(API_PREFIX + "/"):
            raise not_found()
        sub = path[len(API_PREFIX) :]
        route, params, path_known = self.find(request.method, sub)
        if route is None:
            if path_known:
                raise ApiError(405, 0, "405: Method Not Allowed", kind="unknown_route")
            raise not_found()
        record.route, record.params = route.template, params
        authorization = request.headers.get("Authorization")
        record.authorized = authorization == f"Bot {self.double.token}"
        if route.auth and not record.authorized:
            raise ApiError(401, 0, "401: Unauthorized", kind="unauthorized")
        if record.kind == "invalid_json":
            raise ApiError(400, 50109, "The request body contains invalid JSON.", kind="invalid_json")

        major = ""
        if route.major == "webhook":
            major = f"{params.get('webhook_id')}:{params.get('webhook_token')}"
        elif route.major:
            major = params.get(route.major, "")
        decision = self.limiter.check(
            request.method, route.template, route.bucket, major, counts_global=route.counts_global and route.auth
        )
        headers.update(decision.headers)
        if not decision.allowed:
            record.kind = "rate_limited"
            return 429, decision.body()

        ctx = Ctx(request=request, record=record, route=route, params=params, body=record.body, files=record.files)
        if record.files:
            limit = self._upload_limit(ctx)
            if any(f.size > limit for f in record.files):
                raise ApiError(
                    413,
                    40005,
                    "Request entity too large",
                    kind="too_large",
                    issues=[f"{f.filename}: {f.size} bytes > {limit} bytes" for f in record.files if f.size > limit],
                )
        if record.body is not None:
            issues: list[Any] = []
            if self.spec is not None:
                issues += self.spec.validate(request.method, route.template, record.body)
            if route.checks is not None:
                issues += route.checks(record.body, ctx)
            if issues:
                raise invalid_form(issues)
        return await route.handler(ctx)

    def _upload_limit(self, ctx: Ctx) -> int:
        if "interaction_token" in ctx.params or "webhook_token" in ctx.params:
            token = ctx.params.get("interaction_token") or ctx.params.get("webhook_token") or ""
            interaction = self.world.interactions_by_token.get(token)
            if interaction is not None:
                return interaction.attachment_size_limit
        channel = self.world.channels.get(int(ctx.params.get("channel_id", "0") or 0))
        if channel is not None and channel.guild is not None:
            return channel.guild.filesize_limit
        return 10 * MIB

    # --- route table --------------------------------------------------------------------------------------------

    def _routes(self) -> list[RouteDef]:
        message_checks: Checks = lambda body, ctx: rules.check_message(body) if isinstance(body, dict) else []  # noqa: E731
        r = RouteDef
        return [
            r("GET", "/gateway", self.get_gateway, auth=False),
            r("GET", "/gateway/bot", self.get_gateway_bot),
            r("GET", "/users/@me", self.get_me),
            r("GET", "/users/{user_id}", self.get_user),
            r("POST", "/users/@me/channels", self.create_dm),
            r("GET", "/oauth2/applications/@me", self.get_application),
            r("GET", "/applications/@me", self.get_application),
            r("GET", "/applications/{application_id}/commands", self.list_commands),
            r(
                "PUT",
                "/applications/{application_id}/commands",
                self.put_commands,
                bucket="commands",
                checks=lambda body, ctx: rules.check_commands(body or []),
            ),
            r(
                "POST",
                "/applications/{application_id}/commands",
                self.post_command,
                bucket="commands",
                checks=lambda body, ctx: rules.check_command(body),
            ),
            r("GET", "/applications/{application_id}/commands/{command_id}", self.get_command),
            r("PATCH", "/applications/{application_id}/commands/{command_id}", self.patch_command, bucket="commands"),
            r("DELETE", "/applications/{application_id}/commands/{command_id}", self.delete_command),
            r("GET", "/applications/{application_id}/guilds/{guild_id}/commands", self.list_commands, major="guild_id"),
            r(
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self.put_commands,
                bucket="commands",
                major="guild_id",
                checks=lambda body, ctx: rules.check_commands(body or []),
            ),
            r(
                "POST",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self.post_command,
                bucket="commands",
                major="guild_id",
                checks=lambda body, ctx: rules.check_command(body),
            ),
            r(
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self.get_command,
                major="guild_id",
            ),
            r(
                "PATCH",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self.patch_command,
                bucket="commands",
                major="guild_id",
            ),
            r(
                "DELETE",
                "/applications/{application_id}/guilds/{guild_id}/commands/{command_id}",
                self.delete_command,
                major="guild_id",
            ),
            r(
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands/permissions",
                self.command_permissions,
                major="guild_id",
            ),
            r(
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                self.interaction_callback,
                bucket="interaction_callback",
                auth=False,
                counts_global=False,
                checks=self._callback_checks,
            ),
            r(
                "GET",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self.get_webhook_message,
                bucket="webhook",
                major="webhook",
                auth=False,
                counts_global=False,
            ),
            r(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self.edit_webhook_message,
                bucket="webhook",
                major="webhook",
                auth=False,
                counts_global=False,
                checks=message_checks,
            ),
            r(
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
                self.delete_webhook_message,
                bucket="webhook",
                major="webhook",
                auth=False,
                counts_global=False,
            ),
            r(
                "GET",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self.get_webhook_message,
                bucket="webhook",
                major="webhook",
                auth=False,
                counts_global=False,
            ),
            r(
                "PATCH",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self.edit_webhook_message,
                bucket="webhook",
                major="webhook",
                auth=False,
                counts_global=False,
                checks=message_checks,
            ),
            r(
                "DELETE",
                "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
                self.delete_webhook_message,
                bucket="webhook",
                major="webhook",
                auth=False,
                counts_global=False,
            ),
            r(
                "POST",
                "/webhooks/{webhook_id}/{webhook_token}",
                self.execute_webhook,
                bucket="webhook",
                major="webhook",
                auth=False,
                counts_global=False,
                checks=message_checks,
            ),
            r("GET", "/channels/{channel_id}", self.get_channel, major="channel_id"),
            r("PATCH", "/channels/{channel_id}", self.patch_channel, major="channel_id"),
            r("GET", "/channels/{channel_id}/messages", self.list_messages, major="channel_id"),
            r(
                "POST",
                "/channels/{channel_id}/messages",
                self.create_message,
                bucket="message_create",
                major="channel_id",
                checks=message_checks,
            ),
            r("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message, major="channel_id"),
            r(
                "PATCH",
                "/channels/{channel_id}/messages/{message_id}",
                self.edit_message,
                bucket="message_create",
                major="channel_id",
                checks=message_checks,
            ),
            r(
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}",
                self.delete_message,
                bucket="message_delete",
                major="channel_id",
            ),
            r(
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                self.thread_from_message,
                bucket="thread_create",
                major="channel_id",
            ),
            r(
                "POST",
                "/channels/{channel_id}/threads",
                self.thread_without_message,
                bucket="thread_create",
                major="channel_id",
            ),
            r("POST", "/channels/{channel_id}/typing", self.typing, major="channel_id"),
            r("PUT", "/channels/{channel_id}/thread-members/@me", self.join_thread, major="channel_id"),
            r("DELETE", "/channels/{channel_id}/thread-members/@me", self.leave_thread, major="channel_id"),
            r(
                "PUT",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
                self.add_reaction,
                major="channel_id",
            ),
            r(
                "DELETE",
                "/channels/{channel_id}/messages/{message_id}/reactions/{emoji_name}/@me",
                self.remove_reaction,
                major="channel_id",
            ),
            r("GET", "/guilds/{guild_id}", self.get_guild, major="guild_id"),
            r("GET", "/guilds/{guild_id}/channels", self.get_guild_channels, major="guild_id"),
            r("GET", "/guilds/{guild_id}/roles", self.get_roles, major="guild_id"),
            r("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member, major="guild_id"),
            r("GET", "/guilds/{guild_id}/threads/active", self.get_active_threads, major="guild_id"),
        ]

    # --- helpers ------------------------------------------------------------------------------------------------

    def _channel(self, ctx: Ctx, *, view: bool = True) -> Channel:
        channel = self.world.channels.get(ctx.int_param("channel_id"))
        if channel is None:
            raise unknown("Channel", 10003)
        visible = self.world.permissions(self.world.bot_user.id, channel) & Permission.VIEW_CHANNEL
        if view and channel.guild is not None and not visible:
            raise missing_access()
        return channel

    def _message(self, channel: Channel, message_id: int) -> Message:
        message = self.world.messages.get(message_id)
        if message is None or message.deleted or message.channel is not channel or message.ephemeral:
            raise unknown("Message", 10008)
        return message

    def _perms(self, channel: Channel) -> int:
        return self.world.permissions(self.world.bot_user.id, channel)

    def _require(self, channel: Channel, *needed: Permission) -> None:
        granted = self._perms(channel)
        missing = [p.name or str(p) for p in needed if not granted & p]
        if missing:
            raise missing_permissions(*missing)

    def _check_send(self, channel: Channel, body: dict[str, Any], files: list[UploadedFile]) -> None:
        """Bot-token sends: thread state, then Send (in Threads), Attach Files, Embed Links."""
        if channel.guild is None:
            return
        needed = [Permission.SEND_MESSAGES_IN_THREADS if channel.is_thread else Permission.SEND_MESSAGES]
        if files:
            needed.append(Permission.ATTACH_FILES)
        if body.get("embeds"):
            needed.append(Permission.EMBED_LINKS)
        self._require(channel, *needed)
        if channel.is_thread and (channel.archived or channel.locked):
            raise ApiError(400, 50083, "Thread is archived", kind="archived_thread")

    def _attachments(
        self,
        channel: Channel,
        body: dict[str, Any],
        files: list[UploadedFile],
        existing: list[Attachment] | None,
        *,
        ephemeral: bool = False,
    ) -> list[Attachment] | None:
        """The attachment list after this request; None when the request leaves attachments alone (an edit)."""
        by_index = {f.index: f for f in files if f.index is not None}
        unindexed = [f for f in files if f.index is None]
        current = {a.id: a for a in existing or []}
        wanted = body.get("attachments")
        if wanted is None:
            if not files:
                return None
            kept = list(existing or [])
            return kept + [self._store(channel, f, None, ephemeral) for f in files]
        result: list[Attachment] = []
        used: set[int] = set()
        issues = []
        for position, item in enumerate(wanted):
            ref = int(item.get("id", -1))
            if ref in by_index and ref not in used:
                used.add(ref)
                result.append(self._store(channel, by_index[ref], item, ephemeral))
            elif ref in current:
                result.append(current[ref])
            else:
                issues.append(
                    rules.Issue(("attachments", position, "id"), "ATTACHMENT_NOT_FOUND", "Unknown attachment")
                )
        if issues:
            raise invalid_form(issues)
        result += [self._store(channel, f, None, ephemeral) for i, f in by_index.items() if i not in used]
        result += [self._store(channel, f, None, ephemeral) for f in unindexed]
        return result

    def _store(
        self, channel: Channel, upload: UploadedFile, item: dict[str, Any] | None, ephemeral: bool
    ) -> Attachment:
        item = item or {}
        filename = item.get("filename") or upload.filename
        content_type = upload.content_type if upload.content_type not in (None, "application/octet-stream") else None
        return self.world.store_attachment(
            channel,
            filename,
            upload.data,
            content_type=content_type,
            description=item.get("description"),
            ephemeral=ephemeral,
        )

    def _message_fields(self, body: dict[str, Any]) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for key in ("content", "embeds", "components"):
            if key in body:
                value = body[key]
                fields[key] = value if value is not None else ("" if key == "content" else [])
        return fields

    # --- gateway, users, application -----------------------------------------------------------------------------

    async def get_gateway(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, {"url": self.double.gateway_url.rstrip("/")}

    async def get_gateway_bot(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, {
            "url": self.double.gateway_url.rstrip("/"),
            "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1},
        }

    async def get_me(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, {**self.world.bot_user.to_payload(), "verified": True, "mfa_enabled": False, "flags": 0}

    async def get_user(self, ctx: Ctx) -> tuple[int, Any]:
        user = self.world.users.get(ctx.int_param("user_id"))
        if user is None:
            raise unknown("User", 10013)
        return 200, user.to_payload()

    async def create_dm(self, ctx: Ctx) -> tuple[int, Any]:
        user = self.world.users.get(int((ctx.body or {}).get("recipient_id") or 0))
        if user is None:
            raise unknown("User", 10013)
        return 200, self.world.dm_channel(user).to_payload()

    async def get_application(self, ctx: Ctx) -> tuple[int, Any]:
        world = self.world
        return 200, {
            "id": str(world.application_id),
            "name": world.application_name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "flags": world.app_flags,
            "owner": world.owner.to_payload(),
            "team": None,
            "bot": world.bot_user.to_payload(),
            "install_params": {"scopes": ["bot", "applications.commands"], "permissions": "0"},
            "integration_types_config": {"0": {}},
            "approximate_guild_count": len(world.guilds),
            "redirect_uris": [],
            "interactions_endpoint_url": None,
        }

    # --- application commands ------------------------------------------------------------------------------------

    def _command_scope(self, ctx: Ctx) -> int | None:
        if ctx.int_param("application_id") != self.world.application_id:
            raise ApiError(403, 50001, "Missing Access", kind="forbidden")
        if "guild_id" not in ctx.params:
            return None
        guild_id = ctx.int_param("guild_id")
        if guild_id not in self.world.guilds:
            raise ApiError(403, 50001, "Missing Access", kind="forbidden")
        return guild_id

    def _commands_in(self, guild_id: int | None) -> list[Command]:
        return [c for c in self.world.commands.values() if c.guild_id == guild_id]

    def _upsert(self, guild_id: int | None, payload: dict[str, Any], existing: list[Command]) -> Command:
        kind = payload.get("type") or 1
        same = next((c for c in existing if c.name == payload["name"] and c.type == kind), None)
        if same is not None:
            same.payload = dict(payload)
            same.version = self.world.ids.next()
            return same
        command = Command(
            id=self.world.ids.next(),
            application_id=self.world.application_id,
            guild_id=guild_id,
            name=payload["name"],
            type=kind,
            payload=dict(payload),
            version=self.world.ids.next(),
        )
        self.world.commands[command.id] = command
        return command

    async def list_commands(self, ctx: Ctx) -> tuple[int, Any]:
        guild_id = self._command_scope(ctx)
        return 200, [c.to_payload() for c in self._commands_in(guild_id)]

    async def put_commands(self, ctx: Ctx) -> tuple[int, Any]:
        guild_id = self._command_scope(ctx)
        existing = self._commands_in(guild_id)
        kept = [self._upsert(guild_id, payload, existing) for payload in ctx.body or []]
        for command in existing:
            if command not in kept:
                del self.world.commands[command.id]
        self.double.command_syncs.append((guild_id, [c.name for c in kept]))
        return 200, [c.to_payload() for c in kept]

    async def post_command(self, ctx: Ctx) -> tuple[int, Any]:
        guild_id = self._command_scope(ctx)
        existing = self._commands_in(guild_id)
        is_new = not any(c.name == ctx.body.get("name") for c in existing)
        command = self._upsert(guild_id, ctx.body, existing)
        return (201 if is_new else 200), command.to_payload()

    def _command(self, ctx: Ctx) -> Command:
        guild_id = self._command_scope(ctx)
        command = self.world.commands.get(ctx.int_param("command_id"))
        if command is None or command.guild_id != guild_id:
            raise unknown("application command", 10063)
        return command

    async def get_command(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, self._command(ctx).to_payload()

    async def patch_command(self, ctx: Ctx) -> tuple[int, Any]:
        command = self._command(ctx)
        command.payload.update(ctx.body or {})
        command.name = command.payload.get("name", command.name)
        return 200, command.to_payload()

    async def delete_command(self, ctx: Ctx) -> tuple[int, Any]:
        command = self._command(ctx)
        del self.world.commands[command.id]
        return 204, None

    async def command_permissions(self, ctx: Ctx) -> tuple[int, Any]:
        self._command_scope(ctx)
        return 200, []

    # --- interactions ------------------------------------------------------------------------------------------

    def _callback_checks(self, body: Any, ctx: Ctx) -> list[rules.Issue]:
        if not isinstance(body, dict):
            return []
        data = body.get("data")
        if not isinstance(data, dict):
            return []
        if body.get("type") == 9:
            return rules.check_modal(data)
        if body.get("type") in (4, 7):
            return rules.check_message(data, base=("data",))
        return []

    async def interaction_callback(self, ctx: Ctx) -> tuple[int, Any]:
        world = self.world
        interaction = world.interactions.get(ctx.int_param("interaction_id"))
        if interaction is None or interaction.token != ctx.params["interaction_token"]:
            raise ApiError(404, 10062, "Unknown interaction", kind="unknown_interaction")
        body = ctx.body if isinstance(ctx.body, dict) else {}
        kind = body.get("type")
        data = body.get("data") if isinstance(body.get("data"), dict) else None
        callback = Callback(type=kind, data=data, at=self.clock.time(), status=0)  # type: ignore[arg-type]
        interaction.callbacks.append(callback)
        elapsed = self.clock.monotonic() - interaction.created_monotonic
        if elapsed > CALLBACK_WINDOW:
            callback.status = 404
            raise ApiError(
                404,
                10062,
                "Unknown interaction",
                kind="late_acknowledgement",
                issues=[f"acknowledged {elapsed:.2f} s after creation (limit {CALLBACK_WINDOW:.0f} s)"],
            )
        if interaction.acknowledged:
            callback.status = 400
            raise ApiError(400, 40060, "Interaction has already been acknowledged.", kind="already_acknowledged")
        allowed = {
            InteractionType.APPLICATION_COMMAND: {4, 5, 9},
            InteractionType.MESSAGE_COMPONENT: {4, 5, 6, 7, 9},
            InteractionType.MODAL_SUBMIT: {4, 5, 6, 7} if interaction.message is not None else {4, 5},
            InteractionType.AUTOCOMPLETE: {8},
        }.get(interaction.type, set())
        if kind not in allowed:
            callback.status = 400
            raise invalid_form(
                [
                    rules.Issue(
                        ("type",),
                        "INTERACTION_CALLBACK_TYPE_INVALID",
                        f"Callback type {kind} is not valid for this interaction",
                    )
                ]
            )
        channel = interaction.channel
        message: Message | None = None
        if kind == 4:
            assert data is not None or ctx.files
            data = data or {}
            if rules.is_empty_message(data, files=len(ctx.files)):
                raise ApiError(400, 50006, "Cannot send an empty message", kind="empty_message")
            flags = (data.get("flags") or 0) & (
                MessageFlag.EPHEMERAL
                | MessageFlag.SUPPRESS_EMBEDS
                | MessageFlag.SUPPRESS_NOTIFICATIONS
                | MessageFlag.IS_COMPONENTS_V2
            )
            attachments = self._attachments(
                channel, data, ctx.files, None, ephemeral=bool(flags & MessageFlag.EPHEMERAL)
            )
            message = world.create_message(
                channel,
                world.bot_user,
                content=data.get("content") or "",
                embeds=data.get("embeds"),
                components=data.get("components"),
                attachments=attachments,
                flags=flags,
                allowed_mentions=data.get("allowed_mentions"),
                webhook_id=world.application_id,
                interaction=interaction,
                type=world.interaction_message_type(interaction),
                tts=bool(data.get("tts")),
            )
            interaction.original = message
        elif kind == 5:
            message = world.create_message(
                channel,
                world.bot_user,
                flags=world.loading_flags(data),
                webhook_id=world.application_id,
                interaction=interaction,
                type=world.interaction_message_type(interaction),
            )
            interaction.original = message
        elif kind == 6:
            interaction.original = interaction.message
        elif kind == 7:
            target = interaction.message
            assert target is not None
            data = data or {}
            attachments = self._attachments(channel, data, ctx.files, target.attachments)
            message = world.edit_message(
                target,
                **self._message_fields(data),
                attachments=attachments,
                allowed_mentions=data.get("allowed_mentions"),
            )
            interaction.original = message
        elif kind == 9:
            interaction.modal = data
        interaction.response_type = kind
        callback.status = 200 if ctx.flag("with_response") else 204
        if not ctx.flag("with_response"):
            return 204, None
        response: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.type,
                "activity_instance_id": None,
                "response_message_id": str(message.id) if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message.ephemeral),
            },
            "resource": {"type": kind},
        }
        if message is not None and kind in (4, 5, 7):
            response["resource"]["message"] = message.to_payload()
        return 200, response

    def _webhook_interaction(self, ctx: Ctx) -> Interaction:
        interaction = self.world.interactions_by_token.get(ctx.params["webhook_token"])
        if interaction is None or ctx.int_param("webhook_id") != self.world.application_id:
            raise ApiError(404, 10015, "Unknown Webhook", kind="unknown_webhook")
        age = self.clock.monotonic() - interaction.created_monotonic
        if age > TOKEN_LIFETIME:
            raise ApiError(
                401,
                50027,
                "Invalid Webhook Token",
                kind="expired_token",
                issues=[f"token used {age:.0f} s after the interaction (limit {TOKEN_LIFETIME} s)"],
            )
        return interaction

    def _webhook_message(self, ctx: Ctx, interaction: Interaction) -> Message:
        if ctx.route.template.endswith("@original"):
            message = interaction.original
        else:
            message_id = ctx.int_param("message_id")
            candidates = [interaction.original, *interaction.followups]
            message = next((m for m in candidates if m is not None and m.id == message_id), None)
        if message is None or message.deleted:
            raise unknown("Message", 10008)
        return message

    async def get_webhook_message(self, ctx: Ctx) -> tuple[int, Any]:
        interaction = self._webhook_interaction(ctx)
        return 200, self._webhook_message(ctx, interaction).to_payload()

    async def edit_webhook_message(self, ctx: Ctx) -> tuple[int, Any]:
        interaction = self._webhook_interaction(ctx)
        message = self._webhook_message(ctx, interaction)
        body = ctx.body if isinstance(ctx.body, dict) else {}
        attachments = self._attachments(
            message.channel, body, ctx.files, message.attachments, ephemeral=message.ephemeral
        )
        flags = message.flags & ~MessageFlag.LOADING
        if "flags" in body and body["flags"] is not None:
            flags = (flags & ~MessageFlag.SUPPRESS_EMBEDS) | (body["flags"] & MessageFlag.SUPPRESS_EMBEDS)
        self.world.edit_message(
            message,
            **self._message_fields(body),
            attachments=attachments,
            flags=flags,
            allowed_mentions=body.get("allowed_mentions"),
        )
        return 200, message.to_payload()

    async def delete_webhook_message(self, ctx: Ctx) -> tuple[int, Any]:
        interaction = self._webhook_interaction(ctx)
        self.world.delete_message(self._webhook_message(ctx, interaction))
        return 204, None

    async def execute_webhook(self, ctx: Ctx) -> tuple[int, Any]:
        interaction = self._webhook_interaction(ctx)
        if not interaction.acknowledged:
            raise ApiError(
                404,
                10015,
                "Unknown Webhook",
                kind="unknown_webhook",
                issues=["followup before the interaction was acknowledged"],
            )
        body = ctx.body if isinstance(ctx.body, dict) else {}
        if rules.is_empty_message(body, files=len(ctx.files)):
            raise ApiError(400, 50006, "Cannot send an empty message", kind="empty_message")
        world = self.world
        original = interaction.original
        if original is not None and original.loading and not original.deleted:
            # The first followup after a "thinking" defer replaces the loading message, as on Discord.
            attachments = self._attachments(original.channel, body, ctx.files, [], ephemeral=original.ephemeral)
            message = world.edit_message(
                original,
                **self._message_fields(body),
                attachments=attachments,
                flags=original.flags & ~MessageFlag.LOADING,
                allowed_mentions=body.get("allowed_mentions"),
            )
        else:
            channel = interaction.channel
            if ctx.query.get("thread_id"):
                channel = world.channels.get(int(ctx.query["thread_id"])) or channel
            flags = (body.get("flags") or 0) & (
                MessageFlag.EPHEMERAL
                | MessageFlag.SUPPRESS_EMBEDS
                | MessageFlag.SUPPRESS_NOTIFICATIONS
                | MessageFlag.IS_COMPONENTS_V2
            )
            attachments = self._attachments(
                channel, body, ctx.files, None, ephemeral=bool(flags & MessageFlag.EPHEMERAL)
            )
            message = world.create_message(
                channel,
                world.bot_user,
                content=body.get("content") or "",
                embeds=body.get("embeds"),
                components=body.get("components"),
                attachments=attachments,
                flags=flags,
                allowed_mentions=body.get("allowed_mentions"),
                webhook_id=world.application_id,
                interaction=interaction,
                type=world.interaction_message_type(interaction),
                tts=bool(body.get("tts")),
            )
            interaction.followups.append(message)
        if not ctx.flag("wait"):
            return 204, None
        return 200, message.to_payload()

    # --- channels and messages ---------------------------------------------------------------------------------

    async def get_channel(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, self._channel(ctx).to_payload()

    async def patch_channel(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        body = ctx.body if isinstance(ctx.body, dict) else {}
        if channel.is_thread:
            if channel.owner_id != self.world.bot_user.id or "locked" in body:
                self._require(channel, Permission.MANAGE_THREADS)
            changes = {k: body[k] for k in ("name", "archived", "locked", "auto_archive_duration") if k in body}
            self.world.update_thread(channel, **changes)
        else:
            self._require(channel, Permission.MANAGE_CHANNELS)
            for key in ("name", "topic", "nsfw"):
                if key in body:
                    setattr(channel, key, body[key])
            self.world.dispatch("CHANNEL_UPDATE", lambda intents: channel.to_payload())
        return 200, channel.to_payload()

    async def list_messages(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        if channel.guild is not None:
            self._require(channel, Permission.READ_MESSAGE_HISTORY)
        limit = max(1, min(100, int(ctx.query.get("limit", "50"))))
        messages = [m for m in self.world.channel_messages(channel) if not m.ephemeral]
        messages.sort(key=lambda m: m.id)
        if "before" in ctx.query:
            messages = [m for m in messages if m.id < int(ctx.query["before"])][-limit:]
        elif "after" in ctx.query:
            messages = [m for m in messages if m.id > int(ctx.query["after"])][:limit]
        elif "around" in ctx.query:
            pivot = int(ctx.query["around"])
            older = [m for m in messages if m.id < pivot][-(limit // 2) :] if limit > 1 else []
            newer = [m for m in messages if m.id >= pivot][: limit - len(older)]
            messages = older + newer
        else:
            messages = messages[-limit:]
        intents = self.world.rest_intents()
        return 200, [self.world.message_payload(m, intents) for m in reversed(messages)]

    async def get_message(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        if channel.guild is not None:
            self._require(channel, Permission.READ_MESSAGE_HISTORY)
        message = self._message(channel, ctx.int_param("message_id"))
        return 200, self.world.message_payload(message, self.world.rest_intents())

    async def create_message(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        body = ctx.body if isinstance(ctx.body, dict) else {}
        if channel.type in (ChannelType.GUILD_CATEGORY, ChannelType.GUILD_FORUM):
            raise ApiError(400, 50008, "Cannot send messages in a non-text channel", kind="wrong_channel_type")
        self._check_send(channel, body, ctx.files)
        if rules.is_empty_message(body, files=len(ctx.files)):
            raise ApiError(400, 50006, "Cannot send an empty message", kind="empty_message")
        reference = None
        ref = body.get("message_reference")
        if isinstance(ref, dict) and ref.get("message_id") is not None:
            target = self.world.messages.get(int(ref["message_id"]))
            ref_channel = int(ref.get("channel_id") or channel.id)
            if target is None or target.deleted or target.channel.id != ref_channel:
                if ref.get("fail_if_not_exists", True):
                    raise invalid_form(
                        [rules.Issue(("message_reference",), "REPLIES_UNKNOWN_MESSAGE", "Unknown message")]
                    )
            else:
                reference = target
        attachments = self._attachments(channel, body, ctx.files, None)
        flags = (body.get("flags") or 0) & (
            MessageFlag.SUPPRESS_EMBEDS | MessageFlag.SUPPRESS_NOTIFICATIONS | MessageFlag.IS_COMPONENTS_V2
        )
        message = self.world.create_message(
            channel,
            self.world.bot_user,
            content=body.get("content") or "",
            embeds=body.get("embeds"),
            components=body.get("components"),
            attachments=attachments,
            flags=flags,
            reference=reference,
            allowed_mentions=body.get("allowed_mentions"),
            tts=bool(body.get("tts")),
            nonce=body.get("nonce"),
        )
        return 200, message.to_payload()

    async def edit_message(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        message = self._message(channel, ctx.int_param("message_id"))
        body = ctx.body if isinstance(ctx.body, dict) else {}
        if message.author.id != self.world.bot_user.id or message.webhook_id is not None:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user", kind="forbidden")
        if channel.is_thread and (channel.archived or channel.locked):
            raise ApiError(400, 50083, "Thread is archived", kind="archived_thread")
        if ctx.files:
            self._require(channel, Permission.ATTACH_FILES)
        if body.get("embeds"):
            self._require(channel, Permission.EMBED_LINKS)
        attachments = self._attachments(channel, body, ctx.files, message.attachments)
        flags = None
        if body.get("flags") is not None:
            flags = (message.flags & ~MessageFlag.SUPPRESS_EMBEDS) | (body["flags"] & MessageFlag.SUPPRESS_EMBEDS)
        self.world.edit_message(
            message,
            **self._message_fields(body),
            attachments=attachments,
            flags=flags,
            allowed_mentions=body.get("allowed_mentions"),
        )
        return 200, message.to_payload()

    async def delete_message(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        message = self._message(channel, ctx.int_param("message_id"))
        if message.author.id != self.world.bot_user.id:
            self._require(channel, Permission.MANAGE_MESSAGES)
        if channel.is_thread and channel.archived:
            raise ApiError(400, 50083, "Thread is archived", kind="archived_thread")
        self.world.delete_message(message)
        return 204, None

    async def thread_from_message(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        if channel.type not in (ChannelType.GUILD_TEXT, ChannelType.GUILD_ANNOUNCEMENT):
            raise ApiError(400, 50024, "Cannot execute action on this channel type", kind="wrong_channel_type")
        self._require(channel, Permission.CREATE_PUBLIC_THREADS)
        message = self._message(channel, ctx.int_param("message_id"))
        if message.thread is not None or message.id in self.world.channels:
            raise ApiError(400, 160004, "A thread has already been created for this message", kind="thread_exists")
        body = ctx.body if isinstance(ctx.body, dict) else {}
        thread = self.world.add_thread(
            channel,
            body.get("name") or "thread",
            owner=self.world.bot_user,
            type=ChannelType.ANNOUNCEMENT_THREAD
            if channel.type == ChannelType.GUILD_ANNOUNCEMENT
            else ChannelType.PUBLIC_THREAD,
            thread_id=message.id,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        message.thread = thread
        message.flags |= MessageFlag.HAS_THREAD
        self.world.dispatch(
            "MESSAGE_UPDATE", lambda intents: self.world.message_payload(message, intents) if intents & 1 << 9 else None
        )
        return 201, {**thread.to_payload(), "member": self._thread_member(thread)}

    async def thread_without_message(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        body = ctx.body if isinstance(ctx.body, dict) else {}
        if channel.type not in (ChannelType.GUILD_TEXT, ChannelType.GUILD_ANNOUNCEMENT):
            raise ApiError(400, 50024, "Cannot execute action on this channel type", kind="wrong_channel_type")
        kind = int(body.get("type") or ChannelType.PRIVATE_THREAD)
        needed = (
            Permission.CREATE_PRIVATE_THREADS
            if kind == ChannelType.PRIVATE_THREAD
            else Permission.CREATE_PUBLIC_THREADS
        )
        self._require(channel, needed)
        thread = self.world.add_thread(
            channel,
            body.get("name") or "thread",
            owner=self.world.bot_user,
            type=kind,
            auto_archive_duration=int(body.get("auto_archive_duration") or 1440),
        )
        return 201, {**thread.to_payload(), "member": self._thread_member(thread)}

    def _thread_member(self, thread: Channel) -> dict[str, Any]:
        return {
            "id": str(thread.id),
            "user_id": str(self.world.bot_user.id),
            "join_timestamp": thread.to_payload()["thread_metadata"]["create_timestamp"],
            "flags": 0,
        }

    async def typing(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        if channel.guild is not None:
            self._require(
                channel, Permission.SEND_MESSAGES_IN_THREADS if channel.is_thread else Permission.SEND_MESSAGES
            )
        return 204, None

    async def join_thread(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        if not channel.is_thread:
            raise ApiError(400, 50024, "Cannot execute action on this channel type", kind="wrong_channel_type")
        if channel.archived:
            raise ApiError(400, 50083, "Thread is archived", kind="archived_thread")
        channel.member_ids.add(self.world.bot_user.id)
        return 204, None

    async def leave_thread(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        channel.member_ids.discard(self.world.bot_user.id)
        return 204, None

    async def add_reaction(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        message = self._message(channel, ctx.int_param("message_id"))
        self._require(channel, Permission.READ_MESSAGE_HISTORY, Permission.ADD_REACTIONS)
        message.reactions.setdefault(ctx.params["emoji_name"], set()).add(self.world.bot_user.id)
        return 204, None

    async def remove_reaction(self, ctx: Ctx) -> tuple[int, Any]:
        channel = self._channel(ctx)
        message = self._message(channel, ctx.int_param("message_id"))
        message.reactions.get(ctx.params["emoji_name"], set()).discard(self.world.bot_user.id)
        return 204, None

    # --- guilds ------------------------------------------------------------------------------------------------

    def _guild(self, ctx: Ctx) -> Any:
        guild = self.world.guilds.get(ctx.int_param("guild_id"))
        if guild is None or self.world.bot_user.id not in guild.members:
            raise unknown("Guild", 10004)
        return guild

    async def get_guild(self, ctx: Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        payload = guild.to_payload()
        if ctx.flag("with_counts"):
            payload.update(approximate_member_count=len(guild.members), approximate_presence_count=0)
        return 200, payload

    async def get_guild_channels(self, ctx: Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        return 200, [c.to_payload() for c in guild.channels.values() if not c.is_thread]

    async def get_roles(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, [r.to_payload() for r in self._guild(ctx).roles.values()]

    async def get_member(self, ctx: Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        member = guild.members.get(ctx.int_param("user_id"))
        if member is None:
            raise unknown("Member", 10007)
        return 200, member.to_payload()

    async def get_active_threads(self, ctx: Ctx) -> tuple[int, Any]:
        guild = self._guild(ctx)
        threads = [t for t in guild.threads if not t.archived]
        return 200, {"threads": [t.to_payload() for t in threads], "members": []}


__all__ = ["INVALID_KINDS", "ApiError", "RecordedRequest", "RestApi", "UploadedFile"]
