"""What the benchmarks share: the loopback world (Discord double + fake gateway in this process, the bot as a
`sora-bot run`-equivalent subprocess), process memory and event-loop lag probes, percentiles, results files.

The bot runs in its own process so that its memory and event loop are measured alone: the double and the fake
gateway (and their bookkeeping of every request and message) live in the benchmark's process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.clock import Clock  # noqa: E402
from bot.fake_upstream import FakeConfig, FakeUpstream  # noqa: E402
from bot.fake_upstream.app import FakeVideo  # noqa: E402
from tests.discord_double import DiscordDouble, Interaction, Message  # noqa: E402

RESULTS = ROOT / "bench" / "results"
API_KEY = "sk-bench-0123456789abcdef"
PROGRESS_TEXT = re.compile(r"^(\d+)\.\.$")
DONE_TEXT = "生成完成"
PERCENT_SHOWN = re.compile(r"(\d+)%")
JOB_TAG = re.compile(r"\bjob-(\d+)\b")


# --- figures ---------------------------------------------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def environment() -> dict[str, Any]:
    """Where the figures come from: the commit (and whether the code had local changes), Python, cores."""
    commit = _git("rev-parse", "--short", "HEAD")
    # Result files written by earlier runs are not a change to what is measured.
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results"))
    return {
        "commit": f"{commit}{'+dirty' if dirty else ''}",
        "python": platform.python_version(),
        "cpus": os.cpu_count() or 0,
    }


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip()


def write_results(name: str, figures: Mapping[str, Any], out: Path | None = None) -> Path:
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(figures), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def print_figures(title: str, figures: Mapping[str, Any]) -> None:
    print(title)
    width = max((len(k) for k in figures), default=0)
    for key, value in figures.items():
        print(f"  {key:<{width}}  {value}")


# --- a process's memory ------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / VmSize ... of a process, in KiB (empty when the process is gone)."""
    values: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return values
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if name.startswith("Vm") and parts and parts[0].isdigit():
            values[name] = int(parts[0])
    return values


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0: write 5 to clear_refs). False where not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Samples a process's VmRSS every `period` seconds in the background; remembers the peak and every sample."""

    def __init__(self, pid: int, period: float = 0.02) -> None:
        self.pid = pid
        self.period = period
        self.samples: list[tuple[float, int]] = []
        self.peak_kib = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> RssSampler:
        self._task = asyncio.create_task(self._run(), name="rss-sampler")
        return self

    async def _run(self) -> None:
        while True:
            rss = proc_status(self.pid).get("VmRSS")
            if rss is None:
                return
            self.samples.append((time.monotonic(), rss))
            self.peak_kib = max(self.peak_kib, rss)
            await asyncio.sleep(self.period)

    def reset(self) -> None:
        self.peak_kib = proc_status(self.pid).get("VmRSS", 0)

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss in self.samples if start <= at <= end]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# --- the bot as a process ----------------------------------------------------------------------------------


@dataclass
class BotSubprocess:
    """`python -m bench.botproc` (= `sora-bot run` plus an event-loop lag probe) with settings from `env`."""

    env: dict[str, str]
    cwd: Path
    lag_file: Path
    lines: list[tuple[float, str]] = field(default_factory=list)
    started_at: float = 0.0
    process: asyncio.subprocess.Process | None = None
    echo: bool = False
    _reader: asyncio.Task[None] | None = None

    async def start(self) -> BotSubprocess:
        env = {**self.env, "BENCH_LAG_FILE": str(self.lag_file)}
        self.started_at = time.monotonic()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.botproc",
            cwd=self.cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self._reader = asyncio.create_task(self._read(), name="bot-output")
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append((time.monotonic(), line))
            if self.echo:
                print(f"    [bot] {line}", file=sys.stderr)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def errors(self) -> list[str]:
        """Log lines at ERROR level and tracebacks."""
        return [line for _, line in self.lines if " ERROR " in line or line.startswith("Traceback")]

    async def wait_line(self, needle: str, timeout: float = 30.0, *, after: float = 0.0) -> float:  # noqa: ASYNC109
        """When (monotonic) the bot first printed a line containing `needle` (after `after`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in self.lines:
                if at >= after and needle in line:
                    return at
            if not self.alive:
                await asyncio.sleep(0.1)
                raise RuntimeError(
                    f"the bot exited ({self.process and self.process.returncode}):\n{self.output()[-3000:]}"
                )
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no {needle!r} from the bot within {timeout} s:\n{self.output()[-3000:]}")

    def lag_samples(self, start: float = 0.0, end: float = float("inf")) -> list[float]:
        """Event-loop lag samples (ms) the probe took between two monotonic times (the clock is system-wide)."""
        samples: list[float] = []
        try:
            text = self.lag_file.read_text()
        except OSError:
            return samples
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            samples.extend(lag for at, lag in record["samples"] if start <= at <= end)
        return samples

    async def kill(self) -> None:
        """kill -9: no clean-up at all, as when a host dies."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader

    async def stop(self, timeout: float = 20.0) -> int:  # noqa: ASYNC109
        """Ctrl-C and wait (kill after `timeout`)."""
        process = self.process
        if process is None:
            return -1
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
        return process.returncode if process.returncode is not None else -1


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the benchmark dies, so an interrupted run leaves no bot behind (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# --- the world ---------------------------------------------------------------------------------------------


@dataclass
class Emitted:
    """What the fake gateway sent for one job, with monotonic times."""

    progress: list[tuple[float, int]] = field(default_factory=list)  # (when, percent), first time each percent
    done: float | None = None


class World:
    """The Discord double and the fake gateway on 127.0.0.1 in this process, a temp dir, and the bot process.

    `emitted[tag]` records when the fake streamed each progress percent / the "done" line of the job whose prompt
    carries `job-<tag>` (chat format).
    """

    def __init__(
        self,
        *,
        steps: int = 5,
        interval: float = 0.05,
        validate_bodies: bool = True,
        echo_bot: bool = False,
    ) -> None:
        self.clock = Clock()
        self.double = DiscordDouble(clock=self.clock, spec=True if validate_bodies else None)
        self.fake = FakeUpstream(FakeConfig(steps=steps, interval=interval, api_key=API_KEY))
        self.fake.state.trace = self._trace
        self._tmp = tempfile.TemporaryDirectory(prefix="sora-bench-")
        self.dir = Path(self._tmp.name)
        self.db_path = self.dir / "sora-bot.sqlite3"
        self.emitted: dict[int, Emitted] = {}
        self.bots: list[BotSubprocess] = []
        self.echo_bot = echo_bot
        self.listeners: list[Callable[[FakeVideo, str, float], None]] = []

    def _trace(self, video: FakeVideo, text: str) -> None:
        now = time.monotonic()
        for listener in self.listeners:
            listener(video, text, now)
        match = JOB_TAG.search(video.prompt)
        if match is None:
            return
        record = self.emitted.setdefault(int(match.group(1)), Emitted())
        if progress := PROGRESS_TEXT.match(text.strip()):
            percent = int(progress.group(1))
            if not record.progress or record.progress[-1][1] != percent:
                record.progress.append((now, percent))
        elif DONE_TEXT in text:
            record.done = now

    async def __aenter__(self) -> World:
        await self.double.start()
        await self.fake.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for bot in self.bots:
            await bot.stop()
        await self.fake.stop()
        await self.double.stop()
        self._tmp.cleanup()

    async def open_guild(self, *, per_member: int = 1000) -> None:
        """No credit allowance and a high per-member concurrency for the double's guild (before the bot starts)."""
        from storage import Database

        async with Database.open(self.db_path) as db:
            await db.set_default_allowance(self.double.guild.id, None)
            await db.set_concurrency(self.double.guild.id, per_member=per_member, per_guild=None)

    def bot_env(self, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "SORA_", "BENCH_LAG"))}
        env.update(
            {
                "DISCORD_TOKEN": self.double.token,
                "DISCORD_API_BASE": self.double.api_base,
                "DISCORD_GATEWAY_URL": self.double.gateway_url,
                "DISCORD_GUILD_IDS": str(self.double.guild.id),
                "SORA_BASE_URL": self.fake.base_url,
                "SORA_API_KEY": API_KEY,
                "SORA_DB_PATH": str(self.db_path),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update({k.upper(): str(v) for k, v in settings.items()})
        return env

    async def start_bot(self, *, ready_timeout: float = 60.0, **settings: str) -> BotSubprocess:
        """Start the bot process and wait until it logged in (on_ready)."""
        bot = BotSubprocess(
            self.bot_env(**settings),
            cwd=self.dir,
            lag_file=self.dir / f"lag-{len(self.bots)}.jsonl",
            echo=self.echo_bot,
        )
        self.bots.append(bot)
        await bot.start()
        await bot.wait_line("logged in as", ready_timeout)
        return bot

    # --- reading the double ------------------------------------------------------------------------------

    def bot_messages(self) -> list[Message]:
        bot_id = self.double.bot_user.id
        return [m for m in self.double.world.messages.values() if m.author.id == bot_id]

    def results(self) -> dict[int, list[Message]]:
        """Result messages (they carry the Remix button) by generation id, deleted ones left out."""
        found: dict[int, list[Message]] = {}
        for message in self.bot_messages():
            if message.deleted:
                continue
            for custom_id in message.custom_ids():
                if custom_id.startswith("sora:remix:"):
                    found.setdefault(int(custom_id.rsplit(":", 1)[1]), []).append(message)
                    break
        return found

    def http_429s(self) -> int:
        return sum(1 for r in self.double.requests if r.status == 429)

    def interaction_of(self, tag: int) -> Interaction | None:
        for interaction in self.double.world.interactions.values():
            options = (interaction.data or {}).get("options") or []
            for option in options:
                if option.get("name") == "prompt" and f"job-{tag} " in f"{option.get('value')} ":
                    return interaction
        return None


def shown_percent(revision_embeds: list[dict[str, Any]]) -> int | None:
    """The percent a progress message shows (from its embed description), if any."""
    for embed in revision_embeds:
        match = PERCENT_SHOWN.search(str(embed.get("description") or ""))
        if match:
            return int(match.group(1))
    return None


def job_ids_from_text(text: str) -> list[int]:
    return [int(m) for m in JOB_TAG.findall(text)]


__all__ = [
    "API_KEY",
    "RESULTS",
    "ROOT",
    "BotSubprocess",
    "Emitted",
    "RssSampler",
    "World",
    "environment",
    "percentile",
    "print_figures",
    "proc_status",
    "reset_peak_rss",
    "shown_percent",
    "write_results",
]
