"""`sora-bot`: run the bot, generate a video from the terminal, check the configuration, run the fake gateway, copy
or migrate the database."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import json
import logging
import mimetypes
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from bot.config import ConfigError, Settings, database_password, load_settings, orientation_of
from bot.log import RedactingFilter, connection_problem, setup_logging
from bot.upstream import make_client, make_session, options_from_settings
from bot.upstream.base import fetch_image
from bot.upstream.redact import redact
from bot.upstream.types import (
    DownloadedVideo,
    Event,
    Failed,
    FailureKind,
    Preview,
    Queued,
    ReferenceImage,
    Succeeded,
    TaskId,
    UpstreamError,
    VideoRequest,
)
from bot.upstream.types import Progress as ProgressEvent
from bot.upstream.urlpolicy import UrlPolicy
from storage import CopyReport, StorageError, TableCopy, copy_database, migrate_database
from storage.postgres import display_url

log = logging.getLogger(__name__)
stderr = Console(stderr=True, highlight=False)
LINE_BREAKS = re.compile(r"[\t\n\v\f\r]+")
# C0/C1 controls (ESC starts terminal sequences, OSC 8 plants links) and the bidi overrides that reorder text.
UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class CliError(Exception):
    """A failure reported as one line on stderr."""


class Report:
    """Lines on stderr. Text that came from the gateway, Discord or the user is shown as it is: never parsed as
    rich markup (`[/bold]` would crash the print, `[link=...]` would plant a link), on one line, control
    characters written as escapes, and the configured secrets masked."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.redactor = RedactingFilter()

    def use_secrets(self, secrets: Iterable[str]) -> None:
        self.redactor = RedactingFilter(secrets)

    def clean(self, text: str) -> str:
        text = LINE_BREAKS.sub(" ", self.redactor.redact(text))
        return UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)

    def line(self, message: str, *, label: str = "", style: str = "") -> None:
        text = Text()
        if label:
            text.append(label, style=style)
            text.append(" ")
        text.append(self.clean(message))
        self.console.print(text, soft_wrap=True)


report = Report(stderr)


def port_number(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sora-bot", description="Discord bot that turns prompts into videos.")
    parser.add_argument("--env-file", default=".env", help="settings file to read (default: .env)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("run", help="start the Discord bot")

    generate = commands.add_parser("generate", help="generate one video with the configured gateway")
    generate.add_argument("prompt")
    generate.add_argument("--model", help="model name from the models table (default: SORA_MODEL)")
    generate.add_argument("--seconds", type=int, help="duration in seconds")
    shape = generate.add_mutually_exclusive_group()
    shape.add_argument("--size", help="WIDTHxHEIGHT, e.g. 1280x720")
    shape.add_argument("--orientation", choices=("portrait", "landscape"))
    generate.add_argument("--image", action="append", default=[], help="reference image: a path or an URL")
    generate.add_argument("--out", type=Path, help="where to write the MP4 (default: named after the prompt)")
    generate.add_argument("--json", action="store_true", help="print one JSON line with the outcome on stdout")

    commands.add_parser("check", help="validate the configuration and make one call to the gateway")

    fake = commands.add_parser("fake-upstream", help="run the fake video gateway (for trying things out)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=port_number, default=8765)
    fake.add_argument("--steps", type=int, default=8, help="progress updates per video")
    fake.add_argument("--interval", type=float, default=0.5, help="seconds between progress updates")
    fake.add_argument("--api-key", help="accept only this bearer key")
    fake.add_argument("--replay", type=Path, help="serve this recorded SSE transcript on the chat endpoint")

    invite = commands.add_parser("invite", help="print the OAuth2 URL that invites the bot")
    invite.add_argument("--client-id", type=int, help="application id (default: read from Discord with the token)")

    database = commands.add_parser("db", help="copy or migrate the database")
    database_commands = database.add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    copy_parser = database_commands.add_parser(
        "copy",
        help="copy every row into an empty database (SQLite or PostgreSQL, either way) and verify it",
        description="FROM and TO are sqlite:///relative/path, sqlite:////absolute/path, a plain file path, or "
        "postgresql://user@host:port/db. TO must be empty; both are migrated to the latest schema first.",
    )
    copy_parser.add_argument("source", metavar="FROM", help="the database to copy")
    copy_parser.add_argument("target", metavar="TO", help="the empty database to copy into")
    copy_parser.add_argument("--batch", type=positive_int, default=1000, help="rows per read and write (default: 1000)")
    migrate_parser = database_commands.add_parser("migrate", help="bring a database to the latest schema")
    migrate_parser.add_argument(
        "url", metavar="URL", nargs="?", help="the database (default: SORA_DATABASE_URL, else SORA_DB_PATH)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fake-upstream":
            return run_fake_upstream(args)
        settings = load_settings(args.env_file)
        report.use_secrets(settings.secrets())
        if args.command == "run":
            # discord.py and the cogs take a while to import; only `run` needs them.
            from bot.launcher import run_bot

            return run_bot(settings)
        # The one-shot commands say what happened in their own lines; library logs only for warnings (or DEBUG).
        setup_logging("DEBUG" if settings.log_level == "DEBUG" else "WARNING", settings.secrets())
        if args.command == "generate":
            return asyncio.run(generate(settings, args))
        if args.command == "check":
            return asyncio.run(check(settings))
        if args.command == "invite":
            return asyncio.run(invite(settings, args))
        if args.command == "db":
            return asyncio.run(db_command(settings, args))
    except ConfigError as exc:
        report.line(str(exc), label="config error:", style="red")
        return 2
    except CliError as exc:
        report.line(str(exc), label="error:", style="red")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug still ends in one line; the traceback is logged at LOG_LEVEL=DEBUG
        log.debug("%s failed unexpectedly", args.command, exc_info=True)
        report.line(
            f"{args.command} failed unexpectedly: {type(exc).__name__}: {exc} (LOG_LEVEL=DEBUG logs the traceback)",
            label="error:",
            style="red",
        )
        return 1
    return 0


# --- generate ----------------------------------------------------------------------------------------------


def request_from_args(settings: Settings, args: argparse.Namespace) -> VideoRequest:
    try:
        model = settings.model(args.model)
    except KeyError:
        raise CliError(f"unknown model {args.model!r}; configured: {', '.join(settings.models)}") from None
    prompt = args.prompt.strip()
    if not prompt:
        raise CliError("the prompt is empty")
    seconds = args.seconds if args.seconds is not None else model.seconds_default
    if seconds not in model.seconds:
        allowed = ", ".join(str(s) for s in model.seconds)
        raise CliError(f"{model.name} makes videos of {allowed} seconds, not {seconds}")
    size = args.size
    if size is not None and size not in model.sizes:
        raise CliError(f"{model.name} makes videos of size {', '.join(model.sizes)}, not {size}")
    orientation = args.orientation
    if orientation is not None:
        size = model.size_for_orientation(orientation)
        if size is None:
            raise CliError(f"{model.name} has no {orientation} size")
    size = size or model.size_default
    images = tuple(load_image(spec, settings) for spec in args.image)
    if len(images) > model.reference_images:
        raise CliError(f"{model.name} takes at most {model.reference_images} reference image(s)")
    return VideoRequest(
        prompt=prompt,
        model=model.wire_name,
        seconds=seconds,
        size=size,
        orientation=orientation or orientation_of(size),
        images=images,
    )


def load_image(spec: str, settings: Settings | None = None) -> ReferenceImage:
    """A file, or a link fetched here under the URL policy (the gateway's host and SORA_FETCH_ALLOW from
    `settings`; without them only public hosts) and sent as bytes."""
    if re.match(r"^https?://", spec):
        policy = UrlPolicy.build(
            settings.sora_base_url if settings else None, settings.sora_fetch_allow if settings else ()
        )
        max_bytes = (settings.sora_max_image_mb if settings else 10) * 2**20

        async def fetch() -> ReferenceImage:
            async with make_session(settings) as session:
                return await fetch_image(session, spec, policy=policy, max_bytes=max_bytes)

        # Called from synchronous code inside the running event loop: the fetch gets a loop of its own.
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                return pool.submit(asyncio.run, fetch()).result()
        except UpstreamError as exc:
            raise CliError(f"cannot fetch image {redact(spec)}: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CliError(f"cannot fetch image {redact(spec)}: {type(exc).__name__}") from None
    path = Path(spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read image {spec}: {exc.strerror}") from None
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if not content_type.startswith("image/"):
        raise CliError(f"{spec} is not an image")
    return ReferenceImage(data=data, filename=path.name, content_type=content_type)


def default_output_name(prompt: str) -> Path:
    slug = re.sub(r"[^\w]+", "-", prompt, flags=re.UNICODE).strip("-").lower()[:48] or "video"
    return Path(f"{slug}.mp4")


def check_writable(out: Path) -> None:
    """Refuse an --out the video could not be saved to before the gateway is asked (and paid) for it."""
    folder = out.parent
    if not folder.is_dir():
        raise CliError(f"--out: the folder {folder} doesn't exist")
    if out.is_dir():
        raise CliError(f"--out: {out} is a folder; name a file")
    if not os.access(folder, os.W_OK):
        raise CliError(f"--out: cannot write into {folder}")


FAILURE_HINTS = {
    FailureKind.AUTH: "check SORA_API_KEY",
    FailureKind.TIMEOUT: "SORA_JOB_TIMEOUT and SORA_STALL_TIMEOUT bound the wait",
}


def failure_line(failed: Failed, base_url: str | None) -> str:
    line = f"{failed.kind}: {failed.reason}"
    hint = FAILURE_HINTS.get(failed.kind)
    if hint is None and failed.kind == FailureKind.UPSTREAM and "connect" in failed.reason.lower():
        hint = f"check SORA_BASE_URL ({base_url}) and that the gateway is up"
    return f"{line}; {hint}" if hint else line


async def generate(settings: Settings, args: argparse.Namespace) -> int:
    options = options_from_settings(settings)
    request = request_from_args(settings, args)
    model = settings.model(args.model)
    out: Path = args.out or default_output_name(request.prompt)
    check_writable(out)
    started = time.monotonic()
    outcome: dict[str, Any] = {
        "status": "failed",
        "task_id": None,
        "video_url": None,
        "file": None,
        "bytes": 0,
        "elapsed_s": 0.0,
        "max_progress": 0.0,
        "error": None,
    }
    final: Event | None = None
    async with make_session(settings) as session:
        client = make_client(settings.format_for(model), session, options)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=not stderr.is_terminal,
        ) as bar:
            task = bar.add_task("starting", total=100)
            async for event in client.generate(request):
                match event:
                    case Queued(position=position):
                        bar.update(task, description=f"queued{f' (#{position})' if position else ''}")
                    case ProgressEvent(percent=percent):
                        outcome["max_progress"] = max(outcome["max_progress"], percent)
                        bar.update(task, description="generating", completed=percent)
                    case TaskId(task_id=task_id):
                        outcome["task_id"] = task_id
                    case Preview():
                        pass
                    case Succeeded() | Failed():
                        final = event
            if isinstance(final, Succeeded):
                bar.update(task, description="downloading", completed=100)
                outcome["task_id"] = final.task_id or outcome["task_id"]
                outcome["video_url"] = final.video_url
                try:
                    video = await download(client, final, out)
                except UpstreamError as exc:
                    final = exc.to_event(final.task_id)
                except aiohttp.ClientError as exc:  # before OSError: aiohttp's connection errors are OSErrors
                    final = Failed(FailureKind.UPSTREAM, f"the download failed ({type(exc).__name__})", final.task_id)
                except OSError as exc:
                    raise CliError(f"cannot write {out}: {exc.strerror or type(exc).__name__}") from None
                else:
                    outcome.update(status="succeeded", file=str(out), bytes=video.size)
    failure_text = "the gateway ended the stream without a result"
    if isinstance(final, Failed):
        outcome["error"] = report.redactor.redact(f"{final.kind}: {final.reason}")
        outcome["task_id"] = final.task_id or outcome["task_id"]
        failure_text = failure_line(final, settings.sora_base_url)
    outcome["elapsed_s"] = round(time.monotonic() - started, 3)
    if args.json:
        print(json.dumps(outcome, ensure_ascii=False))
    if outcome["status"] == "succeeded":
        if not args.json:
            report.line(f"wrote {out} ({outcome['bytes']:,} bytes) in {outcome['elapsed_s']:.1f} s")
        return 0
    report.line(failure_text, label="failed:", style="red")
    return 1


async def download(client: Any, result: Succeeded, out: Path) -> DownloadedVideo:
    partial = out.with_name(out.name + ".part")
    try:
        video = await client.download(result, partial)
        await asyncio.to_thread(partial.replace, out)
        return video
    finally:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(partial.unlink)


# --- check -------------------------------------------------------------------------------------------------


async def check(settings: Settings) -> int:
    options = options_from_settings(settings)
    report.line(
        f"config ok: format={settings.sora_api_format}, model={settings.sora_model}, "
        f"{len(settings.models)} models, gateway={settings.sora_base_url}"
    )
    async with make_session(settings) as session:
        client = make_client(settings.sora_api_format, session, options)
        try:
            answer = await client.check()
        except UpstreamError as exc:
            hint = " (check SORA_API_KEY)" if exc.kind == FailureKind.AUTH else ""
            raise CliError(f"the gateway refused the check call: {exc.kind}: {exc}{hint}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CliError(
                f"could not reach the gateway at {settings.sora_base_url} ({connection_problem(exc)}): "
                "check SORA_BASE_URL"
            ) from None
    report.line(f"gateway ok: {answer}")
    if settings.discord_token is None:
        report.line("note: DISCORD_TOKEN is not set; `sora-bot run` needs it")
    return 0


# --- invite ------------------------------------------------------------------------------------------------

DISCORD_TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=10)


async def invite(settings: Settings, args: argparse.Namespace) -> int:
    # bot.permissions imports discord.py, slow to import; only this command needs it.
    from bot.permissions import invite_url

    client_id = args.client_id
    if client_id is None:
        settings.require_discord()
        assert settings.discord_token is not None
        client_id = application_id_from_token(settings.discord_token.get_secret_value())
        if client_id is None:
            client_id = await application_id(settings)
    print(invite_url(client_id))
    return 0


def application_id_from_token(token: str) -> int | None:
    """A bot token starts with the base64 of the bot's user id, which is also its application id."""
    first = token.strip().split(".", 1)[0].translate(str.maketrans("-_", "+/"))
    try:
        decoded = base64.b64decode(first + "=" * (-len(first) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not (decoded.isdigit() and 1 <= len(decoded) <= 20):
        return None
    return int(decoded) or None


async def application_id(settings: Settings) -> int:
    """Ask Discord which application the token belongs to."""
    # discord.py's REST base (with the API version added) is the one `sora-bot run` would use.
    from discord.http import Route

    from bot.runtime import point_discord_at

    point_discord_at(settings.discord_api_base, settings.discord_gateway_url)
    assert settings.discord_token is not None
    headers = {"Authorization": f"Bot {settings.discord_token.get_secret_value()}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=DISCORD_TIMEOUT) as session,
            session.get(f"{Route.BASE}/oauth2/applications/@me", headers=headers) as response,
        ):
            if response.status == 401:
                raise CliError("Discord refused DISCORD_TOKEN (401): copy it again from the Developer Portal")
            if response.status >= 400:
                raise CliError(f"Discord answered HTTP {response.status}; pass --client-id instead")
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, OSError) as exc:
        raise CliError(
            f"could not reach Discord at {settings.discord_api_base} ({connection_problem(exc)}): "
            "check DISCORD_API_BASE, or pass --client-id"
        ) from None
    except ValueError:
        raise CliError("Discord's answer was not JSON; pass --client-id instead") from None
    try:
        return int(body["id"])
    except (KeyError, TypeError, ValueError):
        raise CliError("Discord's answer carried no application id; pass --client-id instead") from None


# --- db ----------------------------------------------------------------------------------------------------


def url_passwords(*urls: str) -> list[str]:
    found: list[str] = []
    for url in urls:
        with contextlib.suppress(ValueError):
            found.append(urlsplit(url).password or "")
        found.append(database_password(url) or "")
    return [password for password in found if password]


async def db_command(settings: Settings, args: argparse.Namespace) -> int:
    urls = [args.source, args.target] if args.db_command == "copy" else [args.url or settings.database_url]
    report.use_secrets([*settings.secrets(), *url_passwords(*urls)])
    try:
        if args.db_command == "copy":
            return await copy_command(args.source, args.target, args.batch)
        return await migrate_command(urls[0])
    except StorageError as exc:
        raise CliError(str(exc)) from None


async def copy_command(source: str, target: str, batch: int) -> int:
    started = False

    def copied(table: TableCopy) -> None:
        nonlocal started
        if not started:  # only once the target was found empty: a refusal stays one line
            report.line(f"copying {display_url(source)} to {display_url(target)}")
            started = True
        report.line(f"  {table.name}: {table.rows:,} row{'' if table.rows == 1 else 's'}")

    result = await copy_database(source, target, batch=batch, progress=copied)
    report.line(copy_summary(result))
    return 0


def copy_summary(result: CopyReport) -> str:
    ledger = ", ".join(f"{s.state} {s.count:,} ({s.credits:,} credits)" for s in result.ledger) or "empty"
    return (
        f"verified: {len(result.tables)} tables, {result.total_rows:,} rows, row counts and checksums equal; "
        f"ledger {ledger}; {result.seconds:.1f} s"
    )


async def migrate_command(url: str) -> int:
    result = await migrate_database(url)
    if result.migrated:
        report.line(f"migrated {result.database} from version {result.before} to {result.after}")
    else:
        report.line(f"{result.database} already at version {result.after}")
    return 0


# --- fake upstream -----------------------------------------------------------------------------------------


def run_fake_upstream(args: argparse.Namespace) -> int:
    from aiohttp import web

    from bot.fake_upstream import FakeConfig, create_app

    if args.replay is not None and not args.replay.is_file():
        raise CliError(f"--replay: no such file {args.replay}")
    config = FakeConfig(
        steps=args.steps,
        interval=args.interval,
        api_key=args.api_key,
        replay_file=str(args.replay) if args.replay else None,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def announce(_aiohttp_banner: str) -> None:  # called once the port is bound
        report.line(f"fake gateway on http://{args.host}:{args.port} (Ctrl-C to stop)")

    try:
        web.run_app(create_app(config), host=args.host, port=args.port, print=announce)
    except OSError as exc:
        raise CliError(
            f"cannot listen on {args.host}:{args.port}: {connection_problem(exc)} (pick another --port or --host)"
        ) from None
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
