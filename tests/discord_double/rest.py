"""REST API v10 as the bot sees it: routing, auth, rate limits, validation, and the stateful handlers.

Pipeline per request: read the body (JSON or multipart with `payload_json` + `files[n]`) → match a route (else
404, recorded as unknown) → auth → rate limit (429 with Discord's headers/body) → upload size (413 40005) →
OpenAPI spec + Discord limits (400 50035 with the error tree) → handler (Discord's own error codes), held
before or after the handler when a `double.delay(...)` covers the route.
Every request is recorded with its response in `double.requests`.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from .models import MIB
from .ratelimit import RateLimiter
from .routes_app import AppRoutes
from .routes_channels import ChannelRoutes
from .routes_interactions import InteractionRoutes
from .spec import OpenAPISpec
from .wire import INVALID_KINDS, ApiError, Ctx, RecordedRequest, RouteDef, UploadedFile, invalid_form, not_found

if TYPE_CHECKING:
    from .double import DiscordDouble

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
JSON_HEADERS = {"Content-Type": "application/json", "Via": "1.1 google"}


class RestApi:
    def __init__(self, double: DiscordDouble, limiter: RateLimiter, spec: OpenAPISpec | None) -> None:
        self.double = double
        self.world = double.world
        self.clock = double.clock
        self.limiter = limiter
        self.spec = spec
        self.groups = [AppRoutes(double), InteractionRoutes(double), ChannelRoutes(double)]
        self.routes: list[RouteDef] = [route for group in self.groups for route in group.routes()]

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

        injected = self.double._take_injected_error(request.method, route.template)
        if injected is not None:
            record.kind = "server_error"
            return injected, {"message": f"{injected}: Internal Server Error", "code": 0}

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
        delay = self.double._take_delay(request.method, route.template)
        if delay is not None:
            return await delay.run(record, lambda: route.handler(ctx))
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


__all__ = ["API_PREFIX", "INVALID_KINDS", "RecordedRequest", "RestApi", "UploadedFile"]
