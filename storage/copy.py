"""The storage side of `sora-bot db`: copy one database into another (any direction between SQLite and
PostgreSQL), and migrate one to the latest schema.

A copy reads the source in one snapshot and writes the target in one transaction, a batch at a time, and verifies
the target against the source — row counts, the ledger's sums, and a checksum per table — before that transaction
commits: a copy either arrives whole and verified or not at all. The tables are discovered from the schema (all but
SQLite's own and the schema-version bookkeeping), ordered so that every foreign key points at a table copied before.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

from storage._core import Row, StorageError, Tx
from storage.database import Database
from storage.migrate import postgres_schema_version, schema_version

log = logging.getLogger(__name__)

DEFAULT_BATCH = 1000
BOOKKEEPING_TABLES = frozenset({"sora_schema"})  # PostgreSQL's schema version (SQLite keeps it in user_version)
# Parameters per INSERT: PostgreSQL's wire protocol counts them in 16 bits; SQLite allows 32766 since 3.32.
MAX_PARAMETERS = 32000 if sqlite3.sqlite_version_info >= (3, 32) else 999
_CHECKSUM_MODULUS = 2**256
_OPEN_PREFIXES = ("SORA_DATABASE_URL: ", "SORA_DB_PATH: ")


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table as copied and verified: its rows, and the checksum both sides agreed on (hex)."""

    name: str
    rows: int
    checksum: str


@dataclass(frozen=True, slots=True)
class LedgerSum:
    state: str
    count: int
    credits: int


@dataclass(frozen=True, slots=True)
class CopyReport:
    source: str  # where from and where to, without passwords
    target: str
    tables: tuple[TableCopy, ...]
    ledger: tuple[LedgerSum, ...]
    seconds: float

    @property
    def counts(self) -> dict[str, int]:
        return {table.name: table.rows for table in self.tables}

    @property
    def total_rows(self) -> int:
        return sum(table.rows for table in self.tables)


@dataclass(frozen=True, slots=True)
class MigrationReport:
    database: str  # without a password
    before: int
    after: int

    @property
    def migrated(self) -> bool:
        return self.after != self.before


# --- schema ----------------------------------------------------------------------------------------------------

# How values of a column are normalised: "int" (64 bits), "int32", "int16", "float", "text", "bytes", "bool", or
# "any" (passed as they are).
Kind = str
_INT_BITS = {"int": 64, "int32": 32, "int16": 16}
_NARROW = frozenset({"int32", "int16"})
_TYPES: dict[Kind, type] = {
    "int": int,
    "int32": int,
    "int16": int,
    "float": float,
    "text": str,
    "bool": bool,
    "bytes": bytes,
}


@dataclass(frozen=True, slots=True)
class _ForeignKey:
    columns: tuple[str, ...]
    table: str
    ref_columns: tuple[str, ...]


@dataclass(slots=True)
class _Table:
    name: str
    columns: dict[str, Kind]  # in the table's order
    primary_key: tuple[str, ...]
    foreign_keys: list[_ForeignKey] = field(default_factory=list)


def _sqlite_kind(declared: str) -> Kind:
    """SQLite's type-affinity rules (https://sqlite.org/datatype3.html, 3.1), in their order."""
    declared = declared.upper()
    if "INT" in declared:
        return "int"
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if "BLOB" in declared or not declared:
        return "any"
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return "float"
    return "any"


_POSTGRES_KINDS: dict[str, Kind] = {
    "bigint": "int",
    "integer": "int32",
    "smallint": "int16",
    "double precision": "float",
    "real": "float",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "boolean": "bool",
    "bytea": "bytes",
}


async def _sqlite_schema(tx: Tx) -> dict[str, _Table]:
    names = await tx.fetchall(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    )
    tables: dict[str, _Table] = {}
    for (name,) in (tuple(row) for row in names):
        if name in BOOKKEEPING_TABLES:
            continue
        info = await tx.fetchall(f"PRAGMA table_info({_quote(name)})")
        columns = {str(row["name"]): _sqlite_kind(str(row["type"] or "")) for row in info}
        primary_key = tuple(str(row["name"]) for row in sorted(info, key=lambda r: r["pk"]) if row["pk"])
        table = _Table(name, columns, primary_key)
        keys: dict[int, list[Row]] = {}
        for row in await tx.fetchall(f"PRAGMA foreign_key_list({_quote(name)})"):
            keys.setdefault(int(row["id"]), []).append(row)
        for parts in keys.values():
            parts.sort(key=lambda r: r["seq"])
            ref_table = str(parts[0]["table"])
            table.foreign_keys.append(
                _ForeignKey(
                    tuple(str(p["from"]) for p in parts),
                    ref_table,
                    # `REFERENCES t` without columns means t's primary key, filled in below
                    tuple(str(p["to"]) for p in parts if p["to"] is not None),
                )
            )
        tables[name] = table
    for table in tables.values():
        for i, key in enumerate(table.foreign_keys):
            if not key.ref_columns and key.table in tables:
                table.foreign_keys[i] = _ForeignKey(key.columns, key.table, tables[key.table].primary_key)
    return tables


async def _postgres_schema(tx: Tx) -> dict[str, _Table]:
    tables: dict[str, _Table] = {}
    for row in await tx.fetchall(
        "SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    ):
        if row["name"] not in BOOKKEEPING_TABLES:
            tables[row["name"]] = _Table(row["name"], {}, ())
    for row in await tx.fetchall(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    ):
        if row["table_name"] in tables:
            tables[row["table_name"]].columns[row["column_name"]] = _POSTGRES_KINDS.get(row["data_type"], "any")
    # Every constraint's columns in key order; `conkey` and `confkey` pair up position by position.
    for row in await tx.fetchall(
        "SELECT con.contype::text AS kind, cl.relname AS table_name, ref.relname AS ref_table, "
        "ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(num, pos) "
        "      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.pos) AS columns, "
        "ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(num, pos) "
        "      JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.pos) AS ref_columns "
        "FROM pg_constraint con JOIN pg_class cl ON cl.oid = con.conrelid "
        "JOIN pg_namespace n ON n.oid = cl.relnamespace LEFT JOIN pg_class ref ON ref.oid = con.confrelid "
        "WHERE n.nspname = current_schema() AND con.contype IN ('p', 'f') ORDER BY con.conname"
    ):
        table = tables.get(row["table_name"])
        if table is None:
            continue
        if row["kind"] == "p":
            table.primary_key = tuple(row["columns"])
        else:
            table.foreign_keys.append(_ForeignKey(tuple(row["columns"]), row["ref_table"], tuple(row["ref_columns"])))
    return tables


async def _schema(tx: Tx) -> dict[str, _Table]:
    return await (_postgres_schema(tx) if tx.dialect.name == "postgresql" else _sqlite_schema(tx))


def _copy_order(tables: dict[str, _Table]) -> list[_Table]:
    """The tables so that each comes after every table its foreign keys point at (a table's keys onto itself are
    handled while it is copied); ties in name order, so every run copies alike."""
    ordered: list[_Table] = []
    done: set[str] = set()
    waiting = dict(sorted(tables.items()))
    while waiting:
        ready = [
            name
            for name, table in waiting.items()
            if all(key.table in done or key.table == name or key.table not in tables for key in table.foreign_keys)
        ]
        if not ready:
            raise StorageError(f"the foreign keys between {', '.join(waiting)} form a cycle; can't order the copy")
        for name in ready:
            ordered.append(waiting.pop(name))
            done.add(name)
    return ordered


def _compare_schemas(source: dict[str, _Table], target: dict[str, _Table]) -> None:
    if set(source) != set(target):
        only_source = sorted(set(source) - set(target))
        only_target = sorted(set(target) - set(source))
        detail = "; ".join(
            part
            for part in (
                f"only FROM has {', '.join(only_source)}" if only_source else "",
                f"only TO has {', '.join(only_target)}" if only_target else "",
            )
            if part
        )
        raise StorageError(f"FROM and TO have different tables ({detail}); both should be at the same schema version")
    for name, table in target.items():
        if set(table.columns) != set(source[name].columns):
            differ = sorted(set(table.columns) ^ set(source[name].columns))
            raise StorageError(f"table {name}: the columns differ between FROM and TO ({', '.join(differ)})")
        if not table.primary_key:
            raise StorageError(f"table {name} has no primary key; it can't be copied in a stable order")


# --- values ----------------------------------------------------------------------------------------------------


class _BadValue(ValueError):
    pass


def _convert(value: Any, kind: Kind) -> Any:
    """`value` as the target column's type wants it, losslessly, or `_BadValue`."""
    if value is None:
        return None
    if kind in _INT_BITS:
        number: int | None = None
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            number = int(value)
        bits = _INT_BITS[kind]
        if number is not None and -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
            return number
        if number is not None:
            raise _BadValue(f"{number} which doesn't fit {bits} bits")
    elif kind == "float":
        if isinstance(value, float):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            converted = float(value)
            if int(converted) == value:
                return converted
    elif kind == "text":
        if isinstance(value, str):
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif kind == "bytes":
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
    else:
        return value
    raise _BadValue(f"{type(value).__name__} {_short(value)} which doesn't fit a column of {kind}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Checksum:
    """Order-independent: the sum of the rows' SHA-256 (so the two databases' orders and collations don't matter);
    a missing, extra or changed row changes it. Rows are hashed as `_Plan.convert` gives them, which on both sides
    is the same Python type per column (an int, a float, a str, bytes, a bool, or None)."""

    def __init__(self) -> None:
        self.total = 0
        self.rows = 0

    def add(self, row: list[Any]) -> None:
        digest = hashlib.sha256(repr(row).encode("utf-8")).digest()
        self.total = (self.total + int.from_bytes(digest, "big")) % _CHECKSUM_MODULUS
        self.rows += 1

    @property
    def hex(self) -> str:
        return f"{self.total:064x}"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- copying ---------------------------------------------------------------------------------------------------


ProgressCallback = Callable[[TableCopy], object]


@dataclass(slots=True)
class _Plan:
    """How one table is read, converted and written."""

    table: _Table
    columns: tuple[str, ...]
    checks: tuple[tuple[int, Kind, type], ...]  # (position, kind, the type a value of that kind has), "any" left out
    key_positions: tuple[int, ...]
    # Columns of a foreign key onto this same table and its primary key: written NULL when the row they point at
    # comes later in the copy, and set once the table is in.
    self_references: tuple[tuple[int, int], ...]  # (column position, referenced column position)

    @classmethod
    def of(cls, table: _Table) -> _Plan:
        columns = tuple(table.columns)
        position = {name: i for i, name in enumerate(columns)}
        references: list[tuple[int, int]] = []
        for key in table.foreign_keys:
            if key.table != table.name:
                continue
            if len(key.columns) != 1 or len(key.ref_columns) != 1:
                raise StorageError(f"table {table.name}: a foreign key of several columns onto itself isn't supported")
            references.append((position[key.columns[0]], position[key.ref_columns[0]]))
        return cls(
            table,
            columns,
            tuple((i, kind, _TYPES[kind]) for i, kind in enumerate(table.columns.values()) if kind in _TYPES),
            tuple(position[name] for name in table.primary_key),
            tuple(references),
        )

    @property
    def name(self) -> str:
        return self.table.name

    def select(self, *, after: bool) -> str:
        listed = ", ".join(_quote(c) for c in self.columns)
        key = ", ".join(_quote(c) for c in self.table.primary_key)
        where = ""
        if after:
            marks = ", ".join("?" for _ in self.table.primary_key)
            where = f" WHERE ({key}) > ({marks})" if len(self.table.primary_key) > 1 else f" WHERE {key} > ?"
        return f"SELECT {listed} FROM {_quote(self.name)}{where} ORDER BY {key} LIMIT ?"

    def insert(self, rows: int) -> str:
        listed = ", ".join(_quote(c) for c in self.columns)
        one = "(" + ", ".join("?" for _ in self.columns) + ")"
        return f"INSERT INTO {_quote(self.name)} ({listed}) VALUES " + ", ".join(one for _ in range(rows))

    def written_before(self, values: Sequence[Any], column: int, referenced: int) -> bool:
        """Whether the row that `values[column]` points at is already in the target. Rows go in primary-key order:
        a smaller key is already there (or nowhere, which the target's foreign key then refuses)."""
        value = values[column]
        if value is None:
            return True
        # Only an integer key orders the same in Python as in the database (text follows the server's collation).
        by_key = len(self.key_positions) == 1 and referenced == self.key_positions[0]
        return by_key and self.table.columns[self.columns[referenced]] in _INT_BITS and value < values[referenced]

    def convert(self, row: Row) -> list[Any]:
        values = list(row)
        for i, kind, exact in self.checks:
            value = values[i]
            if value is None or (type(value) is exact and kind not in _NARROW):
                continue  # already right: most values, checked cheaply
            try:
                values[i] = _convert(value, kind)
            except _BadValue as exc:
                key = ", ".join(f"{self.columns[p]}={values[p]!r}" for p in self.key_positions)
                raise StorageError(
                    f"table {self.name}, row {key}: column {self.columns[i]} holds {exc}; nothing was copied"
                ) from None
        return values


async def _batches(tx: Tx, plan: _Plan, batch: int) -> AsyncIterator[list[Row]]:
    """The table's rows in primary-key order, `batch` at a time (keyset pagination: each query starts after the
    last key seen, so no batch rereads or skips rows)."""
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            rows = await tx.fetchall(plan.select(after=False), (batch,))
        else:
            rows = await tx.fetchall(plan.select(after=True), (*last, batch))
        if not rows:
            return
        yield rows
        if len(rows) < batch:
            return
        final = rows[-1]
        last = tuple(final[p] for p in plan.key_positions)


async def _copy_table(source: Tx, target: Tx, plan: _Plan, batch: int) -> _Checksum:
    checksum = _Checksum()
    per_statement = max(1, min(batch, MAX_PARAMETERS // len(plan.columns)))
    later: list[tuple[list[Any], int, Any]] = []  # (primary key values, column position, value) to set afterwards
    async for rows in _batches(source, plan, batch):
        converted: list[list[Any]] = []
        for row in rows:
            values = plan.convert(row)
            checksum.add(values)
            for column, referenced in plan.self_references:
                if not plan.written_before(values, column, referenced):
                    later.append(([values[p] for p in plan.key_positions], column, values[column]))
                    values[column] = None
            converted.append(values)
        for start in range(0, len(converted), per_statement):
            chunk = converted[start : start + per_statement]
            await _write(target, plan, plan.insert(len(chunk)), [value for values in chunk for value in values])
    where = " AND ".join(f"{_quote(plan.columns[p])} = ?" for p in plan.key_positions)
    for key, column, value in later:
        update = f"UPDATE {_quote(plan.name)} SET {_quote(plan.columns[column])} = ? WHERE {where}"
        await _write(target, plan, update, [value, *key])
    return checksum


async def _write(target: Tx, plan: _Plan, sql: str, params: list[Any]) -> None:
    try:
        await target.execute(sql, params)
    except (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        raise StorageError(f"TO refused a row of table {plan.name}: {reason}; nothing was copied") from None


async def _checksum_of(tx: Tx, plan: _Plan, batch: int) -> _Checksum:
    checksum = _Checksum()
    async for rows in _batches(tx, plan, batch):
        for row in rows:
            checksum.add(plan.convert(row))
    return checksum


async def _ledger_sums(tx: Tx, tables: dict[str, _Table]) -> tuple[LedgerSum, ...]:
    ledger = tables.get("ledger")
    if ledger is None or not {"state", "credits"} <= set(ledger.columns):
        return ()
    rows = await tx.fetchall(
        "SELECT state, COUNT(*) AS n, COALESCE(SUM(credits), 0) AS credits FROM ledger GROUP BY state ORDER BY state"
    )
    return tuple(LedgerSum(str(row["state"]), int(row["n"]), int(row["credits"])) for row in rows)


async def _refuse_non_empty(tx: Tx, order: Iterable[_Table], where: str) -> None:
    for table in order:
        row = await tx.fetchone(f"SELECT COUNT(*) AS n FROM {_quote(table.name)}")
        count = int(row["n"]) if row is not None else 0
        if count:
            raise StorageError(
                f"TO {where} is not empty: table {table.name} has {count:,} row{'s' if count != 1 else ''}; "
                "copy into an empty database"
            )


async def _reset_sequences(tx: Tx, order: Iterable[_Table]) -> None:
    """Set each identity sequence to its table's largest id, so the next row the bot inserts gets a fresh one."""
    for table in order:
        if len(table.primary_key) != 1 or table.columns[table.primary_key[0]] not in _INT_BITS:
            continue
        key = table.primary_key[0]
        row = await tx.fetchone("SELECT pg_get_serial_sequence(?, ?) AS seq", (_quote(table.name), key))
        if row is None or row["seq"] is None:
            continue
        await tx.fetchall(
            f"SELECT setval(?, COALESCE(MAX({_quote(key)}), 1), MAX({_quote(key)}) IS NOT NULL) "
            f"FROM {_quote(table.name)}",
            (row["seq"],),
        )


async def _open(url: str, role: str) -> Database:
    try:
        return await Database.open(url)
    except StorageError as exc:
        message = str(exc)
        for prefix in _OPEN_PREFIXES:
            message = message.removeprefix(prefix)
        raise StorageError(f"{role}: {message}") from None


def _sqlite_path(url: str) -> str | None:
    """The file a SQLite URL names (as `Database.open` reads it), or None for PostgreSQL."""
    if url.startswith(("postgresql://", "postgres://")):
        return None
    if url.startswith("sqlite://"):
        return url.removeprefix("sqlite://").removeprefix("/") or ":memory:"
    return None if "://" in url else url


def _is_memory(path: str) -> bool:
    return path == ":memory:" or path.startswith("file:")


async def copy_database(
    source_url: str, target_url: str, *, batch: int = DEFAULT_BATCH, progress: ProgressCallback | None = None
) -> CopyReport:
    """Copy every row of `source_url` into the empty database `target_url` and verify it; see the module text.

    Both are migrated to the latest schema first (a database newer than this code is refused). Raises a
    `StorageError` — and leaves the target without any of the rows — when the target isn't empty, a value doesn't
    fit, the target refuses a row, or the verification finds a difference. `progress` hears of each table once
    it is copied (before the verification, which follows all of them).
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    started = time.monotonic()
    source_path = _sqlite_path(source_url)
    if source_path is not None and not _is_memory(source_path) and not Path(source_path).is_file():  # noqa: ASYNC240 (once)
        raise StorageError(f"FROM: there is no database file at {source_path}")
    source = await _open(source_url, "FROM")
    try:
        target = await _open(target_url, "TO")
        try:
            return await _copy(source, target, batch, progress, started)
        finally:
            await target.close()
    finally:
        await source.close()


async def _copy(
    source: Database, target: Database, batch: int, progress: ProgressCallback | None, started: float
) -> CopyReport:
    async with source._transaction(write=False) as stx, target._transaction() as ttx:
        source_tables = await _schema(stx)
        target_tables = await _schema(ttx)
        _compare_schemas(source_tables, target_tables)
        # The target's columns decide the types; its foreign keys the order.
        order = _copy_order(target_tables)
        plans = [_Plan.of(table) for table in order]
        await _refuse_non_empty(ttx, order, target.description)
        copied: list[TableCopy] = []
        checksums: dict[str, _Checksum] = {}
        for plan in plans:
            checksums[plan.name] = await _copy_table(stx, ttx, plan, batch)
            table_copy = TableCopy(plan.name, checksums[plan.name].rows, checksums[plan.name].hex)
            copied.append(table_copy)
            log.info("copied %s: %d rows", plan.name, table_copy.rows)
            if progress is not None:
                progress(table_copy)
        for plan in plans:
            expected = checksums[plan.name]
            found = await _checksum_of(ttx, plan, batch)
            if found.rows != expected.rows:
                raise StorageError(
                    f"verification failed: table {plan.name} has {found.rows} rows in TO but {expected.rows} in "
                    "FROM; nothing was copied"
                )
            if found.total != expected.total:
                raise StorageError(
                    f"verification failed: the rows of table {plan.name} differ between FROM and TO (checksum); "
                    "nothing was copied"
                )
        ledger = await _ledger_sums(stx, source_tables)
        if await _ledger_sums(ttx, target_tables) != ledger:
            raise StorageError("verification failed: the ledger's sums differ between FROM and TO; nothing was copied")
        if ttx.dialect.name == "postgresql":
            # Last: sequences don't roll back, and nothing may fail after this but the commit.
            await _reset_sequences(ttx, order)
    return CopyReport(
        source.description, target.description, tuple(copied), ledger, round(time.monotonic() - started, 3)
    )


# --- migrating -------------------------------------------------------------------------------------------------


async def _version_before(url: str) -> int | None:
    """The schema version without migrating (None when it can't be read: opening the database then says why)."""
    path = _sqlite_path(url)
    try:
        if path is not None:
            if _is_memory(path) or not Path(path).is_file():  # noqa: ASYNC240 (once)
                return 0
            async with aiosqlite.connect(path) as conn:
                return await schema_version(conn)
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return await postgres_schema_version(conn)
        finally:
            await conn.close()
    except (OSError, sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError):
        return None


async def _version_of(db: Database) -> int:
    if db.dialect.name == "postgresql":
        row = await db._fetchone("SELECT version FROM sora_schema")
        return int(row["version"]) if row is not None else 0
    row = await db._fetchone("PRAGMA user_version")
    return int(row[0]) if row is not None else 0


async def migrate_database(url: str) -> MigrationReport:
    """Bring the database at `url` to the latest schema (what opening it does anyway); says from which version."""
    before = await _version_before(url)
    async with Database.open(url) as db:
        after = await _version_of(db)
        description = db.description
    return MigrationReport(description, after if before is None else before, after)


__all__ = [
    "DEFAULT_BATCH",
    "CopyReport",
    "LedgerSum",
    "MigrationReport",
    "TableCopy",
    "copy_database",
    "migrate_database",
]
