"""PostgreSQL through an asyncpg pool: for several bot processes (shards) on several machines.

The mixins' SQL uses `?` and `:name` parameters; they become `$1…$n` here, once per statement text (cached), and
asyncpg prepares and caches each statement per connection. Write transactions run at READ COMMITTED: the statements
that decide a write lock what they read (`SELECT … FOR UPDATE`, or an advisory lock for a guild's quota), so two
processes deciding at once are serialised exactly where they touch the same thing and nowhere else.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from storage._core import POSTGRESQL, Backend, Params, Row, StorageError, Tx
from storage.migrate import migrate_postgres

log = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 10
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=2048)
def translate(sql: str) -> tuple[str, tuple[str, ...] | None]:
    """`?` → `$1, $2, …`, or `:name` → `$n` (one number per distinct name); returns the SQL and, for named
    parameters, the names in number order. Our statements carry no `?` or `:word` inside string literals."""
    names: list[str] = []
    if _NAMED.search(sql):

        def number(match: re.Match[str]) -> str:
            name = match[1]
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        return _NAMED.sub(number, sql), tuple(names)
    counter = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql), None


def bind(sql: str, params: Params) -> tuple[str, Sequence[Any]]:
    text, names = translate(sql)
    if names is None:
        if isinstance(params, Mapping):
            raise TypeError("named parameters given to a statement with ? placeholders")
        return text, tuple(params)
    if not isinstance(params, Mapping):
        raise TypeError("positional parameters given to a statement with :name placeholders")
    return text, tuple(params[name] for name in names)


def _rowcount(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def display_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresTx(Tx):
    dialect = POSTGRESQL

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        text, args = bind(sql, params)
        return list(await self._conn.fetch(text, *args))

    async def execute(self, sql: str, params: Params = ()) -> int:
        text, args = bind(sql, params)
        return _rowcount(await self._conn.execute(text, *args))

    async def lock(self, scope: int, key: int = 0) -> None:
        # Two-key form: (scope, a 32-bit hash of the key). A hash collision only serialises two unrelated keys.
        await self._conn.execute("SELECT pg_advisory_xact_lock($1::int, hashint8($2::bigint))", scope, key)


class PostgresBackend(Backend):
    dialect = POSTGRESQL

    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self._closed = False
        self.description = display_url(url)

    @classmethod
    async def open(cls, url: str, *, pool_size: int = DEFAULT_POOL_SIZE) -> PostgresBackend:
        shown = display_url(url)
        dsn = "postgresql://" + url.split("://", 1)[1] if url.startswith("postgres://") else url
        try:
            pool = await asyncpg.create_pool(dsn, min_size=1, max_size=pool_size, command_timeout=60)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise StorageError(f"SORA_DATABASE_URL: can't connect to {shown}: {_one_line(exc)}") from None
        try:
            async with pool.acquire() as conn:
                version = await migrate_postgres(conn, path=shown)
        except BaseException:
            await pool.close()
            raise
        log.info("database %s open at schema version %d", shown, version)
        return cls(pool, url)

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[Tx]:
        self._check_open()
        async with self._pool.acquire() as conn:
            isolation = "read_committed" if write else "repeatable_read"
            async with conn.transaction(isolation=isolation, readonly=not write):
                yield PostgresTx(conn)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        self._check_open()
        text, args = bind(sql, params)
        async with self._pool.acquire() as conn:
            return list(await conn.fetch(text, *args))

    async def execute(self, sql: str, params: Params = ()) -> int:
        self._check_open()
        text, args = bind(sql, params)
        async with self._pool.acquire() as conn:
            return _rowcount(await conn.execute(text, *args))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pool.close()
        log.info("database %s closed", self.description)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the database is closed")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


__all__ = ["DEFAULT_POOL_SIZE", "PostgresBackend", "PostgresTx", "bind", "display_url", "translate"]
