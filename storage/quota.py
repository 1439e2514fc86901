"""Quota rules: periods, effective allowances, usage, and the checks a reservation must pass.

Credits count from the moment they are reserved (`ledger.created_at` decides the period); reserved and charged
credits count, refunded ones don't. Concurrency counts generations that are queued or running.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from storage._core import POSTGRESQL, Core, Tx, fetchall, fetchone
from storage.guilds import Ban, GuildSettings, PeriodMode

log = logging.getLogger(__name__)

DAY = 24 * 60 * 60.0


class LimitSource(StrEnum):
    DEFAULT = "default"  # the guild's default allowance
    ROLE = "role"  # the most generous of the member's roles
    OVERRIDE = "override"  # set for this member
    EXEMPT = "exempt"  # an admin in a guild that exempts admins


class DenyReason(StrEnum):
    BANNED = "banned"
    CHANNEL_NOT_ALLOWED = "channel_not_allowed"
    MEMBER_CONCURRENCY = "member_concurrency"
    GUILD_CONCURRENCY = "guild_concurrency"
    MEMBER_QUOTA = "member_quota"
    GUILD_BUDGET = "guild_budget"


class LedgerState(StrEnum):
    RESERVED = "reserved"
    CHARGED = "charged"
    REFUNDED = "refunded"


@dataclass(frozen=True, slots=True)
class EffectiveLimit:
    credits: int | None  # None: unlimited
    source: LimitSource
    role_id: int | None = None  # the role it comes from, when source is ROLE

    @property
    def unlimited(self) -> bool:
        return self.credits is None


@dataclass(frozen=True, slots=True)
class Reservation:
    """Credits held for a new generation; charged on success, refunded on failures that aren't the member's."""

    generation_id: int
    cost: int
    used: int  # the member's credits counted this period, this reservation included
    limit: EffectiveLimit
    resets_at: float | None  # epoch seconds; None when nothing is counted in a rolling window


@dataclass(frozen=True, slots=True)
class QuotaDenied:
    """Why a request was refused, with the numbers a one-line answer needs."""

    reason: DenyReason
    cost: int = 0
    used: int = 0  # credits counted this period (member's, or the guild's for GUILD_BUDGET)
    limit: int | None = None  # the allowance or budget
    limit_source: LimitSource | None = None
    resets_at: float | None = None  # when enough frees up; None when waiting won't help (cost > limit)
    running: int = 0  # jobs queued or running (member's, or the guild's for GUILD_CONCURRENCY)
    max_running: int | None = None
    ban_reason: str | None = None
    allowed_channel_ids: tuple[int, ...] = ()

    @property
    def left(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    """What `/sora-quota` shows a member."""

    guild_id: int
    user_id: int
    limit: EffectiveLimit
    used: int  # reserved + charged credits this period
    in_flight: int  # the reserved part of `used`
    period_mode: PeriodMode
    reset_hour: int
    period_start: float
    resets_at: float | None
    running: int
    max_running: int | None  # None when exempt
    guild_running: int
    max_guild_running: int | None
    budget: int | None
    budget_used: int
    ban: Ban | None = None
    role_allowances: dict[int, int | None] = field(default_factory=dict)  # the member's roles that have one

    @property
    def left(self) -> int | None:
        return None if self.limit.credits is None else max(self.limit.credits - self.used, 0)

    @property
    def budget_left(self) -> int | None:
        return None if self.budget is None else max(self.budget - self.budget_used, 0)


def period_start(mode: PeriodMode, reset_hour: int, now: float) -> float:
    """Start of the counting window at `now`: the last daily reset, or 24 h ago for a rolling window."""
    if mode == PeriodMode.ROLLING:
        return now - DAY
    offset = reset_hour * 3600.0
    # Epoch days are UTC days (no leap seconds), so whole days since the epoch line up with the reset hour.
    return math.floor((now - offset) / DAY) * DAY + offset


def next_daily_reset(reset_hour: int, now: float) -> float:
    return period_start(PeriodMode.DAILY, reset_hour, now) + DAY


def pick_limit(
    settings: GuildSettings,
    role_allowances: dict[int, int | None],
    *,
    has_override: bool = False,
    override: int | None = None,
    exempt: bool = False,
) -> EffectiveLimit:
    """Exempt admin > member override > most generous role (unlimited beats any number) > guild default.

    `override` None with `has_override` means the member's override is "unlimited".
    """
    if exempt:
        return EffectiveLimit(None, LimitSource.EXEMPT)
    if has_override:
        return EffectiveLimit(override, LimitSource.OVERRIDE)
    if role_allowances:
        unlimited = [role for role, credits in role_allowances.items() if credits is None]
        if unlimited:
            return EffectiveLimit(None, LimitSource.ROLE, min(unlimited))
        role, credits = max(role_allowances.items(), key=lambda item: (item[1], -item[0]))
        return EffectiveLimit(credits, LimitSource.ROLE, role)
    return EffectiveLimit(settings.default_allowance, LimitSource.DEFAULT)


@dataclass(frozen=True, slots=True)
class _Context:
    """Everything a quota decision reads, gathered inside the caller's transaction."""

    settings: GuildSettings
    ban: Ban | None
    allowed_channels: tuple[int, ...]
    limit: EffectiveLimit
    role_allowances: dict[int, int | None]
    member_start: float
    guild_start: float
    member_used: int
    member_in_flight: int
    member_oldest: float | None  # when the oldest credit still counted was reserved
    guild_used: int
    running: int
    guild_running: int
    exempt: bool


# Rules, ban, channels, resets and running jobs in one round trip (each aiosqlite call is a thread hop, and
# the reservation holds the write lock while it reads). JSON carries the variable-length parts.
_RULES_SQLITE = """
SELECT
    gs.guild_id IS NOT NULL AS configured, gs.*,
    (SELECT json_object('reason', reason, 'banned_by', banned_by, 'created_at', created_at)
       FROM bans WHERE guild_id = :guild AND user_id = :user) AS ban,
    (SELECT json_group_array(channel_id) FROM (SELECT channel_id FROM allowed_channels
       WHERE guild_id = :guild ORDER BY created_at, channel_id)) AS channels,
    (SELECT json_group_array(json_array(role_id, allowance)) FROM role_allowances
       WHERE guild_id = :guild AND role_id IN (SELECT value FROM json_each(:roles))) AS roles,
    (SELECT json_array(allowance) FROM member_overrides WHERE guild_id = :guild AND user_id = :user) AS override,
    (SELECT MAX(reset_at) FROM quota_resets WHERE guild_id = :guild AND user_id IS NULL) AS guild_reset,
    (SELECT MAX(reset_at) FROM quota_resets WHERE guild_id = :guild AND user_id = :user) AS member_reset,
    (SELECT COUNT(*) FROM generations WHERE guild_id = :guild AND status IN
     ('queued', 'running', 'delivering')) AS guild_running,
    (SELECT COUNT(*) FROM generations
       WHERE guild_id = :guild AND user_id = :user AND status IN ('queued', 'running', 'delivering')) AS running
FROM (SELECT 1) AS one LEFT JOIN guild_settings AS gs ON gs.guild_id = :guild
"""

# The same on PostgreSQL: its JSON functions have other names, and the roles come as an array.
_RULES_POSTGRESQL = """
SELECT
    gs.guild_id IS NOT NULL AS configured, gs.*,
    (SELECT json_build_object('reason', reason, 'banned_by', banned_by, 'created_at', created_at)::text
       FROM bans WHERE guild_id = :guild AND user_id = :user) AS ban,
    (SELECT COALESCE(json_agg(channel_id ORDER BY created_at, channel_id), '[]'::json)::text
       FROM allowed_channels WHERE guild_id = :guild) AS channels,
    (SELECT COALESCE(json_agg(json_build_array(role_id, allowance)), '[]'::json)::text FROM role_allowances
       WHERE guild_id = :guild AND role_id = ANY(:roles::bigint[])) AS roles,
    (SELECT json_build_array(allowance)::text FROM member_overrides
       WHERE guild_id = :guild AND user_id = :user) AS override,
    (SELECT MAX(reset_at) FROM quota_resets WHERE guild_id = :guild AND user_id IS NULL) AS guild_reset,
    (SELECT MAX(reset_at) FROM quota_resets WHERE guild_id = :guild AND user_id = :user) AS member_reset,
    (SELECT COUNT(*) FROM generations WHERE guild_id = :guild AND status IN
     ('queued', 'running', 'delivering')) AS guild_running,
    (SELECT COUNT(*) FROM generations
       WHERE guild_id = :guild AND user_id = :user AND status IN ('queued', 'running', 'delivering')) AS running
FROM (SELECT 1) AS one LEFT JOIN guild_settings AS gs ON gs.guild_id = :guild
"""

_USAGE_SQL = """
SELECT m.used, m.in_flight, m.oldest, g.used AS guild_used FROM
    (SELECT COALESCE(SUM(credits), 0) AS used,
            COALESCE(SUM(CASE WHEN state = 'reserved' THEN credits END), 0) AS in_flight,
            MIN(CASE WHEN credits > 0 THEN created_at END) AS oldest
       FROM ledger WHERE guild_id = :guild AND user_id = :user AND created_at >= :member_start
        AND state != 'refunded') AS m,
    (SELECT CASE WHEN :budget THEN (SELECT COALESCE(SUM(credits), 0) FROM ledger
       WHERE guild_id = :guild AND created_at >= :guild_start AND state != 'refunded') ELSE 0 END AS used) AS g
"""


async def _read_context(
    conn: Tx,
    guild_id: int,
    user_id: int,
    role_ids: Iterable[int],
    *,
    is_admin: bool,
    now: float,
) -> _Context:
    unique_roles = list(dict.fromkeys(role_ids))
    if conn.dialect is POSTGRESQL:
        rules = await fetchone(conn, _RULES_POSTGRESQL, {"guild": guild_id, "user": user_id, "roles": unique_roles})
    else:
        rules = await fetchone(
            conn, _RULES_SQLITE, {"guild": guild_id, "user": user_id, "roles": json.dumps(unique_roles)}
        )
    assert rules is not None
    settings = GuildSettings.from_row(rules) if rules["configured"] else GuildSettings(guild_id)
    ban_fields = json.loads(rules["ban"]) if rules["ban"] is not None else None
    ban = Ban(guild_id, user_id, **ban_fields) if ban_fields is not None else None
    role_allowances = {role: allowance for role, allowance in json.loads(rules["roles"])}
    override = json.loads(rules["override"]) if rules["override"] is not None else None
    exempt = is_admin and settings.admins_exempt
    limit = pick_limit(
        settings,
        role_allowances,
        has_override=override is not None,
        override=override[0] if override is not None else None,
        exempt=exempt,
    )
    start = period_start(settings.period_mode, settings.reset_hour, now)
    guild_start = max(start, rules["guild_reset"] or start)
    member_start = max(guild_start, rules["member_reset"] or start)
    usage = await fetchone(
        conn,
        _USAGE_SQL,
        {
            "guild": guild_id,
            "user": user_id,
            "member_start": member_start,
            "guild_start": guild_start,
            "budget": settings.budget is not None,
        },
    )
    assert usage is not None
    return _Context(
        settings=settings,
        ban=ban,
        allowed_channels=tuple(json.loads(rules["channels"])),
        limit=limit,
        role_allowances=role_allowances,
        member_start=member_start,
        guild_start=guild_start,
        member_used=usage["used"],
        member_in_flight=usage["in_flight"],
        member_oldest=usage["oldest"],
        guild_used=usage["guild_used"],
        running=rules["running"],
        guild_running=rules["guild_running"],
        exempt=exempt,
    )


async def _frees_up_at(
    conn: Tx,
    ctx: _Context,
    *,
    guild_id: int,
    user_id: int | None,
    used: int,
    limit: int,
    cost: int,
    now: float,
) -> float | None:
    """When `cost` more credits fit under `limit`: the next daily reset, or in a rolling window the moment enough
    of the oldest counted credits are 24 h old. None when waiting can't help."""
    if cost > limit:
        return None
    if ctx.settings.period_mode == PeriodMode.DAILY:
        return next_daily_reset(ctx.settings.reset_hour, now)
    need = used + cost - limit
    if user_id is None:
        sql = (
            "SELECT created_at, credits FROM ledger WHERE guild_id = ? AND created_at >= ? AND state != 'refunded' "
            "AND credits > 0 ORDER BY created_at"
        )
        params: tuple[object, ...] = (guild_id, ctx.guild_start)
    else:
        sql = (
            "SELECT created_at, credits FROM ledger WHERE guild_id = ? AND user_id = ? AND created_at >= ? "
            "AND state != 'refunded' AND credits > 0 ORDER BY created_at"
        )
        params = (guild_id, user_id, ctx.member_start)
    freed = 0
    for row in await fetchall(conn, sql, params):
        freed += row["credits"]
        if freed >= max(need, 1):
            return float(row["created_at"]) + DAY
    return None


async def check_reservation(
    conn: Tx,
    *,
    guild_id: int,
    user_id: int,
    channel_id: int,
    parent_channel_id: int | None,
    role_ids: Iterable[int],
    is_admin: bool,
    cost: int,
    now: float,
) -> tuple[_Context, QuotaDenied | None]:
    """Decide whether `cost` credits may be reserved now. Must run inside the caller's write transaction."""
    ctx = await _read_context(conn, guild_id, user_id, role_ids, is_admin=is_admin, now=now)
    settings = ctx.settings
    if ctx.ban is not None:
        return ctx, QuotaDenied(DenyReason.BANNED, cost=cost, ban_reason=ctx.ban.reason)
    if ctx.allowed_channels and not {channel_id, parent_channel_id} & set(ctx.allowed_channels):
        return ctx, QuotaDenied(DenyReason.CHANNEL_NOT_ALLOWED, cost=cost, allowed_channel_ids=ctx.allowed_channels)
    if not ctx.exempt and ctx.running >= settings.max_concurrent_member:
        return ctx, QuotaDenied(
            DenyReason.MEMBER_CONCURRENCY, cost=cost, running=ctx.running, max_running=settings.max_concurrent_member
        )
    if settings.max_concurrent_guild is not None and ctx.guild_running >= settings.max_concurrent_guild:
        return ctx, QuotaDenied(
            DenyReason.GUILD_CONCURRENCY,
            cost=cost,
            running=ctx.guild_running,
            max_running=settings.max_concurrent_guild,
        )
    limit = ctx.limit.credits
    if limit is not None and ctx.member_used + cost > limit:
        resets_at = await _frees_up_at(
            conn, ctx, guild_id=guild_id, user_id=user_id, used=ctx.member_used, limit=limit, cost=cost, now=now
        )
        return ctx, QuotaDenied(
            DenyReason.MEMBER_QUOTA,
            cost=cost,
            used=ctx.member_used,
            limit=limit,
            limit_source=ctx.limit.source,
            resets_at=resets_at,
            running=ctx.running,
            max_running=settings.max_concurrent_member,
        )
    budget = settings.budget
    if budget is not None and ctx.guild_used + cost > budget:
        resets_at = await _frees_up_at(
            conn, ctx, guild_id=guild_id, user_id=None, used=ctx.guild_used, limit=budget, cost=cost, now=now
        )
        return ctx, QuotaDenied(
            DenyReason.GUILD_BUDGET, cost=cost, used=ctx.guild_used, limit=budget, resets_at=resets_at
        )
    return ctx, None


def next_reset(ctx: _Context, now: float, *, reserved: int = 0) -> float | None:
    """When the member's counted credits next go down: the next daily reset, or (rolling) when the oldest
    counted credit turns 24 h old — `reserved` credits just taken count as reserved `now`."""
    if ctx.settings.period_mode == PeriodMode.DAILY:
        return next_daily_reset(ctx.settings.reset_hour, now)
    if ctx.member_oldest is not None:
        return ctx.member_oldest + DAY
    return now + DAY if reserved > 0 else None


class QuotaMixin(Core):
    async def quota_status(
        self, guild_id: int, user_id: int, role_ids: Iterable[int] = (), *, is_admin: bool = False
    ) -> QuotaStatus:
        """The member's effective limits, usage this period, reset time and running jobs."""
        now = self._now()
        async with self._transaction(write=False) as conn:
            ctx = await _read_context(conn, guild_id, user_id, role_ids, is_admin=is_admin, now=now)
            budget_used = 0 if ctx.settings.budget is None else ctx.guild_used
        settings = ctx.settings
        return QuotaStatus(
            guild_id=guild_id,
            user_id=user_id,
            limit=ctx.limit,
            used=ctx.member_used,
            in_flight=ctx.member_in_flight,
            period_mode=settings.period_mode,
            reset_hour=settings.reset_hour,
            period_start=ctx.member_start,
            resets_at=next_reset(ctx, now),
            running=ctx.running,
            max_running=None if ctx.exempt else settings.max_concurrent_member,
            guild_running=ctx.guild_running,
            max_guild_running=settings.max_concurrent_guild,
            budget=settings.budget,
            budget_used=budget_used,
            ban=ctx.ban,
            role_allowances=ctx.role_allowances,
        )

    async def check_access(
        self, guild_id: int, user_id: int, channel_id: int, parent_channel_id: int | None = None
    ) -> QuotaDenied | None:
        """A cheap early check (ban, channel allow-list) before anything is spent; reserving checks again."""
        async with self._transaction(write=False) as conn:
            ban = await fetchone(
                conn, "SELECT reason FROM bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
            )
            if ban is not None:
                return QuotaDenied(DenyReason.BANNED, ban_reason=ban["reason"])
            rows = await fetchall(
                conn,
                "SELECT channel_id FROM allowed_channels WHERE guild_id = ? ORDER BY created_at, channel_id",
                (guild_id,),
            )
        allowed = tuple(row["channel_id"] for row in rows)
        if allowed and not {channel_id, parent_channel_id} & set(allowed):
            return QuotaDenied(DenyReason.CHANNEL_NOT_ALLOWED, allowed_channel_ids=allowed)
        return None


__all__ = [
    "DAY",
    "DenyReason",
    "EffectiveLimit",
    "LedgerState",
    "LimitSource",
    "QuotaDenied",
    "QuotaMixin",
    "QuotaStatus",
    "Reservation",
    "check_reservation",
    "next_daily_reset",
    "period_start",
    "pick_limit",
]
