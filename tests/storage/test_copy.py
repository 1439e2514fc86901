"""`copy_database` and `migrate_database`: every table arrives whole and verified in any direction between SQLite and
PostgreSQL, or not at all; a non-empty target is refused and left as it was."""

from __future__ import annotations

import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
import pytest

from bot.clock import FakeClock
from storage import (
    CopyReport,
    Database,
    LedgerSum,
    StorageError,
    TableCopy,
    copy_database,
    latest_version,
    migrate_database,
)
from storage import copy as copy_module
from storage.migrate import migrate_sqlite
from tests.fixtures.storage import CLOCK_START, scratch_database
from tests.storage.helpers import reserve

# Every table of the schema and its primary key; a table the schema gains must be added here (and is then copied).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "guild_settings": ("guild_id",),
    "role_allowances": ("guild_id", "role_id"),
    "member_overrides": ("guild_id", "user_id"),
    "bans": ("guild_id", "user_id"),
    "allowed_channels": ("guild_id", "channel_id"),
    "generations": ("id",),
    "ledger": ("id",),
    "quota_resets": ("id",),
    "identify_turns": ("bucket",),
}
GUILDS = (1000, 1001, 1002, 1003, 1004)
SNOWFLAKE = 1_234_567_890_123_456_789  # Discord ids are near the top of BIGINT
NEW_GUILD = 9000
NEW_USER = 9001
STATUS_WEIGHTS = {"succeeded": 60, "failed": 15, "cancelled": 10, "queued": 6, "running": 5, "delivering": 4}
PROMPTS = (
    "a cat surfing a wave at sunset",
    "un chat qui fait du surf au coucher du soleil — « très » réaliste",
    "ネコがサーフィンをする 🐱🌊",
    'it\'s "quoted"; DROP TABLE generations; --',
    "two lines\nof prompt\twith a tab",
    "x" * 2000,
)


# --- building a database ---------------------------------------------------------------------------------------


@dataclass
class Expected:
    counts: dict[str, int] = field(default_factory=dict)
    ledger: dict[str, tuple[int, int]] = field(default_factory=dict)  # state -> (count, credits)

    def ledger_sums(self) -> tuple[LedgerSum, ...]:
        return tuple(LedgerSum(state, n, credits) for state, (n, credits) in sorted(self.ledger.items()))


async def insert_rows(db: Database, table: str, rows: Sequence[dict[str, Any]], *, per_statement: int = 300) -> None:
    """Many rows in one transaction, several per INSERT (10,000 `create_generation` calls would take a while)."""
    if not rows:
        return
    columns = list(rows[0])
    one = "(" + ", ".join("?" for _ in columns) + ")"
    async with db._transaction() as tx:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            await tx.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join(one for _ in chunk)}",
                [row[c] for row in chunk for c in columns],
            )


async def fill(url: str, *, generations: int, seed: int = 11) -> Expected:
    """A busy database: settings, rules, bans and channels in several guilds; `generations` jobs in every state
    with remix parents (a few pointing at later rows, one at itself); a consistent ledger (reserved while a job
    runs, charged on success or a charged moderation refusal, refunded otherwise) with a few rows whose generation
    is gone; quota resets and identify turns."""
    rng = random.Random(seed)
    expected = Expected()
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in PRIMARY_KEYS}
    charge_moderation = {guild: guild % 2 for guild in GUILDS}
    for guild in GUILDS:
        tables["guild_settings"].append(
            {
                "guild_id": guild,
                "default_allowance": rng.choice([None, 0, 5, 10, 250]),
                "budget": rng.choice([None, 100, 5000]),
                "period_mode": rng.choice(["daily", "rolling"]),
                "reset_hour": rng.randrange(24),
                "max_concurrent_member": rng.randint(1, 3),
                "max_concurrent_guild": rng.choice([None, 4]),
                "admins_exempt": rng.randint(0, 1),
                "charge_moderation": charge_moderation[guild],
                "updated_at": CLOCK_START - rng.random() * 86400,
            }
        )
        for role in range(3):
            tables["role_allowances"].append(
                {
                    "guild_id": guild,
                    "role_id": SNOWFLAKE + guild * 10 + role,
                    "allowance": rng.choice([None, 3, 30]),
                    "updated_at": CLOCK_START - rng.random() * 3600,
                }
            )
        for member in range(4):
            tables["member_overrides"].append(
                {
                    "guild_id": guild,
                    "user_id": 3000 + member,
                    "allowance": rng.choice([None, 0, 7]),
                    "updated_at": CLOCK_START,
                }
            )
        for member in range(2):
            tables["bans"].append(
                {
                    "guild_id": guild,
                    "user_id": 3100 + member,
                    "reason": rng.choice([None, "spam", 'it\'s "abuse" 🚫']),
                    "banned_by": rng.choice([None, 3000]),
                    "created_at": float(int(CLOCK_START)),  # a whole number of seconds, still a REAL/DOUBLE
                }
            )
        for channel in range(2):
            tables["allowed_channels"].append(
                {"guild_id": guild, "channel_id": 2000 + channel, "added_by": 3000, "created_at": CLOCK_START}
            )
        tables["quota_resets"].append(
            {"guild_id": guild, "user_id": None, "reset_by": 3000, "reset_at": CLOCK_START - 7200.5}
        )
        tables["quota_resets"].append(
            {"guild_id": guild, "user_id": 3001, "reset_by": None, "reset_at": CLOCK_START - 60}
        )
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    forward = {generations // 3: generations // 2, generations // 2 + 1: generations, 7: 7}  # child -> parent
    for gid in range(1, generations + 1):
        guild = GUILDS[gid % len(GUILDS)]
        status = rng.choices(statuses, weights)[0]
        created = CLOCK_START - 30 * 86400 + gid * 37.25 + rng.random()
        finished = created + rng.uniform(20, 900) if status in ("succeeded", "failed", "cancelled") else None
        moderated = status == "failed" and rng.random() < 0.3
        cost = rng.choice([0, 1, 1, 2, 4])
        parent = forward.get(gid) or (rng.randrange(1, gid) if gid > 1 and rng.random() < 0.2 else None)
        tables["generations"].append(
            {
                "id": gid,
                "parent_id": parent,
                "guild_id": guild,
                "channel_id": 2000 + gid % 2,
                "parent_channel_id": rng.choice([None, 2000]),
                "thread_id": SNOWFLAKE + gid if rng.random() < 0.1 else None,
                "user_id": 3000 + gid % 37,
                "locale": rng.choice([None, "en-US", "fr", "ja"]),
                "source_message_id": SNOWFLAKE + 100_000 + gid if parent else None,
                "interaction_id": SNOWFLAKE + 200_000 + gid,
                "interaction_token": f"token-{gid}-{rng.getrandbits(64):x}",
                "interaction_created_at": created,
                "progress_message_id": SNOWFLAKE + 300_000 + gid,
                "result_message_id": SNOWFLAKE + 400_000 + gid if status == "succeeded" else None,
                "model": rng.choice(["sora-2", "sora-2-pro"]),
                "api_format": rng.choice(["chat", "videos", None]),
                "seconds": rng.choice([4, 8, 12]),
                "size": rng.choice(["1280x720", "720x1280"]),
                "orientation": rng.choice(["landscape", "portrait", None]),
                "prompt": PROMPTS[gid % len(PROMPTS)],
                "reference_urls": '["https://cdn.example/a.png"]' if rng.random() < 0.1 else "[]",
                "assistant_text": rng.choice([None, "here is your video ✨"]),
                "task_id": f"task_{gid}",
                "resumable": rng.randint(0, 1),
                "status": status,
                "progress": rng.choice([0, 12.5, 100.0, 1 / 3]),  # the int 0 goes into a REAL / DOUBLE column
                "result_url": f"https://cdn.example/{gid}.mp4" if status == "succeeded" else None,
                "result_bytes": rng.randrange(1, 6_000_000_000) if status == "succeeded" else None,
                "thumbnail_url": None,
                "error_kind": ("moderation" if moderated else "upstream") if status == "failed" else None,
                "error_message": 'refused: it\'s "policy"' if moderated else None,
                "cost": cost,
                "created_at": created,
                "started_at": created + 1.5 if status != "queued" else None,
                "finished_at": finished,
                "updated_at": finished or created,
                "attempt": rng.randint(0, 3),
                "lease_owner": "host-a:123" if status in ("running", "delivering") else None,
                "lease_expires_at": CLOCK_START + 30 if status in ("running", "delivering") else None,
                "cancel_requested_by": 3000 if status == "cancelled" else None,
                "remix_strategy": rng.choice([None, "history", "remix"]) if parent else None,
                "result_json": '{"url": "x"}' if status == "succeeded" else None,
                "delivery_nonce": f"{rng.getrandbits(80):020x}",
                "delivery_started_at": finished,
                "slot_requested_at": created if status in ("queued", "running") else None,
                "slot_granted_at": created + 1 if status == "running" else None,
            }
        )
        if status in ("queued", "running", "delivering"):
            state, note = "reserved", None
        elif status == "succeeded" or (moderated and charge_moderation[guild]):
            state, note = "charged", "moderation" if moderated else None
        else:
            state, note = "refunded", status
        tables["ledger"].append(
            {
                "id": gid,
                "generation_id": gid,
                "guild_id": guild,
                "user_id": 3000 + gid % 37,
                "model": "sora-2",
                "credits": cost,
                "state": state,
                "created_at": created,
                "settled_at": finished if state != "reserved" else None,
                "note": note,
            }
        )
    for extra in range(1, 6):  # ledger rows whose generation was deleted (ON DELETE SET NULL)
        tables["ledger"].append(
            {
                "id": generations + extra,
                "generation_id": None,
                "guild_id": GUILDS[0],
                "user_id": 3001,
                "model": "sora-2",
                "credits": extra,
                "state": "charged",
                "created_at": CLOCK_START - 40 * 86400,
                "settled_at": CLOCK_START - 40 * 86400 + 60,
                "note": None,
            }
        )
    tables["identify_turns"] = [{"bucket": 0, "last_at": CLOCK_START}, {"bucket": 3, "last_at": CLOCK_START - 5.25}]
    for row in tables["ledger"]:
        count, credits = expected.ledger.get(row["state"], (0, 0))
        expected.ledger[row["state"]] = (count + 1, credits + row["credits"])
    async with Database.open(url) as db:
        # Children before parents would break the foreign key: forward parents are set once all rows are in.
        late = {row["id"]: row["parent_id"] for row in tables["generations"] if row["id"] in forward}
        for row in tables["generations"]:
            if row["id"] in late:
                row["parent_id"] = None
        for name, rows in tables.items():
            await insert_rows(db, name, rows)
        for child, parent in late.items():
            await db._execute("UPDATE generations SET parent_id = ? WHERE id = ?", (parent, child))
        if db.dialect.name == "postgresql":
            for name in ("generations", "ledger", "quota_resets"):
                await db._fetchall(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), MAX(id)) FROM {name}")
    expected.counts = {name: len(rows) for name, rows in tables.items()}
    return expected


# --- reading a database back -----------------------------------------------------------------------------------


async def table_names(db: Database) -> set[str]:
    if db.dialect.name == "postgresql":
        rows = await db._fetchall("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'")
    else:
        rows = await db._fetchall("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return {row["name"] for row in rows} - {"sora_schema"}


async def column_names(db: Database, table: str) -> list[str]:
    if db.dialect.name == "postgresql":
        rows = await db._fetchall(
            "SELECT column_name AS name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = ?",
            (table,),
        )
    else:
        rows = await db._fetchall(f"SELECT name FROM pragma_table_info('{table}')")
    return sorted(row["name"] for row in rows)


async def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows in primary-key order, columns by name."""
    async with Database.open(url) as db:
        assert await table_names(db) == set(PRIMARY_KEYS), "a new table: add it to PRIMARY_KEYS"
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for name, key in PRIMARY_KEYS.items():
            columns = await column_names(db, name)
            rows = await db._fetchall(f"SELECT {', '.join(columns)} FROM {name} ORDER BY {', '.join(key)}")
            tables[name] = [(*zip(columns, row, strict=True),) for row in rows]
    return tables


def assert_identical(left: dict[str, list[tuple[Any, ...]]], right: dict[str, list[tuple[Any, ...]]]) -> None:
    """Row by row, value by value — equal and of the same Python type (a float stays a float, an int an int)."""
    assert left.keys() == right.keys()
    for table in left:
        assert len(left[table]) == len(right[table]), table
        for a, b in zip(left[table], right[table], strict=True):
            assert a == b, (table, a, b)
            assert [type(v) for _, v in a] == [type(v) for _, v in b], (table, a, b)


def is_empty(tables: dict[str, list[tuple[Any, ...]]]) -> bool:
    return all(not rows for rows in tables.values())


# --- fixtures --------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def empty_database(kind: str, tmp_path: Path, server: str | None, name: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
        return
    assert server is not None
    async with scratch_database(server) as url:
        yield url


def server_for(kind: str, request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_server") if kind == "postgresql" else None


async def sqlite_source(tmp_path: Path, *, generations: int) -> tuple[str, Expected]:
    url = str(tmp_path / "source.sqlite3")
    return url, await fill(url, generations=generations)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text.strip() == text and text
    return text


# --- tests -----------------------------------------------------------------------------------------------------


async def test_ten_thousand_jobs_go_to_postgresql_and_back_identical(
    postgres_server: str, tmp_path: Path, clock: FakeClock
) -> None:
    source, expected = await sqlite_source(tmp_path, generations=10_000)
    original = await dump(source)
    assert len(original["generations"]) == 10_000
    back = str(tmp_path / "back.sqlite3")
    seen: list[TableCopy] = []

    async with scratch_database(postgres_server) as pg:
        there = await copy_database(source, pg, progress=seen.append)

        assert there.counts == expected.counts
        assert there.ledger == expected.ledger_sums()
        assert {s.state for s in there.ledger} == {"reserved", "charged", "refunded"}
        assert [t.name for t in seen] == [t.name for t in there.tables]
        order = [t.name for t in there.tables]
        assert order.index("generations") < order.index("ledger")
        assert "@" not in there.source and there.target.startswith("postgresql://")
        assert_identical(original, await dump(pg))

        again = await copy_database(pg, back, batch=777)
        assert again.counts == expected.counts and again.ledger == there.ledger
        # The checksums are of the values, not of the database that holds them.
        assert [t.checksum for t in again.tables] == [t.checksum for t in there.tables]
        assert_identical(original, await dump(back))

        # The copy reset PostgreSQL's sequences: the bot's next rows get fresh ids.
        async with Database.open(pg, clock=clock) as db:
            reservation = await reserve(db, guild_id=NEW_GUILD, user_id=NEW_USER)
            assert reservation.generation_id == 10_001
            row = await db._fetchone("SELECT id FROM ledger WHERE generation_id = ?", (reservation.generation_id,))
            assert row is not None and row["id"] == 10_006
            await db.reset_usage(NEW_GUILD, NEW_USER)
            row = await db._fetchone("SELECT MAX(id) AS id FROM quota_resets")
            assert row is not None and row["id"] == len(GUILDS) * 2 + 1

    async with Database.open(back, clock=clock) as db:
        reservation = await reserve(db, guild_id=NEW_GUILD, user_id=NEW_USER)
        assert reservation.generation_id == 10_001


@pytest.mark.parametrize("target_kind", ["sqlite", "postgresql"])
@pytest.mark.parametrize("source_kind", ["sqlite", "postgresql"])
async def test_every_direction_copies_identically_in_small_batches(
    source_kind: str, target_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    server = server_for(source_kind, request) or server_for(target_kind, request)
    async with (
        empty_database(source_kind, tmp_path, server, "from") as source,
        empty_database(target_kind, tmp_path, server, "to") as target,
    ):
        expected = await fill(source, generations=300)
        report = await copy_database(source, target, batch=7)  # many batches, composite keys paged too

        assert isinstance(report, CopyReport)
        assert report.counts == expected.counts and report.total_rows == sum(expected.counts.values())
        assert report.ledger == expected.ledger_sums()
        assert_identical(await dump(source), await dump(target))


async def test_an_empty_database_copies_as_empty(tmp_path: Path) -> None:
    source, target = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    async with Database.open(source):
        pass
    report = await copy_database(str(source), str(target))
    assert report.total_rows == 0 and report.ledger == () and set(report.counts) == set(PRIMARY_KEYS)


async def test_a_non_empty_target_is_refused_and_left_untouched(
    database_url: str, tmp_path: Path, clock: FakeClock
) -> None:
    source, _ = await sqlite_source(tmp_path, generations=50)
    async with Database.open(database_url, clock=clock) as db:
        await reserve(db, guild_id=NEW_GUILD, user_id=NEW_USER)
    before = await dump(database_url)

    with pytest.raises(StorageError) as caught:
        await copy_database(source, database_url)

    message = one_line(caught.value)
    assert "is not empty" in message and "table generations has 1 row" in message
    assert_identical(before, await dump(database_url))


async def test_a_target_with_only_a_ban_is_not_empty_either(database_url: str, tmp_path: Path) -> None:
    source, _ = await sqlite_source(tmp_path, generations=5)
    async with Database.open(database_url) as db:
        await db.ban_member(NEW_GUILD, NEW_USER, reason="spam", banned_by=None)

    with pytest.raises(StorageError, match="table bans has 1 row"):
        await copy_database(source, database_url)


async def test_a_row_the_target_refuses_midway_leaves_it_empty(database_url: str, tmp_path: Path) -> None:
    source, _ = await sqlite_source(tmp_path, generations=400)
    # A ledger row for a generation that doesn't exist: only possible with foreign keys off, as an old file
    # (or a hand edit) might have it. The ledger is copied last, after 400 generations went in.
    with sqlite3.connect(source) as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute(
            "INSERT INTO ledger (id, generation_id, guild_id, user_id, model, credits, state, created_at) "
            "VALUES (99999, 88888, 1000, 3001, 'sora-2', 1, 'charged', 0)"
        )
    conn.close()

    with pytest.raises(StorageError) as caught:
        await copy_database(source, database_url, batch=50)

    message = one_line(caught.value)
    assert message.startswith("TO refused a row of table ledger:") and "nothing was copied" in message
    assert is_empty(await dump(database_url))


async def test_a_value_that_doesnt_fit_the_target_leaves_it_empty(database_url: str, tmp_path: Path) -> None:
    source, _ = await sqlite_source(tmp_path, generations=100)
    with sqlite3.connect(source) as conn:  # SQLite keeps text that isn't a number in an INTEGER column
        conn.execute("UPDATE generations SET guild_id = 'not a number' WHERE id = 60")
    conn.close()

    with pytest.raises(StorageError) as caught:
        await copy_database(source, database_url, batch=16)

    message = one_line(caught.value)
    assert "table generations, row id=60: column guild_id holds str 'not a number'" in message
    assert is_empty(await dump(database_url))


async def test_a_failed_verification_leaves_the_target_empty(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = await sqlite_source(tmp_path, generations=100)
    real = copy_module._checksum_of

    async def tampered(tx: Any, plan: Any, batch: int) -> Any:
        checksum = await real(tx, plan, batch)
        if plan.name == "ledger":
            checksum.total += 1  # as if one ledger row had arrived changed
        return checksum

    monkeypatch.setattr(copy_module, "_checksum_of", tampered)

    with pytest.raises(StorageError) as caught:
        await copy_database(source, database_url)

    message = one_line(caught.value)
    assert (
        message.startswith("verification failed: the rows of table ledger differ") and "nothing was copied" in message
    )
    monkeypatch.undo()
    assert is_empty(await dump(database_url))


async def newer_schema(kind: str, url: str) -> None:
    if kind == "sqlite":
        async with aiosqlite.connect(url.removeprefix("sqlite:///")) as conn:
            await conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
        return
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE sora_schema (version INTEGER NOT NULL)")
        await conn.execute("INSERT INTO sora_schema VALUES ($1)", latest_version() + 1)
    finally:
        await conn.close()


async def has_tables(kind: str, url: str) -> bool:
    if kind == "sqlite":
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            found = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        conn.close()
        return bool(found)
    conn = await asyncpg.connect(url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'sora_schema'"
            )
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_a_target_with_a_newer_schema_is_refused_untouched(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source, _ = await sqlite_source(tmp_path, generations=10)
    async with empty_database(kind, tmp_path, server_for(kind, request), "newer") as target:
        await newer_schema(kind, target)

        with pytest.raises(StorageError) as caught:
            await copy_database(source, target)

        message = one_line(caught.value)
        assert message.startswith("TO: ") and f"schema version {latest_version() + 1}" in message
        assert not await has_tables(kind, target)


async def test_a_source_with_a_newer_schema_is_refused_before_the_target_is_touched(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'newer.sqlite3'}"
    await newer_schema("sqlite", source)
    target = tmp_path / "target.sqlite3"

    with pytest.raises(StorageError) as caught:
        await copy_database(source, str(target))

    assert one_line(caught.value).startswith("FROM: ") and "upgrade sora-bot" in str(caught.value)
    assert not target.exists()


async def test_a_missing_source_file_is_refused_not_created(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="FROM: there is no database file at"):
        await copy_database(str(tmp_path / "missing.sqlite3"), str(tmp_path / "target.sqlite3"))
    assert not (tmp_path / "missing.sqlite3").exists()


async def test_migrate_says_from_which_version(postgres_server: str, tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    async with aiosqlite.connect(path) as conn:
        await migrate_sqlite(conn, target=2)
    first = await migrate_database(str(path))
    assert (first.before, first.after, first.migrated) == (2, latest_version(), True)
    assert first.database == str(path)
    again = await migrate_database(f"sqlite:///{path}")
    assert (again.before, again.after, again.migrated) == (latest_version(), latest_version(), False)

    async with scratch_database(postgres_server) as url:
        fresh = await migrate_database(url)
        assert (fresh.before, fresh.after) == (0, latest_version())
        assert (await migrate_database(url)).migrated is False
