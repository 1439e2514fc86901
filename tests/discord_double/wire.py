"""The REST layer's vocabulary: recorded requests, Discord-shaped errors, routes, and the handler base."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import rules
from .models import Attachment, Channel, Message
from .permissions import Permission

if TYPE_CHECKING:
    from .double import DiscordDouble

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
    deduplicated: bool = False  # `enforce_nonce` matched an earlier message: it was returned, none was created
    held: str | None = None  # "before_commit" / "after_commit" when a `double.delay(...)` held this request

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
        if self.deduplicated:
            extra += " deduplicated"
        if self.held:
            extra += f" held {self.held}"
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


# --- handlers -----------------------------------------------------------------------------------------------------


class Handlers:
    """A group of route handlers over the double's world, with the checks they share."""

    def __init__(self, double: DiscordDouble) -> None:
        self.double = double
        self.world = double.world
        self.clock = double.clock

    def routes(self) -> list[RouteDef]:
        raise NotImplementedError

    @staticmethod
    def message_checks(body: Any, ctx: Ctx) -> list[rules.Issue]:
        return rules.check_message(body) if isinstance(body, dict) else []

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


__all__ = [
    "INVALID_KINDS",
    "ApiError",
    "Ctx",
    "Handlers",
    "RecordedRequest",
    "RouteDef",
    "UploadedFile",
    "invalid_form",
    "missing_access",
    "missing_permissions",
    "not_found",
    "unknown",
]
