"""The shared upstream session has a socket for every job that may run at once (a chat stream holds one)."""

from __future__ import annotations

from bot.config import load_settings
from bot.upstream import connection_limit, make_session


async def test_pool_follows_the_concurrency_setting() -> None:
    settings = load_settings(None, sora_max_concurrent_jobs=500)
    assert connection_limit(settings) > 500
    async with make_session(settings) as session:
        connector = session.connector
        assert connector is not None and connector.limit_per_host > 500


def test_small_settings_keep_the_default_pool() -> None:
    assert connection_limit(load_settings(None, sora_max_concurrent_jobs=4)) == 50
    assert connection_limit(None) == 50
