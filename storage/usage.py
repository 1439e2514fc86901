"""Usage reports for admins: totals, top members, per model, failures and refunds."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from storage._core import Core, fetchall, fetchone

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MemberUsage:
    user_id: int
    credits: int  # charged + still reserved
    jobs: int


@dataclass(frozen=True, slots=True)
class ModelUsage:
    model: str
    credits: int
    jobs: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    guild_id: int
    since: float | None  # None: since the beginning
    until: float
    jobs: int
    succeeded: int
    failed: int
    cancelled: int
    unfinished: int
    charged: int  # credits
    reserved: int  # credits held by unfinished jobs
    refunded: int  # credits
    refunds: int  # how many reservations were refunded
    top_members: tuple[MemberUsage, ...]
    per_model: tuple[ModelUsage, ...]
    failures: tuple[tuple[str, int], ...]  # (error kind, count), most frequent first

    @property
    def credits(self) -> int:
        return self.charged + self.reserved


class UsageMixin(Core):
    async def usage_report(
        self, guild_id: int, *, since: float | None = None, until: float | None = None, top: int = 5
    ) -> UsageReport:
        """Everything reserved in [since, until) in this guild, from one consistent snapshot."""
        until = self._now() if until is None else until
        start = since if since is not None else float("-inf")
        window = (guild_id, start, until)
        where = "l.guild_id = ? AND l.created_at >= ? AND l.created_at < ?"
        async with self._transaction(write=False) as conn:
            totals = await fetchone(
                conn,
                "SELECT COUNT(*) AS jobs,"
                " COALESCE(SUM(CASE WHEN g.status = 'succeeded' THEN 1 ELSE 0 END), 0) AS succeeded,"
                " COALESCE(SUM(CASE WHEN g.status = 'failed' THEN 1 ELSE 0 END), 0) AS failed,"
                " COALESCE(SUM(CASE WHEN g.status = 'cancelled' THEN 1 ELSE 0 END), 0) AS cancelled,"
                " COALESCE(SUM(CASE WHEN g.status IN ('queued', 'running', 'delivering') THEN 1 ELSE 0 END), 0)"
                " AS unfinished,"
                " COALESCE(SUM(CASE WHEN l.state = 'charged' THEN l.credits END), 0) AS charged,"
                " COALESCE(SUM(CASE WHEN l.state = 'reserved' THEN l.credits END), 0) AS reserved,"
                " COALESCE(SUM(CASE WHEN l.state = 'refunded' THEN l.credits END), 0) AS refunded,"
                " COALESCE(SUM(CASE WHEN l.state = 'refunded' THEN 1 ELSE 0 END), 0) AS refunds"
                f" FROM ledger AS l LEFT JOIN generations AS g ON g.id = l.generation_id WHERE {where}",
                window,
            )
            members = await fetchall(
                conn,
                "SELECT l.user_id, COALESCE(SUM(CASE WHEN l.state != 'refunded' THEN l.credits END), 0) AS credits,"
                f" COUNT(*) AS jobs FROM ledger AS l WHERE {where}"
                " GROUP BY l.user_id ORDER BY credits DESC, jobs DESC, l.user_id LIMIT ?",
                (*window, top),
            )
            models = await fetchall(
                conn,
                "SELECT l.model, COALESCE(SUM(CASE WHEN l.state != 'refunded' THEN l.credits END), 0) AS credits,"
                f" COUNT(*) AS jobs FROM ledger AS l WHERE {where}"
                " GROUP BY l.model ORDER BY credits DESC, jobs DESC, l.model",
                window,
            )
            failures = await fetchall(
                conn,
                "SELECT COALESCE(g.error_kind, 'unknown') AS kind, COUNT(*) AS n"
                f" FROM ledger AS l JOIN generations AS g ON g.id = l.generation_id WHERE {where}"
                " AND g.status = 'failed' GROUP BY kind ORDER BY n DESC, kind",
                window,
            )
        assert totals is not None
        return UsageReport(
            guild_id=guild_id,
            since=since,
            until=until,
            jobs=totals["jobs"],
            succeeded=totals["succeeded"],
            failed=totals["failed"],
            cancelled=totals["cancelled"],
            unfinished=totals["unfinished"],
            charged=totals["charged"],
            reserved=totals["reserved"],
            refunded=totals["refunded"],
            refunds=totals["refunds"],
            top_members=tuple(MemberUsage(r["user_id"], r["credits"], r["jobs"]) for r in members),
            per_model=tuple(ModelUsage(r["model"], r["credits"], r["jobs"]) for r in models),
            failures=tuple((r["kind"], r["n"]) for r in failures),
        )


__all__ = ["MemberUsage", "ModelUsage", "UsageMixin", "UsageReport"]
