"""Channels, messages, threads, reactions: what the bot does with its own token."""

from __future__ import annotations

from typing import Any

from . import rules
from .models import Channel, ChannelType, MessageFlag
from .permissions import Permission
from .wire import ApiError, Ctx, Handlers, RouteDef, invalid_form, unknown


class ChannelRoutes(Handlers):
    def routes(self) -> list[RouteDef]:
        message_checks = self.message_checks
        r = RouteDef
        return [
            r("GET", "/channels/{channel_id}", self.get_channel, major="channel_id"),
            r("PATCH", "/channels/{channel_id}", self.patch_channel, major="channel_id"),
            r("GET", "/channels/{channel_id}/messages", self.list_messages, major="channel_id"),
            r(
                "POST",
                "/channels/{channel_id}/messages",
                self.create_message,
                bucket="message_create",
                major="channel_id",
                checks=self.create_checks,
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
        ]

    @staticmethod
    def create_checks(body: Any, ctx: Ctx) -> list[rules.Issue]:
        if not isinstance(body, dict):
            return []
        return rules.check_message(body) + rules.check_nonce(body)

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
            self.world.dispatch("CHANNEL_UPDATE", lambda intents: channel.to_payload(), guild=channel.guild)
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
        if body.get("enforce_nonce") is True and body.get("nonce") is not None:
            earlier = self.world.message_with_nonce(channel, self.world.bot_user, body["nonce"])
            if earlier is not None:
                ctx.record.deduplicated = True
                if earlier.deleted:  # discord.py documents NotFound for a nonce whose message was just deleted
                    raise unknown("Message", 10008)
                return 200, earlier.to_payload()
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
            "MESSAGE_UPDATE",
            lambda intents: self.world.message_payload(message, intents) if intents & 1 << 9 else None,
            guild=message.guild,
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


__all__ = ["ChannelRoutes"]
