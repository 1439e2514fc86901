"""Per-guild settings and rules: allowances, budget, period, concurrency, bans, allowed channels, resets."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from storage._core import Core, Row, Tx, execute, fetchone

log = logging.getLogger(__name__)

# Keep in step with the column defaults of `guild_settings` (a test checks they agree).
DEFAULT_ALLOWANCE = 10
DEFAULT_MAX_CONCURRENT_MEMBER = 1


class PeriodMode(StrEnum):
    DAILY = "daily"  # resets every day at `reset_hour` UTC
    ROLLING = "rolling"  # the last 24 hours


@dataclass(frozen=True, slots=True)
class GuildSettings:
    guild_id: int
    default_allowance: int | None = DEFAULT_ALLOWANCE  # credits per member per period; None: unlimited
    budget: int | None = None  # credits for the whole guild per period; None: no budget
    period_mode: PeriodMode = PeriodMode.DAILY
    reset_hour: int = 0  # UTC hour of the daily reset
    max_concurrent_member: int = DEFAULT_MAX_CONCURRENT_MEMBER
    max_concurrent_guild: int | None = None  # None: no guild-wide limit
    admins_exempt: bool = False  # members with Manage Server skip the member allowance and concurrency
    charge_moderation: bool = False  # a moderation rejection is charged (True) or refunded (False)
    configured: bool = False  # whether the guild has a settings row at all

    @classmethod
    def from_row(cls, row: Row) -> GuildSettings:
        return cls(
            guild_id=row["guild_id"],
            default_allowance=row["default_allowance"],
            budget=row["budget"],
            period_mode=PeriodMode(row["period_mode"]),
            reset_hour=row["reset_hour"],
            max_concurrent_member=row["max_concurrent_member"],
            max_concurrent_guild=row["max_concurrent_guild"],
            admins_exempt=bool(row["admins_exempt"]),
            charge_moderation=bool(row["charge_moderation"]),
            configured=True,
        )


@dataclass(frozen=True, slots=True)
class Ban:
    guild_id: int
    user_id: int
    reason: str | None
    banned_by: int | None
    created_at: float


_SETTINGS_COLUMNS = frozenset(
    {
        "default_allowance",
        "budget",
        "period_mode",
        "reset_hour",
        "max_concurrent_member",
        "max_concurrent_guild",
        "admins_exempt",
        "charge_moderation",
    }
)


async def read_guild_settings(conn: Tx, guild_id: int) -> GuildSettings:
    row = await fetchone(conn, "SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
    return GuildSettings.from_row(row) if row is not None else GuildSettings(guild_id)


class GuildsMixin(Core):
    async def get_guild_settings(self, guild_id: int) -> GuildSettings:
        async with self._transaction(write=False) as conn:
            return await read_guild_settings(conn, guild_id)

    async def update_guild_settings(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings of a guild (creating its row with defaults first); returns the new settings."""
        unknown = set(changes) - _SETTINGS_COLUMNS
        if unknown:
            raise ValueError(f"unknown guild settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {
            key: (value.value if isinstance(value, StrEnum) else int(value) if isinstance(value, bool) else value)
            for key, value in changes.items()
        }
        columns = ", ".join(values)
        updates = ", ".join(f"{key} = excluded.{key}" for key in values)
        marks = ", ".join("?" for _ in values)
        sql = (
            f"INSERT INTO guild_settings (guild_id, updated_at{', ' if values else ''}{columns}) "
            f"VALUES (?, ?{', ' if values else ''}{marks}) "
            f"ON CONFLICT (guild_id) DO UPDATE SET updated_at = excluded.updated_at{', ' if values else ''}{updates}"
        )
        async with self._transaction() as conn:
            await execute(conn, sql, (guild_id, self._now(), *values.values()))
            return await read_guild_settings(conn, guild_id)

    async def set_default_allowance(self, guild_id: int, credits: int | None) -> GuildSettings:
        return await self.update_guild_settings(guild_id, default_allowance=_credits(credits))

    async def set_budget(self, guild_id: int, credits: int | None) -> GuildSettings:
        return await self.update_guild_settings(guild_id, budget=_credits(credits))

    async def set_period(self, guild_id: int, mode: PeriodMode, reset_hour: int | None = None) -> GuildSettings:
        changes: dict[str, Any] = {"period_mode": PeriodMode(mode)}
        if reset_hour is not None:
            if not 0 <= reset_hour <= 23:
                raise ValueError("reset_hour must be 0..23")
            changes["reset_hour"] = reset_hour
        return await self.update_guild_settings(guild_id, **changes)

    async def set_concurrency(self, guild_id: int, *, per_member: int, per_guild: int | None) -> GuildSettings:
        """Set the concurrent-job limits: per member (at least 1) and per guild (None: no guild limit)."""
        if per_member < 1:
            raise ValueError("per_member must be at least 1")
        if per_guild is not None and per_guild < 1:
            raise ValueError("per_guild must be at least 1")
        return await self.update_guild_settings(
            guild_id, max_concurrent_member=per_member, max_concurrent_guild=per_guild
        )

    async def set_admins_exempt(self, guild_id: int, exempt: bool) -> GuildSettings:
        return await self.update_guild_settings(guild_id, admins_exempt=exempt)

    async def set_charge_moderation(self, guild_id: int, charge: bool) -> GuildSettings:
        return await self.update_guild_settings(guild_id, charge_moderation=charge)

    # --- role allowances and member overrides ------------------------------------------------------------

    async def set_role_allowance(self, guild_id: int, role_id: int, credits: int | None) -> None:
        await self._execute(
            "INSERT INTO role_allowances (guild_id, role_id, allowance, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (guild_id, role_id) DO UPDATE SET allowance = excluded.allowance, "
            "updated_at = excluded.updated_at",
            (guild_id, role_id, _credits(credits), self._now()),
        )

    async def remove_role_allowance(self, guild_id: int, role_id: int) -> bool:
        changed = await self._execute(
            "DELETE FROM role_allowances WHERE guild_id = ? AND role_id = ?", (guild_id, role_id)
        )
        return changed > 0

    async def role_allowances(self, guild_id: int) -> dict[int, int | None]:
        rows = await self._fetchall(
            "SELECT role_id, allowance FROM role_allowances WHERE guild_id = ? ORDER BY role_id", (guild_id,)
        )
        return {row["role_id"]: row["allowance"] for row in rows}

    async def set_member_override(self, guild_id: int, user_id: int, credits: int | None) -> None:
        await self._execute(
            "INSERT INTO member_overrides (guild_id, user_id, allowance, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (guild_id, user_id) DO UPDATE SET allowance = excluded.allowance, "
            "updated_at = excluded.updated_at",
            (guild_id, user_id, _credits(credits), self._now()),
        )

    async def remove_member_override(self, guild_id: int, user_id: int) -> bool:
        changed = await self._execute(
            "DELETE FROM member_overrides WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )
        return changed > 0

    async def member_overrides(self, guild_id: int) -> dict[int, int | None]:
        rows = await self._fetchall(
            "SELECT user_id, allowance FROM member_overrides WHERE guild_id = ? ORDER BY user_id", (guild_id,)
        )
        return {row["user_id"]: row["allowance"] for row in rows}

    # --- bans ----------------------------------------------------------------------------------------------

    async def ban_member(
        self, guild_id: int, user_id: int, *, reason: str | None = None, banned_by: int | None = None
    ) -> bool:
        """Ban a member from /sora in this guild; returns False when they were already banned (reason updated)."""
        async with self._transaction() as conn:
            existing = await fetchone(
                conn, "SELECT 1 FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
            )
            await execute(
                conn,
                "INSERT INTO bans (guild_id, user_id, reason, banned_by, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason, "
                "banned_by = excluded.banned_by",
                (guild_id, user_id, reason, banned_by, self._now()),
            )
        return existing is None

    async def unban_member(self, guild_id: int, user_id: int) -> bool:
        changed = await self._execute("DELETE FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
        return changed > 0

    async def ban_of(self, guild_id: int, user_id: int) -> Ban | None:
        row = await self._fetchone("SELECT * FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
        return _ban(row) if row is not None else None

    async def bans(self, guild_id: int) -> list[Ban]:
        rows = await self._fetchall("SELECT * FROM bans WHERE guild_id = ? ORDER BY created_at, user_id", (guild_id,))
        return [_ban(row) for row in rows]

    # --- allowed channels ----------------------------------------------------------------------------------

    async def allow_channel(self, guild_id: int, channel_id: int, *, added_by: int | None = None) -> bool:
        """Add a channel to the allow-list; returns False when it was already on it."""
        changed = await self._execute(
            "INSERT INTO allowed_channels (guild_id, channel_id, added_by, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (guild_id, channel_id) DO NOTHING",
            (guild_id, channel_id, added_by, self._now()),
        )
        return changed > 0

    async def disallow_channel(self, guild_id: int, channel_id: int) -> bool:
        """Take a channel off the allow-list; returns False when it wasn't on it. An empty list allows all."""
        changed = await self._execute(
            "DELETE FROM allowed_channels WHERE guild_id = ? AND channel_id = ?", (guild_id, channel_id)
        )
        return changed > 0

    async def allowed_channels(self, guild_id: int) -> tuple[int, ...]:
        rows = await self._fetchall(
            "SELECT channel_id FROM allowed_channels WHERE guild_id = ? ORDER BY created_at, channel_id", (guild_id,)
        )
        return tuple(row["channel_id"] for row in rows)

    # --- resets ----------------------------------------------------------------------------------------------

    async def reset_usage(self, guild_id: int, user_id: int | None = None, *, reset_by: int | None = None) -> float:
        """Start the counting window afresh now: for one member, or for everyone and the guild budget.

        The ledger keeps its history (usage reports still see it); only the quota stops counting it.
        """
        now = self._now()
        await self._execute(
            "INSERT INTO quota_resets (guild_id, user_id, reset_by, reset_at) VALUES (?, ?, ?, ?)",
            (guild_id, user_id, reset_by, now),
        )
        return now


def _credits(credits: int | None) -> int | None:
    if credits is not None and credits < 0:
        raise ValueError("credits can't be negative")
    return credits


def _ban(row: Row) -> Ban:
    return Ban(row["guild_id"], row["user_id"], row["reason"], row["banned_by"], row["created_at"])


__all__ = ["DEFAULT_ALLOWANCE", "Ban", "GuildSettings", "GuildsMixin", "PeriodMode", "read_guild_settings"]
