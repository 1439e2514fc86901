"""Settings: defaults, the models table, and one-line errors for bad values."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ApiFormat, ConfigError, load_settings

UPSTREAM = {"sora_base_url": "https://gw.example.com/v1/", "sora_api_key": "sk-secret-value-123"}


def test_defaults_and_builtin_models() -> None:
    settings = load_settings(None, **UPSTREAM)
    assert settings.sora_api_format is ApiFormat.CHAT
    assert settings.sora_base_url == "https://gw.example.com"  # trailing /v1 and slash removed
    assert {"sora-2", "sora-2-pro", "sora-2-hd", "veo-3.1", "veo-3.1-fast"} <= set(settings.models)
    veo = settings.models["veo-3.1-fast"]
    assert veo.wire_name == "veo-3.1-fast-generate-preview"
    assert veo.seconds == (4, 6, 8)
    assert veo.orientations() == ("landscape", "portrait")
    assert veo.size_for_orientation("portrait") == "720x1280"


def test_admin_adds_overrides_and_removes_models(tmp_path: Path) -> None:
    models_file = tmp_path / "models.toml"
    models_file.write_text('[models."wan-2.5"]\nseconds = [5, 10]\ncost = 2\ncost_per_second = 1\n', encoding="utf-8")
    settings = load_settings(
        None,
        **UPSTREAM,
        sora_models_file=models_file,
        sora_models=json.dumps({"sora-2": {"cost": 3}, "sora-2-hd": None}),
    )
    assert settings.models["wan-2.5"].cost_for(10) == 12
    assert settings.models["sora-2"].cost == 3
    assert settings.models["sora-2"].seconds == (4, 8, 10, 12, 15)  # untouched fields keep their defaults
    assert "sora-2-hd" not in settings.models


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"sora_api_format": "grpc"}, "SORA_API_FORMAT:"),
        ({"sora_base_url": "ftp://nope"}, "SORA_BASE_URL: must start with http"),
        ({"sora_model": "nope"}, "SORA_MODEL 'nope' is not in the models table"),
        ({"sora_models": "{not json"}, "SORA_MODELS is not valid JSON"),
        ({"sora_models": json.dumps({"x": {"seconds": []}})}, "seconds must be a non-empty list"),
        ({"sora_models": json.dumps({"x": {"sizes": ["big"]}})}, "is not WIDTHxHEIGHT"),
        ({"sora_max_concurrent_jobs": 0}, "SORA_MAX_CONCURRENT_JOBS:"),
        ({"discord_guild_ids": "12,abc"}, "DISCORD_GUILD_IDS"),
    ],
)
def test_invalid_settings_give_one_line_naming_the_setting(overrides: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, **{**UPSTREAM, **overrides})
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


def test_missing_upstream_settings_are_named() -> None:
    settings = load_settings(None)
    with pytest.raises(ConfigError, match=r"^SORA_BASE_URL: missing"):
        settings.require_upstream()
    with pytest.raises(ConfigError, match=r"^DISCORD_TOKEN: missing"):
        settings.require_discord()


def test_csv_ids_and_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("DISCORD_GUILD_IDS=1, 2,3\nSORA_API_FORMAT=videos\nSORA_API_KEY=k-from-file\n", encoding="utf-8")
    settings = load_settings(env)
    assert settings.discord_guild_ids == [1, 2, 3]
    assert settings.sora_api_format is ApiFormat.VIDEOS


def test_secrets_never_in_repr() -> None:
    settings = load_settings(None, **UPSTREAM, discord_token="discord-token-value-xyz")
    text = repr(settings) + str(settings)
    assert "sk-secret-value-123" not in text
    assert "discord-token-value-xyz" not in text
    assert set(settings.secrets()) == {"sk-secret-value-123", "discord-token-value-xyz"}


def test_cli_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--env-file", str(tmp_path / "none.env"), "check"],
        env={"PATH": "/usr/bin:/bin", "SORA_API_FORMAT": "smoke-signals"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "SORA_API_FORMAT" in lines[0]
    assert "Traceback" not in result.stderr


def test_unsharded_by_default_with_the_whole_global_rate() -> None:
    settings = load_settings(None, **UPSTREAM)
    assert (settings.shard_count, settings.shard_ids) == (1, [0])
    assert settings.discord_global_rate == 50
    assert settings.sora_identify_interval == 5.0
    assert settings.owns_guild(None) and settings.owns_guild(1461366817443282945)


def test_a_slice_of_shards_and_its_share_of_the_global_rate(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SORA_SHARD_COUNT=4\nSORA_SHARD_IDS=3, 1\nSORA_DISCORD_GLOBAL_RATE=\n", encoding="utf-8")
    settings = load_settings(env)
    assert (settings.shard_count, settings.shard_ids) == (4, [1, 3])
    assert settings.discord_global_rate == 25  # 50 × 2 of 4 shards
    guild_on = {shard: ((1000 + shard) << 22) | 12345 for shard in range(4)}  # (id >> 22) % 4 == shard
    assert [settings.owns_guild(guild_on[shard]) for shard in range(4)] == [False, True, False, True]
    assert not settings.owns_guild(None)  # DMs go to shard 0

    every = load_settings(None, sora_shard_count="3", sora_discord_global_rate="12.5", sora_identify_interval="0")
    assert every.shard_ids == [0, 1, 2] and every.discord_global_rate == 12.5 and every.sora_identify_interval == 0


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"sora_shard_ids": "0"}, "SORA_SHARD_IDS: needs SORA_SHARD_COUNT"),
        ({"sora_shard_count": 2, "sora_shard_ids": "0,2"}, "SORA_SHARD_IDS: shard 2 is not one of 0..1"),
        ({"sora_shard_count": 2, "sora_shard_ids": "1,1"}, "SORA_SHARD_IDS: lists a shard twice"),
        ({"sora_shard_count": 2, "sora_shard_ids": "one"}, "SORA_SHARD_IDS"),
        ({"sora_shard_count": 0}, "SORA_SHARD_COUNT:"),
        ({"sora_identify_interval": -1}, "SORA_IDENTIFY_INTERVAL:"),
        ({"sora_discord_global_rate": 0}, "SORA_DISCORD_GLOBAL_RATE:"),
    ],
)
def test_bad_shard_settings_name_the_setting(overrides: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, **{**UPSTREAM, **overrides})
    assert str(caught.value).startswith(expected)
    assert "\n" not in str(caught.value)
