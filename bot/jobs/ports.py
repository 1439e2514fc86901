"""The narrow interfaces the runner depends on (the database and the upstream clients), not the whole bot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from bot.config import ModelSpec
from bot.upstream import UpstreamClient
from storage import DeliveryStart, Generation, Lease, Settlement


class JobStore(Protocol):
    async def get_generation(self, generation_id: int) -> Generation | None: ...

    async def chain(self, generation_id: int, max_depth: int = 10) -> list[Generation]: ...

    async def mark_running(self, generation_id: int, *, lease: Lease | None = None) -> bool: ...

    async def update_generation_progress(
        self, generation_id: int, progress: float, *, lease: Lease | None = None
    ) -> bool: ...

    async def set_task_id(
        self, generation_id: int, task_id: str, *, resumable: bool = False, lease: Lease | None = None
    ) -> bool: ...

    async def set_progress_message(
        self,
        generation_id: int,
        message_id: int | None,
        *,
        channel_id: int | None = None,
        forget_interaction: bool = False,
        lease: Lease | None = None,
    ) -> None: ...

    async def set_thread(self, generation_id: int, thread_id: int, *, lease: Lease | None = None) -> None: ...

    async def record_result(self, lease: Lease, result: Mapping[str, Any]) -> None: ...

    async def begin_delivery(self, lease: Lease) -> DeliveryStart: ...

    async def mark_succeeded(
        self,
        generation_id: int,
        *,
        result_url: str | None = None,
        result_bytes: int | None = None,
        thumbnail_url: str | None = None,
        assistant_text: str | None = None,
        task_id: str | None = None,
        result_message_id: int | None = None,
        thread_id: int | None = None,
        lease: Lease | None = None,
    ) -> Settlement: ...

    async def mark_failed(
        self,
        generation_id: int,
        kind: str,
        message: str,
        *,
        assistant_text: str | None = None,
        charge: bool | None = None,
        lease: Lease | None = None,
    ) -> Settlement: ...

    async def mark_cancelled(
        self, generation_id: int, *, message: str | None = None, lease: Lease | None = None
    ) -> Settlement: ...


class Upstreams(Protocol):
    def client_for(self, model: ModelSpec) -> UpstreamClient: ...


__all__ = ["JobStore", "Upstreams"]
