"""Upstream video clients, one per wire format, behind `UpstreamClient`."""

from __future__ import annotations

import importlib

import aiohttp

from bot.config import ApiFormat, Settings
from bot.upstream.base import UpstreamClient, UpstreamOptions
from bot.upstream.redact import publishable_url, redact
from bot.upstream.urlpolicy import GuardedConnector, UrlPolicy, UrlRefused

CLIENT_CLASSES = {
    ApiFormat.CHAT: ("bot.upstream.chat", "ChatClient"),
    ApiFormat.VIDEOS: ("bot.upstream.videos", "VideosClient"),
    ApiFormat.TASK: ("bot.upstream.task", "TaskClient"),
    ApiFormat.IMAGES: ("bot.upstream.images", "ImagesClient"),
}


def options_from_settings(settings: Settings) -> UpstreamOptions:
    settings.require_upstream()
    assert settings.sora_base_url is not None and settings.sora_api_key is not None
    return UpstreamOptions(
        base_url=settings.sora_base_url,
        api_key=settings.sora_api_key.get_secret_value(),
        connect_timeout=settings.sora_connect_timeout,
        stall_timeout=settings.sora_stall_timeout,
        job_timeout=settings.sora_job_timeout,
        poll_interval=settings.sora_poll_interval,
        retry_attempts=settings.sora_retry_attempts,
        max_download_bytes=settings.max_download_bytes,
        download_timeout=settings.sora_download_timeout,
        download_min_rate=settings.sora_download_min_rate_kib * 1024,
        fetch_allow=tuple(settings.sora_fetch_allow),
    )


def make_client(
    api_format: ApiFormat | str, session: aiohttp.ClientSession, options: UpstreamOptions
) -> UpstreamClient:
    module_name, class_name = CLIENT_CLASSES[ApiFormat(api_format)]
    client_class = getattr(importlib.import_module(module_name), class_name)
    return client_class(session, options)


def connection_limit(settings: Settings | None) -> int:
    """Connections per host: every running job may hold one (a chat stream stays open for the whole job), plus
    room for downloads, polls and cancels. A smaller pool would make jobs beyond it wait unseen for a socket."""
    running = settings.sora_max_concurrent_jobs if settings else 0
    return max(50, running + 25)


def make_session(settings: Settings | None = None, *, connect_timeout: float = 10.0) -> aiohttp.ClientSession:
    """The one shared HTTP session. Per-request total timeouts are set by the callers that need them. Its
    connector checks the address of every connection made for a URL from outside (see `urlpolicy`)."""
    timeout = aiohttp.ClientTimeout(
        total=None, connect=settings.sora_connect_timeout if settings else connect_timeout, sock_read=None
    )
    per_host = connection_limit(settings)
    connector = GuardedConnector(limit=2 * per_host, limit_per_host=per_host, ttl_dns_cache=300)
    return aiohttp.ClientSession(timeout=timeout, connector=connector, trust_env=True)


__all__ = [
    "GuardedConnector",
    "UpstreamClient",
    "UpstreamOptions",
    "UrlPolicy",
    "UrlRefused",
    "connection_limit",
    "make_client",
    "make_session",
    "options_from_settings",
    "publishable_url",
    "redact",
]
