"""`sora-bot`: run the bot, generate a video from the terminal, check the configuration, run the fake gateway."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import mimetypes
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from bot.config import ConfigError, Settings, load_settings
from bot.upstream.types import (
    DownloadedVideo,
    Event,
    Failed,
    Preview,
    Queued,
    ReferenceImage,
    Succeeded,
    TaskId,
    UpstreamError,
    VideoRequest,
)
from bot.upstream.types import Progress as ProgressEvent

log = logging.getLogger(__name__)
stderr = Console(stderr=True, highlight=False)


class CliError(Exception):
    """A failure reported as one line on stderr."""


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
    fake.add_argument("--port", type=int, default=8765)
    fake.add_argument("--steps", type=int, default=8, help="progress updates per video")
    fake.add_argument("--interval", type=float, default=0.5, help="seconds between progress updates")
    fake.add_argument("--api-key", help="accept only this bearer key")
    fake.add_argument("--replay", type=Path, help="serve this recorded SSE transcript on the chat endpoint")

    invite = commands.add_parser("invite", help="print the OAuth2 URL that invites the bot")
    invite.add_argument("--client-id", type=int, help="application id (default: read from Discord with the token)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "fake-upstream":
            return run_fake_upstream(args)
        settings = load_settings(args.env_file)
        if args.command == "generate":
            return asyncio.run(generate(settings, args))
        if args.command == "check":
            return asyncio.run(check(settings))
        if args.command == "invite":
            return asyncio.run(invite(settings, args))
        if args.command == "run":
            from bot.launcher import run_bot

            return run_bot(settings)
    except ConfigError as exc:
        stderr.print(f"[red]config error:[/] {exc}", markup=True, soft_wrap=True)
        return 2
    except CliError as exc:
        stderr.print(f"[red]error:[/] {exc}", markup=True, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130
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
    images = tuple(load_image(spec) for spec in args.image)
    if len(images) > model.reference_images:
        raise CliError(f"{model.name} takes at most {model.reference_images} reference image(s)")
    from bot.config import orientation_of

    return VideoRequest(
        prompt=prompt,
        model=model.wire_name,
        seconds=seconds,
        size=size,
        orientation=orientation or orientation_of(size),
        images=images,
    )


def load_image(spec: str) -> ReferenceImage:
    if re.match(r"^https?://", spec):
        return ReferenceImage(url=spec)
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


async def generate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.upstream import make_client, make_session, options_from_settings

    options = options_from_settings(settings)
    request = request_from_args(settings, args)
    model = settings.model(args.model)
    out: Path = args.out or default_output_name(request.prompt)
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
                else:
                    outcome.update(status="succeeded", file=str(out), bytes=video.size)
    if isinstance(final, Failed):
        outcome["error"] = f"{final.kind}: {final.reason}"
        outcome["task_id"] = final.task_id or outcome["task_id"]
    outcome["elapsed_s"] = round(time.monotonic() - started, 3)
    if args.json:
        print(json.dumps(outcome, ensure_ascii=False))
    if outcome["status"] == "succeeded":
        if not args.json:
            stderr.print(f"wrote {out} ({outcome['bytes']:,} bytes) in {outcome['elapsed_s']:.1f} s")
        return 0
    stderr.print(f"[red]failed:[/] {outcome['error']}", markup=True, soft_wrap=True)
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
    from bot.upstream import make_client, make_session, options_from_settings

    options = options_from_settings(settings)
    stderr.print(
        f"config ok: format={settings.sora_api_format}, model={settings.sora_model}, "
        f"{len(settings.models)} models, gateway={settings.sora_base_url}"
    )
    async with make_session(settings) as session:
        client = make_client(settings.sora_api_format, session, options)
        try:
            answer = await client.check()
        except UpstreamError as exc:
            raise CliError(f"the gateway refused the check call: {exc.kind}: {exc}") from None
        except Exception as exc:
            raise CliError(f"could not reach the gateway: {type(exc).__name__}") from None
    stderr.print(f"gateway ok: {answer}")
    if settings.discord_token is None:
        stderr.print("note: DISCORD_TOKEN is not set; `sora-bot run` needs it")
    return 0


# --- invite ------------------------------------------------------------------------------------------------


async def invite(settings: Settings, args: argparse.Namespace) -> int:
    from bot.permissions import invite_url

    client_id = args.client_id
    if client_id is None:
        settings.require_discord()
        client_id = await application_id(settings)
    print(invite_url(client_id))
    return 0


async def application_id(settings: Settings) -> int:
    import aiohttp

    from bot.runtime import point_discord_at

    point_discord_at(settings.discord_api_base, settings.discord_gateway_url)
    from discord.http import Route

    assert settings.discord_token is not None
    headers = {"Authorization": f"Bot {settings.discord_token.get_secret_value()}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{Route.BASE}/oauth2/applications/@me", headers=headers) as response,
    ):
        if response.status == 401:
            raise CliError("Discord refused DISCORD_TOKEN (401)")
        if response.status >= 400:
            raise CliError(f"Discord answered HTTP {response.status}")
        return int((await response.json(content_type=None))["id"])


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
    stderr.print(f"fake gateway on http://{args.host}:{args.port} (Ctrl-C to stop)")
    web.run_app(create_app(config), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
