"""Schema migrations: from nothing, from the previous version, and refusing a newer schema."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from bot.clock import FakeClock
from storage import Database, GenerationStatus, GuildSettings, LedgerState, StorageError, latest_version
from storage.migrate import known_migrations, migrate_postgres, migrate_sqlite, postgres_schema_version, schema_version
from tests.fixtures.storage import scratch_database
from tests.storage.helpers import ALICE, CHANNEL, GUILD, reserve

EXPECTED_TABLES = {
    "guild_settings",
    "role_allowances",
    "member_overrides",
    "bans",
    "allowed_channels",
    "generations",
    "ledger",
    "quota_resets",
    "identify_turns",
}


async def tables(db: Database) -> set[str]:
    if db.dialect.name == "postgresql":
        rows = await db._fetchall("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'")
    else:
        rows = await db._fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row["name"] for row in rows} - {"sora_schema"}


async def columns(db: Database, table: str) -> set[str]:
    if db.dialect.name == "postgresql":
        rows = await db._fetchall(
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = ?", (table,)
        )
    else:
        rows = await db._fetchall(f"SELECT name FROM pragma_table_info('{table}')")
    return {row["name"] for row in rows}


async def test_migrations_are_numbered_from_one() -> None:
    versions = [m.version for m in known_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert latest_version() == len(versions) >= 2


async def test_both_databases_share_one_migration_history() -> None:
    sqlite = [m.name for m in known_migrations("sqlite")]
    postgresql = [m.name for m in known_migrations("postgresql")]
    assert sqlite == postgresql


async def test_empty_database_is_migrated_to_the_latest_version(db: Database) -> None:
    if db.dialect.name == "postgresql":
        version = await db._fetchone("SELECT version FROM sora_schema")
    else:
        version = await db._fetchone("PRAGMA user_version")
    assert version is not None and version[0] == latest_version()
    assert await tables(db) >= EXPECTED_TABLES


async def test_both_schemas_have_the_same_tables_and_columns(postgres_database: str, tmp_path: Path) -> None:
    async with Database.open(tmp_path / "a.sqlite3") as lite, Database.open(postgres_database) as pg:
        assert await tables(lite) == await tables(pg)
        for table in await tables(lite):
            assert await columns(lite, table) == await columns(pg, table), table


@pytest.mark.sqlite_only
async def test_connection_settings(db: Database) -> None:
    journal = await db._fetchone("PRAGMA journal_mode")
    foreign_keys = await db._fetchone("PRAGMA foreign_keys")
    busy = await db._fetchone("PRAGMA busy_timeout")
    assert journal is not None and journal[0] == "wal"
    assert foreign_keys is not None and foreign_keys[0] == 1
    assert busy is not None and busy[0] > 0


async def test_reopening_keeps_data_and_version(db_path: Path, clock: FakeClock) -> None:
    async with Database.open(db_path, clock=clock) as db:
        await db.set_default_allowance(GUILD, 3)
    async with Database.open(db_path, clock=clock) as db:
        assert (await db.get_guild_settings(GUILD)).default_allowance == 3


@pytest.mark.parametrize("previous", range(1, latest_version()), ids=lambda v: f"from-v{v}")
async def test_upgrade_from_an_earlier_version_keeps_data(db_path: Path, clock: FakeClock, previous: int) -> None:
    """N-1 (and every version before it): create the database at that version, fill it, then open normally."""
    now = clock.time()
    async with aiosqlite.connect(db_path, isolation_level=None) as conn:
        assert await migrate_sqlite(conn, target=previous) == previous
        await conn.execute("BEGIN")
        await conn.execute(
            "INSERT INTO guild_settings (guild_id, default_allowance, budget, admins_exempt, updated_at) "
            "VALUES (?, 5, 50, 1, ?)",
            (GUILD, now),
        )
        await conn.execute(
            "INSERT INTO role_allowances (guild_id, role_id, allowance, updated_at) VALUES (?, 77, 9, ?)", (GUILD, now)
        )
        await conn.execute(
            "INSERT INTO generations (id, guild_id, channel_id, user_id, model, prompt, cost, status, "
            "result_message_id, assistant_text, created_at, updated_at) "
            "VALUES (1, ?, ?, ?, 'sora-2', 'old prompt', 2, 'succeeded', 555, 'raw answer', ?, ?)",
            (GUILD, CHANNEL, ALICE, now, now),
        )
        await conn.execute(
            "INSERT INTO ledger (generation_id, guild_id, user_id, model, credits, state, created_at) "
            "VALUES (1, ?, ?, 'sora-2', 2, 'charged', ?)",
            (GUILD, ALICE, now),
        )
        await conn.execute("COMMIT")
        assert await schema_version(conn) == previous

    async with Database.open(db_path, clock=clock) as db:
        settings = await db.get_guild_settings(GUILD)
        assert (settings.default_allowance, settings.budget, settings.admins_exempt) == (5, 50, True)
        assert settings.charge_moderation is False  # added by version 2, at its default when upgrading from 1
        assert await db.role_allowances(GUILD) == {77: 9}
        old = await db.generation_by_result_message(555)
        assert old is not None and old.prompt == "old prompt" and old.assistant_text == "raw answer"
        assert old.status == GenerationStatus.SUCCEEDED
        status = await db.quota_status(GUILD, ALICE)
        assert status.used == 2  # the old ledger still counts
        reservation = await reserve(db, cost=3)
        assert reservation.used == 5
        assert reservation.limit.credits == 5


async def test_newer_schema_is_refused_with_one_line(db_path: Path, clock: FakeClock) -> None:
    async with aiosqlite.connect(db_path, isolation_level=None) as conn:
        await conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    with pytest.raises(StorageError) as caught:
        await Database.open(db_path, clock=clock)
    message = str(caught.value)
    assert "\n" not in message
    assert f"schema version {latest_version() + 1}" in message
    assert "upgrade sora-bot" in message


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "notes.sqlite3"
    path.write_bytes(b"this is not sqlite, just some text that is long enough to look like a header" * 20)
    with pytest.raises(StorageError) as caught:
        await Database.open(path, clock=clock)
    assert "\n" not in str(caught.value)


async def test_a_missing_folder_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(StorageError, match="doesn't exist"):
        await Database.open(tmp_path / "nope" / "db.sqlite3", clock=clock)


async def test_column_defaults_match_the_python_defaults(db: Database) -> None:
    await db._execute("INSERT INTO guild_settings (guild_id, updated_at) VALUES (?, 0)", (GUILD,))
    stored = await db.get_guild_settings(GUILD)
    assert dataclasses.replace(stored, configured=False) == GuildSettings(GUILD)


async def test_the_ledger_state_values_match_the_schema(db: Database) -> None:
    reservation = await reserve(db)
    row = await db._fetchone("SELECT state FROM ledger WHERE generation_id = ?", (reservation.generation_id,))
    assert row is not None and LedgerState(row["state"]) == LedgerState.RESERVED


# --- PostgreSQL ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("previous", range(1, latest_version()), ids=lambda v: f"from-v{v}")
async def test_postgres_upgrade_from_an_earlier_version_keeps_data(
    postgres_server: str, clock: FakeClock, previous: int
) -> None:
    now = clock.time()
    async with scratch_database(postgres_server) as url:
        conn = await asyncpg.connect(url)
        try:
            assert await migrate_postgres(conn, target=previous) == previous
            await conn.execute(
                "INSERT INTO guild_settings (guild_id, default_allowance, budget, admins_exempt, updated_at) "
                "VALUES ($1, 5, 50, 1, $2)",
                GUILD,
                now,
            )
            old_id = await conn.fetchval(
                "INSERT INTO generations (guild_id, channel_id, user_id, model, prompt, cost, status, "
                "result_message_id, assistant_text, created_at, updated_at) "
                "VALUES ($1, $2, $3, 'sora-2', 'old prompt', 2, 'succeeded', 555, 'raw answer', $4, $4) RETURNING id",
                GUILD,
                CHANNEL,
                ALICE,
                now,
            )
            await conn.execute(
                "INSERT INTO ledger (generation_id, guild_id, user_id, model, credits, state, created_at) "
                "VALUES ($1, $2, $3, 'sora-2', 2, 'charged', $4)",
                old_id,
                GUILD,
                ALICE,
                now,
            )
            assert await postgres_schema_version(conn) == previous
        finally:
            await conn.close()
        async with Database.open(url, clock=clock) as db:
            settings = await db.get_guild_settings(GUILD)
            assert (settings.default_allowance, settings.budget, settings.admins_exempt) == (5, 50, True)
            old = await db.generation_by_result_message(555)
            assert old is not None and old.prompt == "old prompt" and old.status == GenerationStatus.SUCCEEDED
            assert (await db.quota_status(GUILD, ALICE)).used == 2
            reservation = await reserve(db, cost=3)  # the id sequence doesn't collide with the copied row
            assert reservation.used == 5 and reservation.generation_id != old_id


async def test_postgres_newer_schema_is_refused_with_one_line(postgres_server: str, clock: FakeClock) -> None:
    async with scratch_database(postgres_server) as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("CREATE TABLE sora_schema (version INTEGER NOT NULL)")
            await conn.execute("INSERT INTO sora_schema VALUES ($1)", latest_version() + 1)
        finally:
            await conn.close()
        with pytest.raises(StorageError) as caught:
            await Database.open(url, clock=clock)
    assert "\n" not in str(caught.value) and "upgrade sora-bot" in str(caught.value)


async def test_processes_starting_at_once_migrate_once(postgres_server: str, clock: FakeClock) -> None:
    async with scratch_database(postgres_server) as url:
        handles = await asyncio.gather(*(Database.open(url, clock=clock) for _ in range(4)))
        try:
            versions = {(await h._fetchone("SELECT version FROM sora_schema"))["version"] for h in handles}
            assert versions == {latest_version()}
        finally:
            for handle in handles:
                await handle.close()


async def test_an_unreachable_server_is_one_line_without_the_password(clock: FakeClock) -> None:
    with pytest.raises(StorageError) as caught:
        await Database.open("postgresql://bot:hunter2@127.0.0.1:1/sora", clock=clock)
    message = str(caught.value)
    assert "\n" not in message and "hunter2" not in message and "127.0.0.1" in message


async def test_an_unknown_kind_of_database_is_refused(clock: FakeClock) -> None:
    with pytest.raises(StorageError, match="unknown kind of database"):
        await Database.open("mysql://root@127.0.0.1/sora", clock=clock)


async def test_sqlite_urls_name_relative_and_absolute_files(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "by-url.sqlite3"
    async with Database.open(f"sqlite:///{path}", clock=clock) as db:  # sqlite:////abs/path
        await db.set_budget(GUILD, 4)
    assert path.exists()
