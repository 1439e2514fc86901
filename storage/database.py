"""`Database`: the one storage handle the entry point opens and injects into the bot."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Generator
from pathlib import Path
from types import TracebackType
from typing import Any

from bot.clock import Clock
from storage._core import Backend, StorageError
from storage.coordination import CoordinationMixin
from storage.generations import GenerationsMixin
from storage.guilds import GuildsMixin
from storage.leases import LeasesMixin
from storage.postgres import DEFAULT_POOL_SIZE, PostgresBackend
from storage.quota import QuotaMixin
from storage.sqlite import DEFAULT_BUSY_TIMEOUT, SqliteBackend
from storage.usage import UsageMixin

log = logging.getLogger(__name__)


class Database(GenerationsMixin, LeasesMixin, CoordinationMixin, QuotaMixin, GuildsMixin, UsageMixin):
    """The bot's storage on SQLite (one aiosqlite connection: WAL, busy timeout, foreign keys) or PostgreSQL (an
    asyncpg pool), migrated on open.

    `db = await Database.open(url, clock=clock)` … `await db.close()`, or `async with Database.open(url) as db`;
    `url` is `sqlite:///path`, `postgresql://user@host:port/db`, or a plain SQLite file path.
    """

    @classmethod
    def open(
        cls,
        url: str | Path,
        *,
        clock: Clock | None = None,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> _Opening:
        return _Opening(cls._open(str(url), clock or Clock(), busy_timeout, pool_size))

    @classmethod
    async def _open(cls, url: str, clock: Clock, busy_timeout: float, pool_size: int) -> Database:
        backend: Backend
        if url.startswith(("postgresql://", "postgres://")):
            backend = await PostgresBackend.open(url, pool_size=pool_size)
        elif url.startswith("sqlite://"):
            path = url.removeprefix("sqlite://").removeprefix("/") or ":memory:"
            backend = await SqliteBackend.open(path, busy_timeout=busy_timeout)
        elif "://" in url:
            scheme = url.split("://", 1)[0]
            raise StorageError(f"SORA_DATABASE_URL: unknown kind of database {scheme!r} (sqlite:// or postgresql://)")
        else:
            backend = await SqliteBackend.open(url, busy_timeout=busy_timeout)
        return cls(backend, clock)

    @property
    def path(self) -> str:
        return self.description

    async def close(self) -> None:
        await self._backend.close()

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Database {self.description}>"


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
