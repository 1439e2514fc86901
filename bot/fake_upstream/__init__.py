"""The fake video gateway (see `bot.fake_upstream.app` for how to control it)."""

from __future__ import annotations

from types import TracebackType

from aiohttp import web

from bot.fake_upstream.app import STATE_KEY, FakeConfig, FakeState, create_app


class FakeUpstream:
    """Runs the fake gateway on 127.0.0.1 for the lifetime of an `async with` block."""

    def __init__(self, config: FakeConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = create_app(config)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def state(self) -> FakeState:
        return self.app[STATE_KEY]

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeUpstream:
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


__all__ = ["FakeConfig", "FakeState", "FakeUpstream", "create_app"]
