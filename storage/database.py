"""`Database`: the one storage handle the entry point opens and injects into the bot."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Generator
from pathlib import Path
from types import TracebackType
from typing import Any

import aiosqlite

from bot.clock import Clock
from storage._core import StorageError
from storage.generations import GenerationsMixin
from storage.guilds import GuildsMixin
from storage.leases import LeasesMixin
from storage.migrate import migrate
from storage.quota import QuotaMixin
from storage.usage import UsageMixin

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 0.25  # SQLite's own wait; longer waits are retried asleep (storage._core)


class Database(GenerationsMixin, LeasesMixin, QuotaMixin, GuildsMixin, UsageMixin):
    """SQLite through one long-lived aiosqlite connection: WAL, busy timeout, foreign keys, migrated on open.

    `db = await Database.open(path, clock=clock)` … `await db.close()`, or `async with Database.open(path) as db`.
    """

    @classmethod
    def open(
        cls, path: str | Path, *, clock: Clock | None = None, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> _Opening:
        path = str(path)
        if path != ":memory:" and not path.startswith("file:"):
            parent = Path(path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StorageError(f"SORA_DB_PATH: the folder {parent} doesn't exist")
        return _Opening(cls._open(path, clock or Clock(), busy_timeout))

    @classmethod
    async def _open(cls, path: str, clock: Clock, busy_timeout: float) -> Database:
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StorageError(f"SORA_DB_PATH: can't open {path}: {exc}") from None
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a committed charge or refund survives a power cut, not just a crash.
            await conn.execute("PRAGMA synchronous = FULL")
            version = await migrate(conn, path=path)
        except sqlite3.DatabaseError as exc:
            await conn.close()
            raise StorageError(f"SORA_DB_PATH: {path} is not a usable SQLite database: {exc}") from None
        except BaseException:
            await conn.close()
            raise
        log.info("database %s open at schema version %d", path, version)
        return cls(conn, clock, path)

    async def close(self) -> None:
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                await self._conn.execute("PRAGMA optimize")
            finally:
                await self._conn.close()
        log.info("database %s closed", self.path)

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Database {self.path}>"


class _Opening(Awaitable[Database]):
    """What `Database.open()` returns: await it for the handle, or use it with `async with`."""

    def __init__(self, opening: Awaitable[Database]) -> None:
        self._opening = opening
        self._db: Database | None = None

    def __await__(self) -> Generator[Any, None, Database]:
        return self._opening.__await__()

    async def __aenter__(self) -> Database:
        self._db = await self._opening
        return self._db

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._db is not None:
            await self._db.close()


__all__ = ["Database"]
