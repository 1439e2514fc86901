"""Quota rules: atomic reservations, concurrency, periods, precedence, exemption, bans and channels."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.clock import FakeClock
from storage import (
    DAY,
    Database,
    DenyReason,
    LimitSource,
    PeriodMode,
    QuotaDenied,
    Reservation,
)
from tests.storage.helpers import (
    ALICE,
    BOB,
    CAROL,
    CHANNEL,
    GUILD,
    OTHER_CHANNEL,
    OTHER_GUILD,
    ROLE_FAN,
    ROLE_VIP,
    THREAD,
    deny,
    new_generation,
    reserve,
)

HOUR = 3600.0


def at(clock: FakeClock, hour: int, minute: int = 0) -> float:
    """Epoch seconds of today's (in the clock's UTC day) hour:minute."""
    day = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    return day.timestamp() + hour * HOUR + minute * 60


async def finish(db: Database, reservation: Reservation) -> None:
    await db.mark_succeeded(reservation.generation_id, result_url="https://cdn.example/v.mp4")


async def test_100_concurrent_reservations_against_an_allowance_of_7_grant_exactly_7(db: Database) -> None:
    await db.set_default_allowance(GUILD, 7)
    await db.set_concurrency(GUILD, per_member=1000, per_guild=None)
    results = await asyncio.gather(*(db.create_generation(new_generation(cost=1)) for _ in range(100)))
    granted = [r for r in results if isinstance(r, Reservation)]
    denied = [r for r in results if isinstance(r, QuotaDenied)]
    assert len(granted) == 7
    assert len(denied) == 93
    assert {d.reason for d in denied} == {DenyReason.MEMBER_QUOTA}
    assert all(d.used == 7 and d.limit == 7 for d in denied)
    assert sorted(r.used for r in granted) == list(range(1, 8))
    assert (await db.quota_status(GUILD, ALICE)).used == 7


async def test_concurrent_reservations_through_several_connections_grant_exactly_7(
    database_url: str, clock: FakeClock
) -> None:
    """Several handles on one database stand in for several bot processes: BEGIN IMMEDIATE (SQLite) and the
    guild's advisory lock (PostgreSQL) keep them honest."""
    handles = [await Database.open(database_url, clock=clock) for _ in range(4)]
    try:
        await handles[0].set_default_allowance(GUILD, 7)
        await handles[0].set_concurrency(GUILD, per_member=1000, per_guild=None)
        results = await asyncio.gather(*(handles[i % 4].create_generation(new_generation(cost=1)) for i in range(100)))
        assert sum(isinstance(r, Reservation) for r in results) == 7
        assert (await handles[1].quota_status(GUILD, ALICE)).used == 7
    finally:
        for handle in handles:
            await handle.close()


async def test_100_concurrent_members_against_a_guild_budget_of_7_grant_exactly_7(db: Database) -> None:
    await db.set_default_allowance(GUILD, None)
    await db.set_budget(GUILD, 7)
    results = await asyncio.gather(
        *(db.create_generation(new_generation(user_id=10_000 + i, cost=1)) for i in range(100))
    )
    granted = [r for r in results if isinstance(r, Reservation)]
    denied = [r for r in results if isinstance(r, QuotaDenied)]
    assert len(granted) == 7
    assert {d.reason for d in denied} == {DenyReason.GUILD_BUDGET}
    assert all(d.used == 7 and d.limit == 7 for d in denied)
    status = await db.quota_status(GUILD, ALICE)
    assert (status.budget, status.budget_used, status.budget_left) == (7, 7, 0)


async def test_guild_budget_counts_credits_not_jobs(db: Database) -> None:
    await db.set_budget(GUILD, 10)
    await reserve(db, user_id=ALICE, cost=4)
    await reserve(db, user_id=BOB, cost=4)
    denied = await deny(db, user_id=CAROL, cost=4)
    assert (denied.reason, denied.used, denied.limit, denied.cost) == (DenyReason.GUILD_BUDGET, 8, 10, 4)
    await reserve(db, user_id=CAROL, cost=2)


async def test_member_concurrency_defaults_to_one_job(db: Database) -> None:
    first = await reserve(db)
    denied = await deny(db)
    assert (denied.reason, denied.running, denied.max_running) == (DenyReason.MEMBER_CONCURRENCY, 1, 1)
    await reserve(db, user_id=BOB)  # someone else isn't blocked
    await finish(db, first)
    await reserve(db)


async def test_concurrent_requests_of_one_member_start_one_job(db: Database) -> None:
    results = await asyncio.gather(*(db.create_generation(new_generation()) for _ in range(20)))
    assert sum(isinstance(r, Reservation) for r in results) == 1


async def test_per_guild_concurrency(db: Database) -> None:
    await db.set_concurrency(GUILD, per_member=1, per_guild=3)
    results = await asyncio.gather(*(db.create_generation(new_generation(user_id=10_000 + i)) for i in range(10)))
    granted = [r for r in results if isinstance(r, Reservation)]
    denied = [r for r in results if isinstance(r, QuotaDenied)]
    assert len(granted) == 3
    assert {(d.reason, d.running, d.max_running) for d in denied} == {(DenyReason.GUILD_CONCURRENCY, 3, 3)}
    await reserve(db, guild_id=OTHER_GUILD, user_id=ALICE)  # another guild has its own limit
    await db.mark_cancelled(granted[0].generation_id)
    await reserve(db, user_id=CAROL)
    await deny(db, user_id=BOB)


async def test_a_higher_member_concurrency_allows_parallel_jobs(db: Database) -> None:
    await db.set_concurrency(GUILD, per_member=2, per_guild=None)
    await reserve(db)
    await reserve(db)
    assert (await deny(db)).reason == DenyReason.MEMBER_CONCURRENCY


async def test_daily_period_resets_at_the_configured_utc_hour(db: Database, clock: FakeClock) -> None:
    assert clock.now().hour == 14
    await db.set_default_allowance(GUILD, 2)
    await db.set_period(GUILD, PeriodMode.DAILY, reset_hour=16)
    await finish(db, await reserve(db))
    await finish(db, await reserve(db))
    denied = await deny(db)
    assert denied.reason == DenyReason.MEMBER_QUOTA
    assert (denied.used, denied.limit) == (2, 2)
    assert denied.resets_at == at(clock, 16)
    clock.advance(at(clock, 15, 59) - clock.time())
    assert (await deny(db)).reason == DenyReason.MEMBER_QUOTA
    clock.advance(at(clock, 16, 0) + 1 - clock.time())
    reservation = await reserve(db)
    assert reservation.used == 1
    assert reservation.resets_at == at(clock, 16) + DAY


async def test_daily_reset_at_midnight_by_default(db: Database, clock: FakeClock) -> None:
    await db.set_default_allowance(GUILD, 1)
    await finish(db, await reserve(db))
    denied = await deny(db)
    midnight = datetime.fromtimestamp(at(clock, 0) + DAY, UTC)
    assert denied.resets_at == midnight.timestamp()
    assert (midnight.hour, midnight.minute) == (0, 0)
    clock.advance(midnight.timestamp() - clock.time() + 1)
    await reserve(db)


async def test_credits_count_in_the_period_they_were_reserved_in(db: Database, clock: FakeClock) -> None:
    """A job reserved before the reset and charged after it doesn't eat into the new period."""
    await db.set_default_allowance(GUILD, 1)
    await db.set_period(GUILD, PeriodMode.DAILY, reset_hour=15)
    before = await reserve(db)
    clock.advance(at(clock, 15) - clock.time() + 60)
    await finish(db, before)
    await db.set_concurrency(GUILD, per_member=5, per_guild=None)
    assert (await reserve(db)).used == 1


async def test_rolling_window_frees_credits_24_hours_after_they_were_reserved(db: Database, clock: FakeClock) -> None:
    await db.set_default_allowance(GUILD, 2)
    await db.set_period(GUILD, PeriodMode.ROLLING)
    first = await reserve(db)
    await finish(db, first)
    clock.advance(3 * HOUR)
    second = await reserve(db)
    await finish(db, second)
    first_at = (await db.get_generation(first.generation_id)).created_at  # type: ignore[union-attr]
    second_at = (await db.get_generation(second.generation_id)).created_at  # type: ignore[union-attr]
    denied = await deny(db)
    assert denied.reason == DenyReason.MEMBER_QUOTA
    assert denied.resets_at == pytest.approx(first_at + DAY)
    clock.advance(first_at + DAY - clock.time() - 60)
    assert (await deny(db)).resets_at == pytest.approx(first_at + DAY)
    clock.advance(120)
    await finish(db, await reserve(db))
    denied = await deny(db)
    assert denied.resets_at == pytest.approx(second_at + DAY)
    status = await db.quota_status(GUILD, ALICE)
    assert (status.period_mode, status.used, status.left) == (PeriodMode.ROLLING, 2, 0)
    assert status.resets_at == pytest.approx(second_at + DAY)


async def test_a_first_reservation_in_a_rolling_window_frees_up_a_day_later(db: Database, clock: FakeClock) -> None:
    await db.set_period(GUILD, PeriodMode.ROLLING)
    assert (await db.quota_status(GUILD, ALICE)).resets_at is None  # nothing counted
    now = clock.time()
    reservation = await reserve(db)
    assert reservation.resets_at == pytest.approx(now + DAY, abs=5)


async def test_rolling_window_waits_for_enough_credits_for_an_expensive_video(db: Database, clock: FakeClock) -> None:
    await db.set_default_allowance(GUILD, 5)
    await db.set_period(GUILD, PeriodMode.ROLLING)
    times = []
    for _ in range(5):
        reservation = await reserve(db, cost=1)
        times.append((await db.get_generation(reservation.generation_id)).created_at)  # type: ignore[union-attr]
        await finish(db, reservation)
        clock.advance(HOUR)
    denied = await deny(db, cost=3)
    assert denied.resets_at == pytest.approx(times[2] + DAY)  # three of the oldest credits must age out


async def test_a_video_costing_more_than_the_allowance_never_fits(db: Database) -> None:
    await db.set_default_allowance(GUILD, 3)
    denied = await deny(db, cost=5)
    assert (denied.reason, denied.cost, denied.limit, denied.resets_at) == (DenyReason.MEMBER_QUOTA, 5, 3, None)


async def test_refunded_credits_dont_count(db: Database) -> None:
    await db.set_default_allowance(GUILD, 1)
    reservation = await reserve(db)
    await db.mark_failed(reservation.generation_id, "upstream", "gateway said 502")
    assert (await reserve(db)).used == 1


async def test_member_override_beats_roles_and_the_most_generous_role_wins(db: Database) -> None:
    await db.set_default_allowance(GUILD, 10)
    await db.set_role_allowance(GUILD, ROLE_FAN, 3)
    await db.set_role_allowance(GUILD, ROLE_VIP, 20)

    status = await db.quota_status(GUILD, ALICE, [])
    assert (status.limit.credits, status.limit.source) == (10, LimitSource.DEFAULT)
    status = await db.quota_status(GUILD, ALICE, [ROLE_FAN])
    assert (status.limit.credits, status.limit.source, status.limit.role_id) == (3, LimitSource.ROLE, ROLE_FAN)
    status = await db.quota_status(GUILD, ALICE, [ROLE_FAN, ROLE_VIP, 999])
    assert (status.limit.credits, status.limit.source, status.limit.role_id) == (20, LimitSource.ROLE, ROLE_VIP)
    assert status.role_allowances == {ROLE_FAN: 3, ROLE_VIP: 20}

    await db.set_role_allowance(GUILD, ROLE_FAN, None)  # unlimited beats any number
    status = await db.quota_status(GUILD, ALICE, [ROLE_FAN, ROLE_VIP])
    assert (status.limit.credits, status.limit.source, status.limit.role_id) == (None, LimitSource.ROLE, ROLE_FAN)

    await db.set_member_override(GUILD, ALICE, 1)
    status = await db.quota_status(GUILD, ALICE, [ROLE_FAN, ROLE_VIP])
    assert (status.limit.credits, status.limit.source) == (1, LimitSource.OVERRIDE)
    await finish(db, await reserve(db, role_ids=(ROLE_FAN, ROLE_VIP)))
    denied = await deny(db, role_ids=(ROLE_FAN, ROLE_VIP))
    assert (denied.reason, denied.limit, denied.limit_source) == (DenyReason.MEMBER_QUOTA, 1, LimitSource.OVERRIDE)

    assert await db.remove_member_override(GUILD, ALICE)
    assert not await db.remove_member_override(GUILD, ALICE)
    await reserve(db, role_ids=(ROLE_FAN, ROLE_VIP))
    # Bob has the override-free path: his roles decide.
    assert (await db.quota_status(GUILD, BOB, [ROLE_VIP])).limit.credits == 20


async def test_an_unlimited_override_beats_a_zero_role(db: Database) -> None:
    await db.set_role_allowance(GUILD, ROLE_FAN, 0)
    assert (await deny(db, role_ids=(ROLE_FAN,))).limit == 0
    await db.set_member_override(GUILD, ALICE, None)
    reservation = await reserve(db, role_ids=(ROLE_FAN,))
    assert (reservation.limit.credits, reservation.limit.source) == (None, LimitSource.OVERRIDE)


async def test_admins_are_exempt_only_when_the_guild_says_so(db: Database) -> None:
    await db.set_default_allowance(GUILD, 1)
    await finish(db, await reserve(db, is_admin=True))
    assert (await deny(db, is_admin=True)).reason == DenyReason.MEMBER_QUOTA

    await db.set_admins_exempt(GUILD, True)
    first = await reserve(db, is_admin=True)
    second = await reserve(db, is_admin=True)  # no member concurrency limit either
    assert first.limit.source == LimitSource.EXEMPT and second.limit.unlimited
    status = await db.quota_status(GUILD, ALICE, is_admin=True)
    assert (status.limit.source, status.max_running, status.running) == (LimitSource.EXEMPT, None, 2)
    # A non-admin is still limited.
    await finish(db, await reserve(db, user_id=BOB))
    assert (await deny(db, user_id=BOB)).reason == DenyReason.MEMBER_QUOTA


async def test_the_guild_budget_and_guild_concurrency_apply_to_exempt_admins(db: Database) -> None:
    await db.set_admins_exempt(GUILD, True)
    await db.set_budget(GUILD, 2)
    await db.set_concurrency(GUILD, per_member=1, per_guild=2)
    await reserve(db, is_admin=True)
    await reserve(db, is_admin=True)
    assert (await deny(db, is_admin=True)).reason == DenyReason.GUILD_CONCURRENCY
    await db.set_concurrency(GUILD, per_member=1, per_guild=None)
    assert (await deny(db, is_admin=True)).reason == DenyReason.GUILD_BUDGET


async def test_a_banned_member_is_refused_with_the_reason(db: Database) -> None:
    assert await db.ban_member(GUILD, ALICE, reason="spamming gore prompts", banned_by=BOB)
    assert not await db.ban_member(GUILD, ALICE, reason="still spamming", banned_by=BOB)
    denied = await deny(db)
    assert (denied.reason, denied.ban_reason) == (DenyReason.BANNED, "still spamming")
    assert await db.check_access(GUILD, ALICE, CHANNEL) == QuotaDenied(DenyReason.BANNED, ban_reason="still spamming")
    assert [ban.user_id for ban in await db.bans(GUILD)] == [ALICE]
    await reserve(db, guild_id=OTHER_GUILD)  # bans are per guild
    assert await db.unban_member(GUILD, ALICE)
    assert not await db.unban_member(GUILD, ALICE)
    assert await db.check_access(GUILD, ALICE, CHANNEL) is None
    await reserve(db)


async def test_the_channel_allow_list(db: Database) -> None:
    await reserve(db, user_id=ALICE, channel_id=OTHER_CHANNEL)  # no list: anywhere
    assert await db.allow_channel(GUILD, CHANNEL, added_by=BOB)
    assert not await db.allow_channel(GUILD, CHANNEL)
    denied = await deny(db, user_id=BOB, channel_id=OTHER_CHANNEL)
    assert (denied.reason, denied.allowed_channel_ids) == (DenyReason.CHANNEL_NOT_ALLOWED, (CHANNEL,))
    await reserve(db, user_id=BOB, channel_id=CHANNEL)
    await reserve(db, user_id=CAROL, channel_id=THREAD, parent_channel_id=CHANNEL)  # a thread under it
    assert await db.check_access(GUILD, CAROL, OTHER_CHANNEL) == QuotaDenied(
        DenyReason.CHANNEL_NOT_ALLOWED, allowed_channel_ids=(CHANNEL,)
    )
    assert await db.allowed_channels(GUILD) == (CHANNEL,)
    assert await db.disallow_channel(GUILD, CHANNEL)
    assert not await db.disallow_channel(GUILD, CHANNEL)
    assert await db.allowed_channels(GUILD) == ()
    await reserve(db, user_id=CAROL + 1, channel_id=OTHER_CHANNEL)  # an empty list allows everywhere again


async def test_resetting_a_member_and_the_guild(db: Database) -> None:
    await db.set_default_allowance(GUILD, 1)
    await db.set_budget(GUILD, 2)
    await finish(db, await reserve(db, user_id=ALICE))
    await finish(db, await reserve(db, user_id=BOB))
    assert (await deny(db, user_id=ALICE)).reason == DenyReason.MEMBER_QUOTA
    await db.reset_usage(GUILD, ALICE, reset_by=CAROL)
    # Alice's allowance is fresh, but the guild budget still counts what she spent.
    assert (await deny(db, user_id=ALICE)).reason == DenyReason.GUILD_BUDGET
    await db.reset_usage(GUILD, reset_by=CAROL)
    await finish(db, await reserve(db, user_id=ALICE))
    await finish(db, await reserve(db, user_id=BOB))
    assert (await deny(db, user_id=CAROL)).reason == DenyReason.GUILD_BUDGET
    report = await db.usage_report(GUILD)
    assert report.charged == 4  # history is kept


async def test_quota_status_numbers(db: Database, clock: FakeClock) -> None:
    await db.set_default_allowance(GUILD, 10)
    await db.set_concurrency(GUILD, per_member=3, per_guild=5)
    await finish(db, await reserve(db, cost=2))
    await reserve(db, cost=3)
    await reserve(db, user_id=BOB, cost=1)
    status = await db.quota_status(GUILD, ALICE)
    assert (status.used, status.in_flight, status.left) == (5, 3, 5)
    assert (status.running, status.max_running, status.guild_running, status.max_guild_running) == (1, 3, 2, 5)
    assert status.resets_at == at(clock, 0) + DAY
    assert status.period_start == at(clock, 0)
    assert status.ban is None
    assert status.budget is None and status.budget_left is None


async def test_settings_round_trip(db: Database) -> None:
    settings = await db.get_guild_settings(GUILD)
    assert not settings.configured and settings.default_allowance == 10 and settings.max_concurrent_member == 1
    await db.set_period(GUILD, PeriodMode.ROLLING)
    await db.set_charge_moderation(GUILD, True)
    settings = await db.get_guild_settings(GUILD)
    assert settings.configured and settings.period_mode == PeriodMode.ROLLING and settings.charge_moderation
    assert settings.reset_hour == 0
    with pytest.raises(ValueError):
        await db.set_period(GUILD, PeriodMode.DAILY, reset_hour=24)
    with pytest.raises(ValueError):
        await db.set_concurrency(GUILD, per_member=0, per_guild=None)
    with pytest.raises(ValueError):
        await db.set_default_allowance(GUILD, -1)
    assert await db.member_overrides(GUILD) == {}
    await db.set_member_override(GUILD, BOB, 4)
    assert await db.member_overrides(GUILD) == {BOB: 4}
    assert await db.remove_role_allowance(GUILD, ROLE_FAN) is False
