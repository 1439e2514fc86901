"""Numbered migration files (`storage/migrations/NNNN_name.sql`), each applied in one transaction; the schema
version lives in the database itself (`PRAGMA user_version`)."""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources

import aiosqlite

from storage._core import StorageError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def known_migrations() -> tuple[Migration, ...]:
    """The shipped migrations in order; their numbers must run 1, 2, 3, … without gaps."""
    found: list[Migration] = []
    for entry in resources.files("storage").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StorageError(
                f"migration files are not numbered 1..N: expected {expected:04d}, found {migration.name}"
            )
    return tuple(found)


def latest_version() -> int:
    return len(known_migrations())


async def schema_version(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def migrate(conn: aiosqlite.Connection, *, target: int | None = None, path: str = "the database") -> int:
    """Bring the schema up to `target` (default: the latest); returns the version it ends at.

    A database newer than this code refuses to open rather than be misread. `conn` must be in autocommit
    mode (`isolation_level=None`) so each migration's own BEGIN/COMMIT is the only transaction.
    """
    migrations = known_migrations()
    target = len(migrations) if target is None else target
    current = await schema_version(conn)
    if current > len(migrations):
        raise StorageError(
            f"{path} has schema version {current}, but this sora-bot only knows up to {len(migrations)}: "
            "upgrade sora-bot, or point SORA_DB_PATH at another file"
        )
    for migration in migrations[current:target]:
        log.info("applying migration %s", migration.name)
        await _apply(conn, migration)
        current = migration.version
    return current


async def _apply(conn: aiosqlite.Connection, migration: Migration) -> None:
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


__all__ = ["Migration", "known_migrations", "latest_version", "migrate", "schema_version"]
