"""The connection, its lock and the transaction helpers every storage module builds on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

import aiosqlite

from bot.clock import Clock

log = logging.getLogger(__name__)

Params = Sequence[Any] | dict[str, Any]

# Another connection (a second bot process, an admin's sqlite3 shell, a backup) may hold the write lock. SQLite's
# own busy wait blocks the connection's thread, and with it every query of this process, so it is kept short;
# the wait beyond it happens here, asleep on the event loop, with the connection free for reads in between.
LOCK_RETRY_TOTAL = 30.0
LOCK_RETRY_FIRST = 0.05
LOCK_RETRY_CAP = 1.0


class StorageError(Exception):
    """The database can't be used (or a record is missing); `str()` is one line an admin can act on."""


class NotFound(StorageError):
    """A record that must exist doesn't (an unknown generation id, say)."""


class Core:
    """One long-lived aiosqlite connection shared by all coroutines of the process.

    aiosqlite runs statements one at a time on its own thread, but statements from different coroutines
    would still interleave inside each other's transactions; every access therefore holds `_lock`, and a
    transaction holds it from BEGIN to COMMIT.
    """

    def __init__(self, conn: aiosqlite.Connection, clock: Clock, path: str) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._closed = False
        self.clock = clock
        self.path = path

    def _now(self) -> float:
        return self.clock.time()

    @contextlib.asynccontextmanager
    async def _transaction(self, *, write: bool = True) -> AsyncIterator[aiosqlite.Connection]:
        """One explicit transaction. Writes take the write lock up front (`BEGIN IMMEDIATE`), so a read that
        decides a write can't be overtaken by another process either; reads get one consistent snapshot.
        A write lock held elsewhere is waited for (see `LOCK_RETRY_TOTAL`) before BEGIN gives up."""
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
                yield self._conn
            except BaseException:
                await _finish(self._conn, "ROLLBACK")
                raise
            await _finish(self._conn, "COMMIT")
        finally:
            self._lock.release()

    async def _fetchall(self, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
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

    async def _fetchone(self, sql: str, params: Params = ()) -> aiosqlite.Row | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _execute(self, sql: str, params: Params = ()) -> int:
        """One single-statement write (atomic on its own); returns the number of rows it changed."""
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


async def fetchone(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> aiosqlite.Row | None:
    rows = await conn.execute_fetchall(sql, params)
    return next(iter(rows), None)


async def fetchall(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
    return list(await conn.execute_fetchall(sql, params))


async def execute(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> tuple[int, int | None]:
    """Run one statement inside a transaction; returns (rows changed, last row id)."""
    cursor = await conn.execute(sql, params)
    try:
        return cursor.rowcount, cursor.lastrowid
    finally:
        await cursor.close()


def placeholders(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


__all__ = ["Core", "NotFound", "StorageError", "execute", "fetchall", "fetchone", "placeholders"]
