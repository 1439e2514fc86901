"""The gateway websocket: HELLO, heartbeats, IDENTIFY → READY + GUILD_CREATE, RESUME, op 7/9, dispatches.

Each identified session keeps every dispatch it was sent (with its sequence number), so a RESUME replays what
the client missed whatever happened to the socket in between.

Sharding as Discord does it: an IDENTIFY with `shard: [i, n]` makes a session of shard i, which receives only the
events of guilds with `(guild_id >> 22) % n == i` (DMs: shard 0); without `shard` a session receives everything.
Every IDENTIFY is recorded (`identifies`) with its max-concurrency bucket (`i % max_concurrency`); one that comes
less than `identify_spacing` seconds (on the double's clock) after the previous one of its bucket is a violation,
answered like Discord (op 9 Invalid Session, not resumable) when `enforce_identify_spacing` is on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .state import AppFlags, Intents, PayloadBuilder, World, shard_of

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_MS = 41_250
IDENTIFY_SPACING = 5.0  # Discord: max_concurrency IDENTIFYs (one per bucket) per 5 seconds
SESSION_START_TOTAL = 1000  # IDENTIFYs per day
SESSION_START_RESET_MS = 86_400_000


class Op:
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11


@dataclass
class Frame:
    """One gateway frame, in either direction, for assertions (`double.gateway_log`)."""

    direction: str  # "in" (from the bot) or "out"
    op: int
    t: str | None
    s: int | None
    at: float
    data: Any = None


@dataclass
class Identify:
    """One IDENTIFY the double received (`double.identifies`); `at` is on the double's clock (monotonic)."""

    shard: tuple[int, int]
    bucket: int
    at: float
    gap: float | None  # seconds since the previous accepted IDENTIFY of the same bucket (None: the first)
    too_soon: bool  # closer than `identify_spacing` to that one
    refused: bool = False  # answered with op 9 because `enforce_identify_spacing` is on
    session_id: str | None = None

    @property
    def shard_id(self) -> int:
        return self.shard[0]


@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    path: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    session: GatewaySession | None = None
    writer: asyncio.Task[None] | None = None
    heartbeats: int = 0
    server_close: int | None = None  # the code the double closed the socket with, if it did

    async def close(self, code: int, message: bytes = b"") -> None:
        self.server_close = code
        await self.ws.close(code=code, message=message)

    def send(self, payload: dict[str, Any]) -> None:
        self.queue.put_nowait(payload)


@dataclass(eq=False)
class GatewaySession:
    id: str
    intents: int
    shard: list[int]
    seq: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    connection: Connection | None = None
    resumes: int = 0
    invalidated: bool = False
    ready: bool = False

    @property
    def connected(self) -> bool:
        return self.connection is not None

    @property
    def shard_id(self) -> int:
        return self.shard[0]

    @property
    def shard_count(self) -> int:
        return self.shard[1]

    def receives(self, guild_id: int | None) -> bool:
        """Whether this session is sent the events of `guild_id` (None: DMs and other events of no guild)."""
        return shard_of(guild_id, self.shard_count) == self.shard_id


class Gateway:
    def __init__(self, world: World, *, resume_url: Callable[[], str], notify: Callable[[], None]) -> None:
        self.world = world
        self.resume_url = resume_url
        self.notify = notify
        self.token: str = ""
        self.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS
        self.sessions: dict[str, GatewaySession] = {}
        self.connections: list[Connection] = []
        self.log: list[Frame] = []
        self.close_codes: list[int | None] = []
        self.max_concurrency = 1
        self.identify_spacing = IDENTIFY_SPACING
        self.enforce_identify_spacing = False
        self.session_start_total = SESSION_START_TOTAL
        self.identifies: list[Identify] = []
        self._last_identify: dict[int, float] = {}  # bucket → when its last accepted IDENTIFY came
        self._handlers: set[asyncio.Task[Any]] = set()
        world.dispatcher = self.dispatch

    # --- dispatch -----------------------------------------------------------------------------------------

    def live_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions.values() if not s.invalidated]

    def dispatch(self, event: str, build: PayloadBuilder, guild_id: int | None) -> None:
        for session in self.live_sessions():
            if not session.receives(guild_id):
                continue
            data = build(session.intents)
            if data is None:
                continue
            self._emit(session, event, data)
        self.notify()

    def _emit(self, session: GatewaySession, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        payload = {"op": Op.DISPATCH, "t": event, "s": session.seq, "d": data}
        session.events.append(payload)
        if session.connection is not None:
            self._send(session.connection, payload)

    def _send(self, connection: Connection, payload: dict[str, Any]) -> None:
        self.log.append(
            Frame("out", payload["op"], payload.get("t"), payload.get("s"), self.world.now(), payload.get("d"))
        )
        connection.send(payload)

    # --- identify limits ----------------------------------------------------------------------------------

    @property
    def identify_violations(self) -> list[Identify]:
        return [record for record in self.identifies if record.too_soon]

    def session_start_limit(self) -> dict[str, int]:
        """`session_start_limit` of `GET /gateway/bot`: what is left of the day's IDENTIFYs, and max_concurrency."""
        started = sum(1 for record in self.identifies if not record.refused)
        return {
            "total": self.session_start_total,
            "remaining": max(0, self.session_start_total - started),
            "reset_after": SESSION_START_RESET_MS,
            "max_concurrency": self.max_concurrency,
        }

    def _record_identify(self, shard: tuple[int, int]) -> Identify:
        bucket = shard[0] % max(1, self.max_concurrency)
        now = self.world.clock.monotonic()
        last = self._last_identify.get(bucket)
        gap = None if last is None else now - last
        record = Identify(shard, bucket, now, gap, too_soon=gap is not None and gap < self.identify_spacing)
        self.identifies.append(record)
        if record.too_soon and self.enforce_identify_spacing:
            record.refused = True
        else:
            self._last_identify[bucket] = now
        return record

    # --- control (test API) -------------------------------------------------------------------------------

    def reconnect(self) -> int:
        """Send op 7 RECONNECT on every connected session; the client must RESUME. Returns how many."""
        count = 0
        for session in self.live_sessions():
            connection = session.connection
            if connection is None:
                continue
            session.connection = None  # from now on events wait in the session for the RESUME
            self._send(connection, {"op": Op.RECONNECT, "d": None})
            count += 1
        return count

    def invalidate(self, *, resumable: bool = False) -> int:
        count = 0
        for session in self.live_sessions():
            connection = session.connection
            if connection is None:
                continue
            if not resumable:
                session.invalidated = True
            session.connection = None
            self._send(connection, {"op": Op.INVALID_SESSION, "d": resumable})
            count += 1
        return count

    async def drop(self, code: int = 4000) -> int:
        """Close every socket from the server side with `code` (4000: resumable 'unknown error')."""
        count = 0
        for connection in list(self.connections):
            if connection.session is not None and connection.session.connection is connection:
                connection.session.connection = None
            await connection.close(code)
            count += 1
        return count

    async def close(self) -> None:
        for connection in list(self.connections):
            with contextlib.suppress(Exception):
                await connection.close(1001, message=b"double stopping")
        for task in list(self._handlers):
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(task), timeout=2)

    # --- socket -------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        connection = Connection(ws=ws, path=request.path)
        connection.writer = asyncio.create_task(self._writer(connection), name="discord-double-gateway-writer")
        self.connections.append(connection)
        self._send(
            connection, {"op": Op.HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None}
        )
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    try:
                        frame = json.loads(message.data)
                    except ValueError:
                        await connection.close(4002, b"Error while decoding payload.")
                        break
                    await self._on_frame(connection, frame)
                elif message.type == WSMsgType.BINARY:
                    await connection.close(4002, b"Error while decoding payload.")
                    break
        finally:
            session = connection.session
            self.close_codes.append(connection.server_close or ws.close_code)
            if session is not None and session.connection is connection:
                session.connection = None
                # A client closing with 1000/1001 ends its session for good, as on Discord.
                if ws.close_code in (1000, 1001):
                    session.invalidated = True
            connection.queue.put_nowait(None)
            if connection.writer is not None:
                with contextlib.suppress(BaseException):
                    await connection.writer
            self.connections.remove(connection)
            if task is not None:
                self._handlers.discard(task)
            self.notify()
        return ws

    async def _writer(self, connection: Connection) -> None:
        while True:
            payload = await connection.queue.get()
            if payload is None or connection.ws.closed:
                return
            try:
                await connection.ws.send_str(json.dumps(payload))
            except (ConnectionError, RuntimeError):
                return

    async def _on_frame(self, connection: Connection, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        data = frame.get("d")
        logged = data if op in (Op.IDENTIFY, Op.RESUME) else None
        if isinstance(logged, dict) and "token" in logged:
            logged = {**logged, "token": "<redacted>"}
        self.log.append(Frame("in", op if isinstance(op, int) else -1, None, None, self.world.now(), logged))
        if op == Op.HEARTBEAT:
            connection.heartbeats += 1
            self._send(connection, {"op": Op.HEARTBEAT_ACK})
        elif op == Op.IDENTIFY:
            await self._identify(connection, data or {})
        elif op == Op.RESUME:
            await self._resume(connection, data or {})
        elif op == Op.REQUEST_GUILD_MEMBERS:
            self._members_chunk(connection, data or {})
        elif op in (Op.PRESENCE_UPDATE, Op.VOICE_STATE_UPDATE):
            pass
        else:
            await connection.close(4001, message=b"Unknown opcode.")
        self.notify()

    async def _identify(self, connection: Connection, data: dict[str, Any]) -> None:
        if connection.session is not None:
            await connection.close(4005, message=b"Already authenticated.")
            return
        if data.get("token") != self.token:
            await connection.close(4004, message=b"Authentication failed.")
            return
        intents = int(data.get("intents") or 0)
        flags = self.world.app_flags
        enabled = 0
        if flags & AppFlags.GATEWAY_MESSAGE_CONTENT:
            enabled |= Intents.MESSAGE_CONTENT
        if flags & AppFlags.GATEWAY_GUILD_MEMBERS:
            enabled |= Intents.GUILD_MEMBERS
        if flags & AppFlags.GATEWAY_PRESENCE:
            enabled |= Intents.GUILD_PRESENCES
        if intents & Intents.PRIVILEGED & ~enabled:
            await connection.close(4014, message=b"Disallowed intent(s).")
            return
        shard = _shard(data["shard"]) if data.get("shard") is not None else (0, 1)
        if shard is None:
            await connection.close(4010, message=b"Invalid shard.")
            return
        record = self._record_identify(shard)
        if record.refused:
            self._send(connection, {"op": Op.INVALID_SESSION, "d": False})
            return
        session = GatewaySession(id=secrets.token_hex(16), intents=intents, shard=list(shard))
        record.session_id = session.id
        self.sessions[session.id] = session
        session.connection = connection
        connection.session = session
        world = self.world
        guilds = [guild for guild in world.guilds.values() if session.receives(guild.id)]
        self._emit(
            session,
            "READY",
            {
                "v": 10,
                "user": {**world.bot_user.to_payload(), "verified": True, "mfa_enabled": False, "flags": 0},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.id,
                "session_type": "normal",
                "resume_gateway_url": self.resume_url(),
                "shard": session.shard,
                "application": {"id": str(world.application_id), "flags": world.app_flags},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "user_settings": {},
            },
        )
        if intents & Intents.GUILDS:
            for guild in guilds:
                self._emit(session, "GUILD_CREATE", world.guild_create_payload(guild))
        session.ready = True

    async def _resume(self, connection: Connection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or session.invalidated or data.get("token") != self.token:
            self._send(connection, {"op": Op.INVALID_SESSION, "d": False})
            return
        previous = session.connection
        if previous is not None and previous is not connection:
            previous.session = None
            with contextlib.suppress(Exception):
                await previous.close(4000)
        session.connection = connection
        connection.session = session
        session.resumes += 1
        last = int(data.get("seq") or 0)
        for payload in session.events:
            if payload["s"] > last:
                self._send(connection, payload)
        self._emit(session, "RESUMED", {})

    def _members_chunk(self, connection: Connection, data: dict[str, Any]) -> None:
        session = connection.session
        guild = self.world.guilds.get(int(data.get("guild_id") or 0))
        if session is None or guild is None or not session.receives(guild.id):
            return
        members = list(guild.members.values())
        wanted = data.get("user_ids")
        if wanted:
            ids = {int(u) for u in (wanted if isinstance(wanted, list) else [wanted])}
            members = [m for m in members if m.id in ids]
        self._emit(
            session,
            "GUILD_MEMBERS_CHUNK",
            {
                "guild_id": str(guild.id),
                "members": [m.to_payload() for m in members],
                "chunk_index": 0,
                "chunk_count": 1,
                "nonce": data.get("nonce"),
            },
        )


def _shard(value: Any) -> tuple[int, int] | None:
    """`[shard_id, shard_count]` from an IDENTIFY, if Discord would accept it."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        return None
    if not all(isinstance(part, int) and not isinstance(part, bool) for part in value):
        return None
    shard_id, shard_count = value
    return (shard_id, shard_count) if 0 <= shard_id < shard_count else None


__all__ = ["Connection", "Frame", "Gateway", "GatewaySession", "Identify", "Op"]
