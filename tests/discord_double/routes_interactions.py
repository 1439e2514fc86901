"""Interaction callbacks and the interaction webhook (`@original`, followups): the 3 s and 15 min rules."""

from __future__ import annotations

from typing import Any

from . import rules
from .models import Callback, Interaction, InteractionType, Message, MessageFlag
from .wire import ApiError, Ctx, Handlers, RouteDef, invalid_form, unknown

CALLBACK_WINDOW = 3.0  # seconds to acknowledge an interaction
TOKEN_LIFETIME = 15 * 60  # seconds an interaction token works for webhooks


class InteractionRoutes(Handlers):
    def routes(self) -> list[RouteDef]:
        message_checks = self.message_checks
        r = RouteDef
        return [
            r(
                "POST",
                "/interactions/{interaction_id}/{interaction_token}/callback",
                self.interaction_callback,
                bucket="interaction_callback",
                major="interaction_token",  # each interaction is its own resource, like a webhook's id + token
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
        ]

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
            message = self._interaction_message(channel, data, ctx, interaction)
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

    def _interaction_message(self, channel: Any, data: dict[str, Any], ctx: Ctx, interaction: Interaction) -> Message:
        """A message the bot posts through an interaction: the original response or a followup."""
        world = self.world
        flags = (data.get("flags") or 0) & (
            MessageFlag.EPHEMERAL
            | MessageFlag.SUPPRESS_EMBEDS
            | MessageFlag.SUPPRESS_NOTIFICATIONS
            | MessageFlag.IS_COMPONENTS_V2
        )
        attachments = self._attachments(channel, data, ctx.files, None, ephemeral=bool(flags & MessageFlag.EPHEMERAL))
        return world.create_message(
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
            message = self._interaction_message(channel, body, ctx, interaction)
            interaction.followups.append(message)
        if not ctx.flag("wait"):
            return 204, None
        return 200, message.to_payload()


__all__ = ["CALLBACK_WINDOW", "TOKEN_LIFETIME", "InteractionRoutes"]
