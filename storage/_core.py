"""What every storage module builds on: the backend (SQLite or PostgreSQL), its transactions, and the SQL dialect.

The mixins write their SQL once, in the subset both databases understand, with `?` or `:name` parameters; the
few places where the two differ ask the `Dialect` (`db.dialect.greatest`, row locks) or keep one statement per
dialect. The PostgreSQL backend rewrites parameters to `$n`.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.clock import Clock

Params = Sequence[Any] | Mapping[str, Any]
Row = Mapping[str, Any]  # aiosqlite.Row or asyncpg.Record: both index by column name and by position


class StorageError(Exception):
    """The database can't be used (or a record is missing); `str()` is one line an admin can act on."""


class NotFound(StorageError):
    """A record that must exist doesn't (an unknown generation id, say)."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few spellings that differ between the two databases."""

    name: str
    greatest: str  # the two-argument maximum: MAX(a, b) in SQLite, GREATEST(a, b) in PostgreSQL
    row_locks: bool  # SELECT … FOR UPDATE exists (SQLite's write transaction already excludes every writer)

    def for_update(self, table: str | None = None) -> str:
        """The suffix that locks the rows a read-decide-write transaction reads (nothing on SQLite)."""
        if not self.row_locks:
            return ""
        return f" FOR UPDATE OF {table}" if table else " FOR UPDATE"

    def skip_locked(self) -> str:
        """Lock the rows read and skip those another transaction holds (claiming work from a shared table)."""
        return " FOR UPDATE SKIP LOCKED" if self.row_locks else ""


SQLITE = Dialect("sqlite", greatest="MAX", row_locks=False)
POSTGRESQL = Dialect("postgresql", greatest="GREATEST", row_locks=True)


class Tx(abc.ABC):
    """One open transaction."""

    dialect: Dialect

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns the number of rows it changed."""

    @abc.abstractmethod
    async def lock(self, scope: int, key: int = 0) -> None:
        """Serialise with every other transaction that locks (`scope`, `key`), until this one ends, in any process.
        SQLite's write transaction already excludes all other writers, so there it costs nothing."""


class Backend(abc.ABC):
    dialect: Dialect
    description: str  # where it is, for logs and errors: no password

    @abc.abstractmethod
    def transaction(self, *, write: bool = True) -> contextlib.AbstractAsyncContextManager[Tx]:
        """An explicit transaction. A write transaction's reads decide its writes: on SQLite it holds the write
        lock from BEGIN; on PostgreSQL the statements that decide take row or advisory locks (`Tx.lock`,
        `Dialect.for_update`). A read transaction sees one consistent snapshot."""

    @abc.abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    @abc.abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """One single-statement write, atomic on its own; returns the number of rows it changed."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class Core:
    """The handle every mixin shares: a backend, the bot's clock, and the SQL helpers."""

    def __init__(self, backend: Backend, clock: Clock) -> None:
        self._backend = backend
        self.clock = clock
        self.dialect = backend.dialect

    @property
    def description(self) -> str:
        return self._backend.description

    def _now(self) -> float:
        return self.clock.time()

    @contextlib.asynccontextmanager
    async def _transaction(self, *, write: bool = True) -> AsyncIterator[Tx]:
        async with self._backend.transaction(write=write) as tx:
            yield tx

    async def _fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._backend.fetchall(sql, params)

    async def _fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self._backend.fetchall(sql, params)
        return rows[0] if rows else None

    async def _execute(self, sql: str, params: Params = ()) -> int:
        return await self._backend.execute(sql, params)


async def fetchone(tx: Tx, sql: str, params: Params = ()) -> Row | None:
    return await tx.fetchone(sql, params)


async def fetchall(tx: Tx, sql: str, params: Params = ()) -> list[Row]:
    return await tx.fetchall(sql, params)


async def execute(tx: Tx, sql: str, params: Params = ()) -> int:
    """Run one statement inside a transaction; returns the number of rows it changed."""
    return await tx.execute(sql, params)


def placeholders(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


# Scopes of `Tx.lock`; the key within a scope is a guild id, an identify bucket, or 0.
LOCK_MIGRATIONS = 1
LOCK_GUILD_QUOTA = 2
LOCK_GATEWAY_SLOTS = 3
LOCK_IDENTIFY = 4


__all__ = [
    "LOCK_GATEWAY_SLOTS",
    "LOCK_GUILD_QUOTA",
    "LOCK_IDENTIFY",
    "LOCK_MIGRATIONS",
    "POSTGRESQL",
    "SQLITE",
    "Backend",
    "Core",
    "Dialect",
    "NotFound",
    "Params",
    "Row",
    "StorageError",
    "Tx",
    "execute",
    "fetchall",
    "fetchone",
    "placeholders",
]
