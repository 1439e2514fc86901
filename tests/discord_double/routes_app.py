"""Routes of the application itself: gateway discovery, users, application info, commands, guilds."""

from __future__ import annotations

from typing import Any

from . import rules
from .models import Command
from .wire import ApiError, Ctx, Handlers, RouteDef, unknown


class AppRoutes(Handlers):
    def routes(self) -> list[RouteDef]:
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
            r("GET", "/guilds/{guild_id}", self.get_guild, major="guild_id"),
            r("GET", "/guilds/{guild_id}/channels", self.get_guild_channels, major="guild_id"),
            r("GET", "/guilds/{guild_id}/roles", self.get_roles, major="guild_id"),
            r("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member, major="guild_id"),
            r("GET", "/guilds/{guild_id}/threads/active", self.get_active_threads, major="guild_id"),
        ]

    # --- gateway, users, application -----------------------------------------------------------------------------

    async def get_gateway(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, {"url": self.double.gateway_url.rstrip("/")}

    async def get_gateway_bot(self, ctx: Ctx) -> tuple[int, Any]:
        return 200, {
            "url": self.double.gateway_url.rstrip("/"),
            "shards": self.double.recommended_shards,
            "session_start_limit": self.double.gateway.session_start_limit(),
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


__all__ = ["AppRoutes"]
