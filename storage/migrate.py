"""Numbered migration files, one history for both databases: `storage/migrations/<dialect>/NNNN_name.sql`, the
same numbers and names in `sqlite/` and `postgresql/`, each applied in one transaction. SQLite keeps the schema
version in `PRAGMA user_version`; PostgreSQL in the one-row table `sora_schema`."""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources

import aiosqlite
import asyncpg

from storage._core import LOCK_MIGRATIONS, StorageError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
DIALECTS = ("sqlite", "postgresql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def known_migrations(dialect: str = "sqlite") -> tuple[Migration, ...]:
    """The shipped migrations of one dialect in order; their numbers must run 1, 2, 3, … without gaps."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    found: list[Migration] = []
    for entry in resources.files("storage").joinpath("migrations", dialect).iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StorageError(
                f"{dialect} migration files are not numbered 1..N: expected {expected:04d}, found {migration.name}"
            )
    return tuple(found)


def latest_version() -> int:
    return len(known_migrations("sqlite"))


def _refuse_newer(current: int, known: int, path: str) -> None:
    if current > known:
        raise StorageError(
            f"{path} has schema version {current}, but this sora-bot only knows up to {known}: "
            "upgrade sora-bot, or point SORA_DATABASE_URL at another database"
        )


# --- SQLite ----------------------------------------------------------------------------------------------------


async def schema_version(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def migrate_sqlite(
    conn: aiosqlite.Connection, *, target: int | None = None, path: str = "the database"
) -> int:
    """Bring the schema up to `target` (default: the latest); returns the version it ends at.

    A database newer than this code refuses to open rather than be misread. `conn` must be in autocommit
    mode (`isolation_level=None`) so each migration's own BEGIN/COMMIT is the only transaction.
    """
    migrations = known_migrations("sqlite")
    target = len(migrations) if target is None else target
    current = await schema_version(conn)
    _refuse_newer(current, len(migrations), path)
    for migration in migrations[current:target]:
        log.info("applying migration %s", migration.name)
        await _apply_sqlite(conn, migration)
        current = migration.version
    return current


async def _apply_sqlite(conn: aiosqlite.Connection, migration: Migration) -> None:
    """One migration in one transaction. Foreign keys are off while it runs (a table rebuild drops and renames
    tables, which with them on would cascade), and checked before it commits."""
    enforcing = bool(next(iter(await conn.execute_fetchall("PRAGMA foreign_keys")))[0])
    await conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: so it comes first
    try:
        await conn.executescript(f"BEGIN IMMEDIATE;\n{migration.sql}")
        broken = list(await conn.execute_fetchall("PRAGMA foreign_key_check"))
        if broken:
            raise sqlite3.IntegrityError(f"{len(broken)} rows break a foreign key, e.g. in table {broken[0][0]}")
        await conn.execute(f"PRAGMA user_version = {migration.version}")
        await conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            await conn.rollback()
        raise StorageError(f"migration {migration.name} failed and was rolled back: {exc}") from exc
    finally:
        if enforcing:
            await conn.execute("PRAGMA foreign_keys = ON")


# --- PostgreSQL ------------------------------------------------------------------------------------------------


async def postgres_schema_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass('sora_schema') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT version FROM sora_schema") or 0)


async def migrate_postgres(conn: asyncpg.Connection, *, target: int | None = None, path: str = "the database") -> int:
    """Like `migrate_sqlite`. Processes starting at once take turns (a session advisory lock): one applies the
    migrations, the others find them applied."""
    migrations = known_migrations("postgresql")
    target = len(migrations) if target is None else target
    await conn.execute("SELECT pg_advisory_lock($1::int, 0)", LOCK_MIGRATIONS)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS sora_schema (version INTEGER NOT NULL)")
        await conn.execute("INSERT INTO sora_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM sora_schema)")
        current = await postgres_schema_version(conn)
        _refuse_newer(current, len(migrations), path)
        for migration in migrations[current:target]:
            log.info("applying migration %s", migration.name)
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute("UPDATE sora_schema SET version = $1", migration.version)
            except asyncpg.PostgresError as exc:
                raise StorageError(f"migration {migration.name} failed and was rolled back: {exc}") from exc
            current = migration.version
        return current
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1::int, 0)", LOCK_MIGRATIONS)


__all__ = [
    "DIALECTS",
    "Migration",
    "known_migrations",
    "latest_version",
    "migrate_postgres",
    "migrate_sqlite",
    "postgres_schema_version",
    "schema_version",
]
