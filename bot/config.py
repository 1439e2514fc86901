"""Settings: typed, validated once at start, from the environment and a `.env` file.

Every setting is listed with a comment in `.env.example`. A bad value stops the program with one line naming
the setting (`ConfigError`), never a traceback.
"""

from __future__ import annotations

import json
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Orientation = Literal["landscape", "portrait"]
SIZE_PATTERN = re.compile(r"^\d{2,5}x\d{2,5}$")
# Discord's global limit: requests per second per bot token, shared by every process running that bot.
DISCORD_GLOBAL_RATE = 50.0


class ApiFormat(StrEnum):
    CHAT = "chat"
    VIDEOS = "videos"
    TASK = "task"
    IMAGES = "images"


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line naming it."""


class ModelSpec(BaseModel):
    """What one video model accepts and what it costs. Admins add or override these in configuration."""

    model_config = {"frozen": True, "extra": "forbid"}

    name: str
    label: str | None = None
    upstream_name: str | None = Field(
        default=None, description="Name sent to the gateway when it differs from the name members see"
    )
    seconds: tuple[int, ...] = (10,)
    default_seconds: int | None = None
    sizes: tuple[str, ...] = ("1280x720", "720x1280")
    default_size: str | None = None
    reference_images: int = Field(default=1, ge=0, le=8, description="Max reference images; 0 = none")
    cost: int = Field(default=1, ge=0, description="Credits per video")
    cost_per_second: int = Field(default=0, ge=0, description="Extra credits per second of video")
    api_format: ApiFormat | None = Field(default=None, description="Overrides SORA_API_FORMAT for this model")

    @field_validator("seconds")
    @classmethod
    def _seconds_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(s <= 0 for s in value):
            raise ValueError("seconds must be a non-empty list of positive integers")
        return tuple(sorted(set(value)))

    @field_validator("sizes")
    @classmethod
    def _sizes_shape(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("sizes must not be empty")
        for size in value:
            if not SIZE_PATTERN.match(size):
                raise ValueError(f"size {size!r} is not WIDTHxHEIGHT")
        return value

    @model_validator(mode="after")
    def _defaults_allowed(self) -> ModelSpec:
        if self.default_seconds is not None and self.default_seconds not in self.seconds:
            raise ValueError(f"default_seconds {self.default_seconds} is not one of {list(self.seconds)}")
        if self.default_size is not None and self.default_size not in self.sizes:
            raise ValueError(f"default_size {self.default_size!r} is not one of {list(self.sizes)}")
        return self

    @property
    def wire_name(self) -> str:
        return self.upstream_name or self.name

    @property
    def seconds_default(self) -> int:
        return self.default_seconds if self.default_seconds is not None else self.seconds[0]

    @property
    def size_default(self) -> str:
        return self.default_size if self.default_size is not None else self.sizes[0]

    def orientations(self) -> tuple[Orientation, ...]:
        found: list[Orientation] = []
        for size in self.sizes:
            orientation = orientation_of(size)
            if orientation not in found:
                found.append(orientation)
        return tuple(found)

    def size_for_orientation(self, orientation: Orientation) -> str | None:
        if orientation_of(self.size_default) == orientation:
            return self.size_default
        return next((s for s in self.sizes if orientation_of(s) == orientation), None)

    def cost_for(self, seconds: int) -> int:
        return self.cost + self.cost_per_second * seconds


def orientation_of(size: str) -> Orientation:
    width, height = (int(part) for part in size.lower().split("x"))
    return "portrait" if height > width else "landscape"


PORTRAIT_LANDSCAPE = ("1280x720", "720x1280")
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "sora-2": {
        "label": "Sora 2",
        "seconds": (4, 8, 10, 12, 15),
        "default_seconds": 10,
        "sizes": PORTRAIT_LANDSCAPE,
        "cost": 1,
    },
    "sora-2-pro": {
        "label": "Sora 2 Pro",
        "seconds": (4, 8, 10, 12, 15, 25),
        "default_seconds": 10,
        "sizes": (*PORTRAIT_LANDSCAPE, "1792x1024", "1024x1792"),
        "cost": 5,
    },
    "sora-2-hd": {
        "label": "Sora 2 HD",
        "seconds": (10, 15),
        "default_seconds": 10,
        "sizes": ("1792x1024", "1024x1792"),
        "cost": 3,
    },
    "veo-3.1": {
        "label": "Veo 3.1",
        "upstream_name": "veo-3.1-generate-preview",
        "seconds": (4, 6, 8),
        "default_seconds": 8,
        "sizes": (*PORTRAIT_LANDSCAPE, "1920x1080", "1080x1920"),
        "reference_images": 3,
        "cost": 4,
    },
    "veo-3.1-fast": {
        "label": "Veo 3.1 Fast",
        "upstream_name": "veo-3.1-fast-generate-preview",
        "seconds": (4, 6, 8),
        "default_seconds": 8,
        "sizes": (*PORTRAIT_LANDSCAPE, "1920x1080", "1080x1920"),
        "reference_images": 3,
        "cost": 2,
    },
}


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CsvInts = Annotated[list[int], NoDecode]
CsvStrs = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """All runtime settings. Environment variables win over `.env`."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Discord
    discord_token: SecretStr | None = None
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_guild_ids: CsvInts = Field(default_factory=list)
    bot_owner_ids: CsvInts = Field(default_factory=list)

    # Sharding: this process runs shards SORA_SHARD_IDS of SORA_SHARD_COUNT and takes its share of Discord's limits
    sora_shard_count: int | None = Field(default=None, ge=1, le=100_000)
    sora_shard_ids: CsvInts = Field(default_factory=list, description="Empty: every shard of SORA_SHARD_COUNT")
    sora_identify_interval: float = Field(default=5.0, ge=0, le=600)
    sora_discord_global_rate: float | None = Field(
        default=None, gt=0, le=100_000, description="Requests/s; default: 50 × this process's share of the shards"
    )

    # Upstream gateway
    sora_base_url: str | None = None
    sora_api_key: SecretStr | None = None
    sora_api_format: ApiFormat = ApiFormat.CHAT
    sora_model: str = "sora-2"
    sora_models: str | None = Field(default=None, description="JSON object: name -> model fields")
    sora_models_file: Path | None = None

    # Timeouts and bounds
    sora_connect_timeout: float = Field(default=10.0, gt=0)
    sora_stall_timeout: float = Field(default=180.0, gt=0)
    sora_job_timeout: float = Field(default=3600.0, gt=0)
    sora_poll_interval: float = Field(default=2.0, gt=0)
    sora_max_concurrent_jobs: int = Field(default=4, ge=1, le=1000)
    sora_max_download_mb: int = Field(default=512, ge=1)
    sora_retry_attempts: int = Field(default=4, ge=0, le=20)
    sora_download_timeout: float = Field(default=600.0, gt=0)
    sora_download_min_rate_kib: float = Field(default=32.0, ge=0)
    sora_fetch_allow: CsvStrs = Field(default_factory=list)

    # Bot behaviour and storage
    sora_db_path: Path = Path("sora-bot.sqlite3")
    sora_database_url: SecretStr | None = Field(
        default=None, description="sqlite:///path or postgresql://user@host:port/db; default: SORA_DB_PATH"
    )
    sora_edit_interval: float = Field(default=1.5, ge=0.2)
    sora_remix_depth: int = Field(default=8, ge=1, le=50)
    sora_max_prompt_chars: int = Field(default=4000, ge=10, le=32000)
    sora_max_image_mb: int = Field(default=10, ge=1, le=100)
    sora_lease_seconds: float = Field(default=30.0, ge=0.5, le=3600)
    sora_sweep_interval: float = Field(default=60.0, ge=0.1, le=3600)
    sora_max_queued_jobs: int = Field(default=200, ge=1, le=100000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    models: dict[str, ModelSpec] = Field(default_factory=dict, exclude=True)

    @field_validator("discord_guild_ids", "bot_owner_ids", "sora_fetch_allow", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("sora_shard_count", "sora_discord_global_rate", "sora_models_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("sora_shard_ids", mode="before")
    @classmethod
    def _shard_ids_csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("sora_shard_ids")
    @classmethod
    def _shard_ids_in_range(cls, value: list[int], info: ValidationInfo) -> list[int]:
        if not value:
            return value
        if "sora_shard_count" not in info.data:
            return value  # SORA_SHARD_COUNT itself is invalid and is reported
        count = info.data["sora_shard_count"]
        if count is None:
            raise ValueError("needs SORA_SHARD_COUNT (the total number of shards across all processes)")
        outside = [shard for shard in value if not 0 <= shard < count]
        if outside:
            raise ValueError(f"shard {outside[0]} is not one of 0..{count - 1} (SORA_SHARD_COUNT={count})")
        if len(set(value)) != len(value):
            raise ValueError("lists a shard twice")
        return sorted(value)

    @field_validator("sora_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must start with http:// or https:// and name a host")
        # Admins often paste the SDK-style base ending in /v1; the clients add /v1 themselves.
        return value.removesuffix("/v1")

    @field_validator("discord_api_base", "discord_gateway_url")
    @classmethod
    def _discord_url(cls, value: str) -> str:
        value = value.strip()
        if not re.match(r"^(https?|wss?)://[^/\s]+", value):
            raise ValueError("must be an http(s):// or ws(s):// URL")
        return value

    @model_validator(mode="after")
    def _build_models(self) -> Settings:
        table = {name: dict(fields) for name, fields in DEFAULT_MODELS.items()}
        for source_name, overrides in self._model_overrides():
            if not isinstance(overrides, dict):
                raise ValueError(f"{source_name} must be an object of model name -> fields")
            for name, fields in overrides.items():
                if fields is None:
                    table.pop(name, None)
                    continue
                if not isinstance(fields, dict):
                    raise ValueError(f"{source_name}: model {name!r} must be an object of fields")
                table[name] = {**table.get(name, {}), **fields}
        try:
            self.models = {name: ModelSpec(name=name, **fields) for name, fields in table.items()}
        except ValidationError as exc:
            raise ValueError(f"models table: {_first_error(exc)}") from None
        if not self.models:
            raise ValueError("models table is empty")
        if self.sora_model not in self.models:
            raise ValueError(f"SORA_MODEL {self.sora_model!r} is not in the models table ({', '.join(self.models)})")
        return self

    def _model_overrides(self) -> list[tuple[str, Any]]:
        sources: list[tuple[str, Any]] = []
        if self.sora_models_file is not None:
            path = self.sora_models_file
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"SORA_MODELS_FILE cannot be read: {exc.strerror}") from None
            try:
                data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
            except (ValueError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"SORA_MODELS_FILE is not valid {path.suffix or 'JSON'}: {exc}") from None
            sources.append(("SORA_MODELS_FILE", data.get("models", data) if isinstance(data, dict) else data))
        if self.sora_models:
            try:
                sources.append(("SORA_MODELS", json.loads(self.sora_models)))
            except ValueError as exc:
                raise ValueError(f"SORA_MODELS is not valid JSON: {exc}") from None
        return sources

    # --- helpers -----------------------------------------------------------------------------------------

    def model(self, name: str | None) -> ModelSpec:
        return self.models[name or self.sora_model]

    def format_for(self, model: ModelSpec) -> ApiFormat:
        return model.api_format or self.sora_api_format

    @property
    def database_url(self) -> str:
        """Where the storage lives: `SORA_DATABASE_URL`, or the SQLite file `SORA_DB_PATH`."""
        if self.sora_database_url is not None and self.sora_database_url.get_secret_value().strip():
            return self.sora_database_url.get_secret_value().strip()
        return f"sqlite:///{self.sora_db_path}"

    @property
    def shard_count(self) -> int:
        """Shards across all processes; 1 when unsharded."""
        return self.sora_shard_count or 1

    @property
    def shard_ids(self) -> list[int]:
        """The shards this process runs: SORA_SHARD_IDS, else all of them."""
        return list(self.sora_shard_ids) or list(range(self.shard_count))

    def owns_guild(self, guild_id: int | None) -> bool:
        """Whether this process's shards receive `guild_id`'s events: `(guild_id >> 22) % shard_count` (DMs,
        None: shard 0) is one of `shard_ids`."""
        shard = (guild_id >> 22) % self.shard_count if guild_id is not None else 0
        return shard in self.shard_ids

    @property
    def discord_global_rate(self) -> float:
        """Requests per second this process may send with the bot token: SORA_DISCORD_GLOBAL_RATE, else its share
        of Discord's 50/s in proportion to the shards it runs."""
        if self.sora_discord_global_rate is not None:
            return self.sora_discord_global_rate
        return DISCORD_GLOBAL_RATE * len(self.shard_ids) / self.shard_count

    @property
    def max_download_bytes(self) -> int:
        return self.sora_max_download_mb * 1024 * 1024

    def require_upstream(self) -> None:
        if not self.sora_base_url:
            raise ConfigError("SORA_BASE_URL: missing (the gateway root, e.g. https://api.example.com)")
        if self.sora_api_key is None or not self.sora_api_key.get_secret_value().strip():
            raise ConfigError("SORA_API_KEY: missing (the gateway's API key)")

    def require_discord(self) -> None:
        if self.discord_token is None or not self.discord_token.get_secret_value().strip():
            raise ConfigError("DISCORD_TOKEN: missing (the bot token from the Developer Portal)")

    def secrets(self) -> list[str]:
        """Values that must never appear in logs or messages."""
        values = [v.get_secret_value() for v in (self.sora_api_key, self.discord_token) if v is not None]
        password = database_password(self.database_url)
        return [v for v in (*values, password) if v]


def database_password(url: str) -> str | None:
    """The password in a database URL, if it carries one (it is a secret like the tokens)."""
    match = re.match(r"^[a-z+]+://[^:/@]*:([^@]*)@", url)
    return match[1] if match and match[1] else None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def load_settings(env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
    """Read and validate settings, turning any problem into a one-line `ConfigError`."""
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        if not location:
            raise ConfigError(message) from None
        raise ConfigError(f"{location}: {message}") from None
