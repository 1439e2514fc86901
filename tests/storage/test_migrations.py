"""Schema migrations: from nothing, from the previous version, and refusing a newer schema."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import aiosqlite
import pytest

from bot.clock import FakeClock
from storage import Database, GenerationStatus, GuildSettings, LedgerState, StorageError, latest_version
from storage.migrate import known_migrations, migrate, schema_version
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
}


async def tables(db: Database) -> set[str]:
    rows = await db._fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row["name"] for row in rows}


async def test_migrations_are_numbered_from_one() -> None:
    versions = [m.version for m in known_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert latest_version() == len(versions) >= 2


async def test_empty_database_is_migrated_to_the_latest_version(db: Database) -> None:
    version = await db._fetchone("PRAGMA user_version")
    assert version is not None and version[0] == latest_version()
    assert await tables(db) >= EXPECTED_TABLES


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
        assert await migrate(conn, target=previous) == previous
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
