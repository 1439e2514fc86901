"""SQLite through one long-lived aiosqlite connection: the embedded default, for one process on one machine (or a
few processes sharing one file on one disk)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiosqlite

from storage._core import SQLITE, Backend, Params, Row, StorageError, Tx
from storage.migrate import migrate_sqlite

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 0.25  # SQLite's own wait; longer waits are retried asleep, below

# Another connection (a second bot process, an admin's sqlite3 shell, a backup) may hold the write lock. SQLite's
# own busy wait blocks the connection's thread, and with it every query of this process, so it is kept short;
# the wait beyond it happens here, asleep on the event loop, with the connection free for reads in between.
LOCK_RETRY_TOTAL = 30.0
LOCK_RETRY_FIRST = 0.05
LOCK_RETRY_CAP = 1.0


class SqliteTx(Tx):
    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Params = ()) -> int:
        cursor = await self._conn.execute(sql, params)
        try:
            return cursor.rowcount
        finally:
            await cursor.close()

    async def lock(self, scope: int, key: int = 0) -> None:
        return None  # BEGIN IMMEDIATE took the database's one write lock


class SqliteBackend(Backend):
    """aiosqlite runs statements one at a time on its own thread, but statements from different coroutines
    would still interleave inside each other's transactions; every access therefore holds `_lock`, and a
    transaction holds it from BEGIN to COMMIT."""

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._closed = False
        self.path = path
        self.description = path

    @classmethod
    async def open(cls, path: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> SqliteBackend:
        if path != ":memory:" and not path.startswith("file:"):
            parent = Path(path).expanduser().resolve().parent  # noqa: ASYNC240 (once, at start-up)
            if not parent.is_dir():
                raise StorageError(f"SORA_DB_PATH: the folder {parent} doesn't exist")
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
            version = await migrate_sqlite(conn, path=path)
        except sqlite3.DatabaseError as exc:
            await conn.close()
            raise StorageError(f"SORA_DB_PATH: {path} is not a usable SQLite database: {exc}") from None
        except BaseException:
            await conn.close()
            raise
        log.info("database %s open at schema version %d", path, version)
        return cls(conn, path)

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[Tx]:
        """Writes take the write lock up front (`BEGIN IMMEDIATE`), so a read that decides a write can't be
        overtaken by another process either; reads get one consistent snapshot. A write lock held elsewhere is
        waited for (see `LOCK_RETRY_TOTAL`) before BEGIN gives up."""
        delays = _lock_delays()
        while True:
            await self._lock.acquire()
            try:
                self._check_open()
                # Inside the try: a caller cancelled while BEGIN is queued must still roll it back.
                await _run(self._conn, "BEGIN IMMEDIATE" if write else "BEGIN")
                break
            except sqlite3.OperationalError as exc:
                await _finish(self._conn, "ROLLBACK")
                self._lock.release()
                delay = next(delays, None) if _is_busy(exc) else None
                if delay is None:
                    raise
                await asyncio.sleep(delay)
            except BaseException:
                await _finish(self._conn, "ROLLBACK")
                self._lock.release()
                raise
        try:
            try:
                yield SqliteTx(self._conn)
            except BaseException:
                await _finish(self._conn, "ROLLBACK")
                raise
            await _finish(self._conn, "COMMIT")
        finally:
            self._lock.release()

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        delays = _lock_delays()
        while True:
            async with self._lock:
                self._check_open()
                try:
                    return list(await self._conn.execute_fetchall(sql, params))
                except sqlite3.OperationalError as exc:
                    delay = next(delays, None) if _is_busy(exc) else None
                    if delay is None:
                        raise
            await asyncio.sleep(delay)

    async def execute(self, sql: str, params: Params = ()) -> int:
        delays = _lock_delays()
        while True:
            async with self._lock:
                self._check_open()
                try:
                    cursor = await self._conn.execute(sql, params)
                except sqlite3.OperationalError as exc:
                    delay = next(delays, None) if _is_busy(exc) else None
                    if delay is None:
                        raise
                else:
                    try:
                        return cursor.rowcount
                    finally:
                        await cursor.close()
            await asyncio.sleep(delay)

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

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the database is closed")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _lock_delays() -> Iterator[float]:
    """Backoff delays for a busy database, doubling up to `LOCK_RETRY_CAP`, `LOCK_RETRY_TOTAL` seconds in all."""
    spent, delay = 0.0, LOCK_RETRY_FIRST
    while spent < LOCK_RETRY_TOTAL:
        yield delay
        spent += delay
        delay = min(delay * 2, LOCK_RETRY_CAP)


async def _finish(conn: aiosqlite.Connection, statement: str) -> None:
    # Shielded so a cancelled caller can't leave the transaction open while the lock is released; a ROLLBACK
    # after a COMMIT that did go through (cancelled mid-await) finds no transaction, which is fine.
    try:
        await asyncio.shield(_run(conn, statement))
    except sqlite3.OperationalError as exc:
        if statement != "ROLLBACK" or "no transaction" not in str(exc):
            raise


async def _run(conn: aiosqlite.Connection, statement: str) -> None:
    cursor = await conn.execute(statement)
    await cursor.close()


__all__ = ["DEFAULT_BUSY_TIMEOUT", "SqliteBackend", "SqliteTx"]
