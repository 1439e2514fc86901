"""`sora-bot` end to end: the real CLI as a subprocess against `sora-bot fake-upstream` as another subprocess."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp import web

from storage import Database, latest_version
from tests.fixtures.storage import create_database, drop_database, run_sync
from tests.storage.helpers import BOB, GUILD, reserve

SORA_BOT = Path(sys.executable).with_name("sora-bot")
API_KEY = "sk-cli-test-5f2b9c0d"
OUTCOME_FIELDS = {"status", "task_id", "video_url", "file", "bytes", "elapsed_s", "max_progress", "error"}
FORMATS = ["chat", "videos", "task", "images"]


@dataclass(frozen=True)
class Gateway:
    base_url: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(SORA_BOT),
            "fake-upstream",
            "--port",
            str(port),
            "--steps",
            "3",
            "--interval",
            "0.05",
            "--api-key",
            API_KEY,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("sora-bot fake-upstream did not start") from None
                time.sleep(0.05)
        yield Gateway(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_cli(
    tmp_path: Path, *args: str, base_url: str, api_format: str = "videos", key: str = API_KEY, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SORA_", "DISCORD_"))}
    environment.update(
        SORA_BASE_URL=base_url,
        SORA_API_KEY=key,
        SORA_API_FORMAT=api_format,
        SORA_POLL_INTERVAL="0.05",
        SORA_JOB_TIMEOUT="30",
        COLUMNS="200",
    )
    environment.update(env)
    return subprocess.run(
        [str(SORA_BOT), "--env-file", str(tmp_path / "absent.env"), *args],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("api_format", FORMATS)
def test_generate_writes_a_real_mp4(gateway: Gateway, tmp_path: Path, api_format: str) -> None:
    out = tmp_path / "cat.mp4"
    result = run_cli(
        tmp_path, "generate", "a cat", "--json", "--out", str(out), base_url=gateway.base_url, api_format=api_format
    )

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(outcome) == OUTCOME_FIELDS
    assert outcome["status"] == "succeeded"
    assert outcome["error"] is None
    assert outcome["file"] == str(out)
    assert outcome["bytes"] == out.stat().st_size > 0
    assert out.read_bytes()[4:8] == b"ftyp"
    assert outcome["video_url"].startswith(gateway.base_url)
    assert isinstance(outcome["elapsed_s"], float) and outcome["elapsed_s"] > 0
    if api_format in ("videos", "task"):
        assert outcome["task_id"]
        assert outcome["max_progress"] == 100.0
    assert 0.0 <= outcome["max_progress"] <= 100.0
    assert API_KEY not in result.stdout + result.stderr
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.parametrize("api_format", FORMATS)
def test_a_moderated_prompt_fails_with_one_line(gateway: Gateway, tmp_path: Path, api_format: str) -> None:
    out = tmp_path / "cat.mp4"
    result = run_cli(
        tmp_path,
        "generate",
        "a cat fake:moderation",
        "--json",
        "--out",
        str(out),
        base_url=gateway.base_url,
        api_format=api_format,
    )

    assert result.returncode == 1
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(outcome) == OUTCOME_FIELDS
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith("moderation: ")
    assert (outcome["file"], outcome["bytes"]) == (None, 0)
    [line] = error_lines(result.stderr)
    assert line.startswith("failed: moderation: ")
    assert not out.exists()


def test_check_passes_against_the_fake(gateway: Gateway, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check", base_url=gateway.base_url)
    assert result.returncode == 0, result.stderr
    assert "gateway ok" in result.stderr
    assert API_KEY not in result.stderr


def test_check_with_a_wrong_key_fails_with_one_line(gateway: Gateway, tmp_path: Path) -> None:
    wrong = "sk-wrong-key-000000"
    result = run_cli(tmp_path, "check", base_url=gateway.base_url, key=wrong)
    assert result.returncode == 1
    errors = [line for line in error_lines(result.stderr) if not line.startswith("config ok")]
    assert len(errors) == 1 and errors[0].startswith("error:")
    assert "auth" in errors[0]
    assert "Traceback" not in result.stderr
    assert wrong not in result.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [("SORA_API_FORMAT", "carrier-pigeon"), ("SORA_POLL_INTERVAL", "-1"), ("SORA_BASE_URL", "ftp://nope")],
)
def test_a_bad_setting_exits_2_naming_it(gateway: Gateway, tmp_path: Path, setting: str, value: str) -> None:
    result = run_cli(tmp_path, "generate", "a cat", base_url=gateway.base_url, **{setting: value})
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert setting in line
    assert result.stdout == ""


# --- text from the gateway or the user is printed, never interpreted ------------------------------------------

# Rich markup that crashes a markup print ([/bold]) or plants a terminal link, an emoji code, and a raw OSC 8
# hyperlink escape sequence. The truncated key is what some gateways echo back ("Incorrect API key: sk-...").
HOSTILE = (
    "bad [/bold] input [link=https://evil.example]x[/link] :warning: "
    "\x1b]8;;https://evil.example\x1b\\y\x1b]8;;\x1b\\ "
    f"key {API_KEY[:12]}..."
)
REFUSED_TOKEN = "not-a-real-token"
KNOWN_APPLICATION_ID = 424242424242424242


@dataclass
class HostileGateway:
    """A tiny gateway-and-Discord look-alike on 127.0.0.1 whose every error message is `HOSTILE`."""

    base_url: str = ""
    seen: list[str] = field(default_factory=list)


def hostile_app(server: HostileGateway) -> web.Application:
    async def models(request: web.Request) -> web.Response:
        server.seen.append(request.path)
        return web.json_response({"error": {"message": HOSTILE, "code": "invalid_api_key"}}, status=401)

    async def create_video(request: web.Request) -> web.Response:
        server.seen.append(request.path)
        return web.json_response({"error": {"message": HOSTILE, "code": "invalid_request"}}, status=400)

    async def discord_application(request: web.Request) -> web.Response:
        server.seen.append(request.path)
        if request.headers.get("Authorization") == f"Bot {REFUSED_TOKEN}":
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return web.json_response({"id": str(KNOWN_APPLICATION_ID), "name": "sora"})

    async def discord_me(request: web.Request) -> web.Response:
        server.seen.append(request.path)
        return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/videos", create_video)
    app.router.add_get("/api/v10/oauth2/applications/@me", discord_application)
    app.router.add_get("/api/v10/users/@me", discord_me)
    return app


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileGateway]:
    """Served from a thread of its own, so the synchronous CLI runs below can reach it."""
    server = HostileGateway()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="hostile-gateway", daemon=True)
    thread.start()
    runner = web.AppRunner(hostile_app(server))

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    host, port = runner.addresses[0][:2]
    server.base_url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def assert_shown_verbatim(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "[/bold]" in stderr and "[link=https://evil.example]x[/link]" in stderr and ":warning:" in stderr
    assert "\x1b" not in stderr  # the escape sequence is shown as text, not sent to the terminal
    assert "\\x1b]8;;https://evil.example" in stderr
    assert API_KEY[:12] not in stderr


def test_check_prints_a_hostile_gateway_message_as_text(hostile: HostileGateway, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check", base_url=hostile.base_url)

    assert result.returncode == 1
    [config_line, line] = error_lines(result.stderr)
    assert config_line.startswith("config ok")
    assert line.startswith("error: the gateway refused the check call: auth: bad [/bold] input")
    assert "SORA_API_KEY" in line
    assert_shown_verbatim(result.stderr)


def test_generate_prints_a_hostile_gateway_message_as_text(hostile: HostileGateway, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "generate", "a cat", "--json", base_url=hostile.base_url)

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith("failed: bad_request: bad [/bold] input [link=https://evil.example]x[/link]")
    assert_shown_verbatim(result.stderr)
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "failed" and "[/bold]" in outcome["error"]
    assert API_KEY[:12] not in result.stdout
    assert "/v1/videos" in hostile.seen


def test_user_text_in_an_error_is_printed_as_text(gateway: Gateway, tmp_path: Path) -> None:
    result = run_cli(
        tmp_path, "generate", "a cat", "--model", "[/bold][link=https://evil.example]m", base_url=gateway.base_url
    )

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith("error: unknown model '[/bold][link=https://evil.example]m'; configured: ")
    assert "Traceback" not in result.stderr


def test_a_setting_value_with_markup_is_printed_as_text(gateway: Gateway, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "check", base_url=gateway.base_url, SORA_MODEL="[/bold]")

    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert line.startswith("config error: SORA_MODEL") and "'[/bold]'" in line


def test_an_output_path_with_markup_is_printed_as_text(gateway: Gateway, tmp_path: Path) -> None:
    result = run_cli(tmp_path, "generate", "a cat", "--out", "[red]cat[link=x].mp4", base_url=gateway.base_url)

    assert result.returncode == 0, result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith("wrote [red]cat[link=x].mp4 (")
    assert (tmp_path / "[red]cat[link=x].mp4").read_bytes()[4:8] == b"ftyp"


# --- every failure is one line and an exit code ---------------------------------------------------------------


def unreachable_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # bound a moment ago, nobody listens there now


def test_check_with_the_gateway_down_fails_with_one_line(tmp_path: Path) -> None:
    base_url = unreachable_url()
    result = run_cli(tmp_path, "check", base_url=base_url)

    assert result.returncode == 1
    [_, line] = error_lines(result.stderr)
    assert line == f"error: could not reach the gateway at {base_url} (Connection refused): check SORA_BASE_URL"


@pytest.mark.parametrize("api_format", FORMATS)
def test_generate_with_the_gateway_down_fails_with_one_line(tmp_path: Path, api_format: str) -> None:
    result = run_cli(
        tmp_path, "generate", "a cat", base_url=unreachable_url(), api_format=api_format, SORA_RETRY_ATTEMPTS="0"
    )

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith("failed: upstream: ") and "SORA_BASE_URL" in line
    assert "Traceback" not in result.stderr


def test_generate_into_a_missing_folder_fails_before_asking_the_gateway(
    hostile: HostileGateway, tmp_path: Path
) -> None:
    before = len(hostile.seen)
    result = run_cli(
        tmp_path, "generate", "a cat", "--out", str(tmp_path / "nope" / "cat.mp4"), base_url=hostile.base_url
    )

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line == f"error: --out: the folder {tmp_path / 'nope'} doesn't exist"
    assert len(hostile.seen) == before


@pytest.mark.parametrize("command", ["check", "invite", "run"])
def test_a_bad_setting_stops_every_command_with_one_line(gateway: Gateway, tmp_path: Path, command: str) -> None:
    result = run_cli(tmp_path, command, base_url=gateway.base_url, SORA_POLL_INTERVAL="-1", DISCORD_TOKEN="x.y.z")
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert line.startswith("config error: SORA_POLL_INTERVAL")


def token_for(application_id: int) -> str:
    first = base64.b64encode(str(application_id).encode()).decode().rstrip("=")
    return f"{first}.GhJkLm.{'x' * 38}"


def test_invite_reads_the_application_id_from_the_token_without_discord(tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "invite",
        base_url=unreachable_url(),
        DISCORD_TOKEN=token_for(123456789012345678),
        DISCORD_API_BASE=unreachable_url(),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("https://discord.com/oauth2/authorize?client_id=123456789012345678&")
    assert result.stderr == ""


def test_invite_asks_discord_when_the_token_does_not_say(hostile: HostileGateway, tmp_path: Path) -> None:
    result = run_cli(
        tmp_path, "invite", base_url=hostile.base_url, DISCORD_TOKEN="opaque", DISCORD_API_BASE=hostile.base_url
    )

    assert result.returncode == 0, result.stderr
    assert f"client_id={KNOWN_APPLICATION_ID}&" in result.stdout


def test_invite_with_discord_down_fails_with_one_line(tmp_path: Path) -> None:
    discord_url = unreachable_url()
    result = run_cli(
        tmp_path, "invite", base_url=discord_url, DISCORD_TOKEN=REFUSED_TOKEN, DISCORD_API_BASE=discord_url
    )

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: could not reach Discord at {discord_url} (Connection refused)")
    assert "DISCORD_API_BASE" in line and "--client-id" in line
    assert result.stdout == ""


def test_invite_with_a_refused_token_fails_with_one_line(hostile: HostileGateway, tmp_path: Path) -> None:
    result = run_cli(
        tmp_path, "invite", base_url=hostile.base_url, DISCORD_TOKEN=REFUSED_TOKEN, DISCORD_API_BASE=hostile.base_url
    )

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith("error: Discord refused DISCORD_TOKEN (401)")
    assert REFUSED_TOKEN not in result.stdout + result.stderr


def test_invite_without_a_token_names_the_setting(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "invite", base_url=unreachable_url())
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert line.startswith("config error: DISCORD_TOKEN")


def error_records(stderr: str) -> list[str]:
    return [line for line in error_lines(stderr) if " ERROR " in line or line.startswith(("error:", "config error:"))]


def test_run_with_discord_down_fails_with_one_line(tmp_path: Path) -> None:
    discord_url = unreachable_url()
    result = run_cli(
        tmp_path,
        "run",
        base_url=unreachable_url(),
        DISCORD_TOKEN=token_for(1234567890),
        DISCORD_API_BASE=discord_url,
        DISCORD_GATEWAY_URL=discord_url.replace("http", "ws"),
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = error_records(result.stderr)
    assert f"could not reach Discord at {discord_url} (Connection refused)" in line and "DISCORD_API_BASE" in line
    assert error_lines(result.stderr)[-1] == line


def test_run_with_a_refused_token_fails_with_one_line(hostile: HostileGateway, tmp_path: Path) -> None:
    result = run_cli(
        tmp_path,
        "run",
        base_url=hostile.base_url,
        DISCORD_TOKEN=REFUSED_TOKEN,
        DISCORD_API_BASE=hostile.base_url,
        DISCORD_GATEWAY_URL=hostile.base_url.replace("http", "ws"),
    )

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = error_records(result.stderr)
    assert "Discord refused DISCORD_TOKEN" in line
    assert REFUSED_TOKEN not in result.stderr


def test_fake_upstream_on_a_busy_port_fails_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [str(SORA_BOT), "fake-upstream", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line == f"error: cannot listen on 127.0.0.1:{port}: Address already in use (pick another --port or --host)"


# --- db copy, db migrate ---------------------------------------------------------------------------------------

DB_PASSWORD = "s3cret-db-pw"  # the test server trusts every local login: the password is only there to be hidden


@pytest.fixture
def scratch_pg(postgres_server: str) -> Iterator[str]:
    """An empty PostgreSQL database, named in a URL that carries a password."""
    name = f"sora_cli_{os.getpid()}_{secrets.token_hex(4)}"
    url = run_sync(create_database(postgres_server, name))
    parts = urlsplit(url)
    netloc = f"{parts.username}:{DB_PASSWORD}@{parts.hostname}:{parts.port}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        run_sync(drop_database(postgres_server, name))


def shown(url: str) -> str:
    return url.replace(f":{DB_PASSWORD}@", ":***@")


def sqlite_with_jobs(path: Path) -> Path:
    async def fill() -> None:
        async with Database.open(path) as db:
            first = await reserve(db)
            await reserve(db, user_id=BOB, parent_id=first.generation_id, cost=3)
            await db.ban_member(GUILD, 4242, reason="spam", banned_by=BOB)

    run_sync(fill())
    return path


def test_db_copy_prints_each_table_and_the_verification(scratch_pg: str, tmp_path: Path) -> None:
    source = sqlite_with_jobs(tmp_path / "source.sqlite3")

    result = run_cli(tmp_path, "db", "copy", str(source), scratch_pg, base_url=unreachable_url())

    assert result.returncode == 0, result.stderr
    lines = error_lines(result.stderr)
    assert lines[0] == f"copying {source} to {shown(scratch_pg)}"
    assert "  generations: 2 rows" in lines and "  ledger: 2 rows" in lines and "  bans: 1 row" in lines
    assert len(lines) == 1 + 9 + 1
    assert lines[-1].startswith(
        "verified: 9 tables, 5 rows, row counts and checksums equal; ledger reserved 2 (4 credits)"
    )
    assert DB_PASSWORD not in result.stdout + result.stderr
    assert result.stdout == ""


def test_db_copy_into_a_non_empty_database_fails_with_one_line(scratch_pg: str, tmp_path: Path) -> None:
    source = sqlite_with_jobs(tmp_path / "source.sqlite3")
    assert run_cli(tmp_path, "db", "copy", str(source), scratch_pg, base_url=unreachable_url()).returncode == 0

    result = run_cli(tmp_path, "db", "copy", str(source), scratch_pg, base_url=unreachable_url())

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line == f"error: TO {shown(scratch_pg)} is not empty: table bans has 1 row; copy into an empty database"
    assert DB_PASSWORD not in result.stdout + result.stderr


def test_db_copy_from_a_missing_file_fails_with_one_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "db", "copy", "missing.sqlite3", "target.sqlite3", base_url=unreachable_url())

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line == "error: FROM: there is no database file at missing.sqlite3"
    assert not (tmp_path / "missing.sqlite3").exists() and not (tmp_path / "target.sqlite3").exists()


def test_db_copy_rejects_a_batch_of_zero(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "db", "copy", "a", "b", "--batch", "0", base_url=unreachable_url())
    assert result.returncode == 2 and "--batch: 0 is not at least 1" in result.stderr


def test_db_migrate_a_fresh_postgresql_database(scratch_pg: str, tmp_path: Path) -> None:
    first = run_cli(tmp_path, "db", "migrate", scratch_pg, base_url=unreachable_url())
    again = run_cli(tmp_path, "db", "migrate", scratch_pg, base_url=unreachable_url())

    assert first.returncode == 0, first.stderr
    assert error_lines(first.stderr) == [f"migrated {shown(scratch_pg)} from version 0 to {latest_version()}"]
    assert again.returncode == 0, again.stderr
    assert error_lines(again.stderr) == [f"{shown(scratch_pg)} already at version {latest_version()}"]
    assert DB_PASSWORD not in first.stderr + again.stderr


def test_db_migrate_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "by-hand.sqlite3"

    result = run_cli(tmp_path, "db", "migrate", f"sqlite:///{path}", base_url=unreachable_url())

    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == [f"migrated {path} from version 0 to {latest_version()}"]
    assert path.is_file()


def test_db_migrate_defaults_to_the_configured_database(scratch_pg: str, tmp_path: Path) -> None:
    by_path = run_cli(tmp_path, "db", "migrate", base_url=unreachable_url(), SORA_DB_PATH="configured.sqlite3")
    by_url = run_cli(tmp_path, "db", "migrate", base_url=unreachable_url(), SORA_DATABASE_URL=scratch_pg)

    assert error_lines(by_path.stderr) == [f"migrated configured.sqlite3 from version 0 to {latest_version()}"]
    assert (tmp_path / "configured.sqlite3").is_file()
    assert error_lines(by_url.stderr) == [f"migrated {shown(scratch_pg)} from version 0 to {latest_version()}"]
    assert DB_PASSWORD not in by_url.stderr


def test_db_migrate_an_unreachable_server_fails_with_one_line(tmp_path: Path) -> None:
    url = f"postgresql://bot:{DB_PASSWORD}@127.0.0.1:{free_port()}/sora"

    result = run_cli(tmp_path, "db", "migrate", url, base_url=unreachable_url())

    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.startswith("error: ") and "can't connect to postgresql://bot:***@127.0.0.1" in line
    assert DB_PASSWORD not in result.stderr
