"""Usage reports: totals, top members, per model, failures and refunds."""

from __future__ import annotations

from bot.clock import FakeClock
from storage import Database, MemberUsage, ModelUsage
from tests.storage.helpers import ALICE, BOB, CAROL, GUILD, OTHER_GUILD, reserve


async def test_usage_report(db: Database, clock: FakeClock) -> None:
    await db.set_default_allowance(GUILD, None)
    await db.set_concurrency(GUILD, per_member=10, per_guild=None)
    old = await reserve(db, user_id=CAROL, cost=9)
    await db.mark_succeeded(old.generation_id, result_url="u")
    clock.advance(3600)
    since = clock.time()
    for user, model, cost in ((ALICE, "sora-2", 1), (ALICE, "sora-2-pro", 5), (BOB, "sora-2", 1)):
        await db.mark_succeeded((await reserve(db, user_id=user, model=model, cost=cost)).generation_id, result_url="u")
    await db.mark_failed((await reserve(db, user_id=BOB, cost=1)).generation_id, "upstream", "502")
    await db.mark_failed((await reserve(db, user_id=BOB, cost=1)).generation_id, "moderation", "policy")
    await db.mark_cancelled((await reserve(db, user_id=ALICE, cost=5, model="sora-2-pro")).generation_id)
    await reserve(db, user_id=ALICE, cost=1)  # still running
    await reserve(db, guild_id=OTHER_GUILD, cost=7)  # another guild

    report = await db.usage_report(GUILD, since=since)
    assert (report.jobs, report.succeeded, report.failed, report.cancelled, report.unfinished) == (7, 3, 2, 1, 1)
    assert (report.charged, report.reserved, report.refunded, report.refunds) == (7, 1, 7, 3)
    assert report.credits == 8
    assert report.top_members == (MemberUsage(ALICE, 7, 4), MemberUsage(BOB, 1, 3))
    assert report.per_model == (ModelUsage("sora-2-pro", 5, 2), ModelUsage("sora-2", 3, 5))
    assert report.failures == (("moderation", 1), ("upstream", 1))

    everything = await db.usage_report(GUILD, top=1)
    assert everything.jobs == 8 and everything.charged == 16
    assert everything.top_members == (MemberUsage(CAROL, 9, 1),)

    empty = await db.usage_report(GUILD, since=clock.time() + 10)
    assert (empty.jobs, empty.credits, empty.top_members, empty.per_model) == (0, 0, (), ())
