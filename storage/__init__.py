"""Storage on SQLite (the default) or PostgreSQL: schema, migrations, quota ledger, generations, the coordination
of several processes. All SQL of the project lives here.

The bot uses one `Database` (opened by the entry point, injected as `bot.db`). Its methods are grouped by
concern: `generations` (the job lifecycle and the remix tree), `quota` (limits and status), `guilds` (settings,
rules, bans, channels), `usage` (reports).
"""

from storage._core import NotFound, StorageError
from storage.coordination import SlotTurn
from storage.copy import CopyReport, LedgerSum, MigrationReport, TableCopy, copy_database, migrate_database
from storage.database import Database
from storage.generations import (
    INTERACTION_TOKEN_TTL,
    MODERATION,
    RESTART,
    Generation,
    GenerationStatus,
    Lease,
    LeaseGrant,
    LeaseLost,
    NewGeneration,
    Settlement,
)
from storage.guilds import DEFAULT_ALLOWANCE, Ban, GuildSettings, PeriodMode
from storage.leases import CancelOutcome, DeliveryStart, OwnedJob, ShardSlice, StraySettlement
from storage.migrate import latest_version
from storage.quota import (
    DAY,
    DenyReason,
    EffectiveLimit,
    LedgerState,
    LimitSource,
    QuotaDenied,
    QuotaStatus,
    Reservation,
    next_daily_reset,
    period_start,
)
from storage.usage import MemberUsage, ModelUsage, UsageReport

__all__ = [
    "DAY",
    "DEFAULT_ALLOWANCE",
    "INTERACTION_TOKEN_TTL",
    "MODERATION",
    "RESTART",
    "Ban",
    "CancelOutcome",
    "CopyReport",
    "Database",
    "DeliveryStart",
    "DenyReason",
    "EffectiveLimit",
    "Generation",
    "GenerationStatus",
    "GuildSettings",
    "Lease",
    "LeaseGrant",
    "LeaseLost",
    "LedgerState",
    "LedgerSum",
    "LimitSource",
    "MemberUsage",
    "MigrationReport",
    "ModelUsage",
    "NewGeneration",
    "NotFound",
    "OwnedJob",
    "PeriodMode",
    "QuotaDenied",
    "QuotaStatus",
    "Reservation",
    "Settlement",
    "ShardSlice",
    "SlotTurn",
    "StorageError",
    "StraySettlement",
    "TableCopy",
    "UsageReport",
    "copy_database",
    "latest_version",
    "migrate_database",
    "next_daily_reset",
    "period_start",
]
