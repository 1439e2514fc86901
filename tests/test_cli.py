"""`sora-bot` end to end: the real CLI as a subprocess against `sora-bot fake-upstream` as another subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
