"""The task wire format (seed 002 §1): create a task, then poll its feed until it has a video URL.

`POST /sora/v1/video/create {images, model, orientation, size, duration, prompt}` → `{id, status}`;
`GET /sora/v1/video/feed/{id}` → `{id, status, video_url?}`. The status words are the seed's (`pending`,
`video_generating`, `running`, `completed`, `failed`) plus every variant UPSTREAM.md lists.

Field mapping: `images` carries each reference as its URL or, for local bytes, a base64 data URL (the seed
accepts "URL or base64"); `size` is the seed's quality word, `large` when the requested size is at least
1024 pixels on its short side (sora-2-pro's HD sizes) and `small` otherwise, left out when no size was asked;
`orientation` is the request's or follows from the size.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

from bot.upstream.base import (
    JobStatus,
    PollSchedule,
    UpstreamClient,
    failure_from_body,
    normalise_status,
    parse_progress,
)
from bot.upstream.types import (
    Event,
    Progress,
    Queued,
    Succeeded,
    TaskId,
    UpstreamError,
    VideoRequest,
)

log = logging.getLogger(__name__)

LARGE_MIN_SIDE = 1024


class TaskClient(UpstreamClient):
    api_format = "task"
    supports_resume = True

    async def _generate(self, request: VideoRequest) -> AsyncIterator[Event]:
        body = await self.post_json_once(self.url("/sora/v1/video/create"), json_body=create_body(request))
        task = unwrap(body)
        task_id = task.get("id") or task.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise UpstreamError("the gateway accepted the task but gave no id")
        yield TaskId(task_id, resumable=True)
        async for event in self._follow(task_id, task):
            yield event

    async def _resume(self, task_id: str) -> AsyncIterator[Event]:
        yield TaskId(task_id, resumable=True)
        async for event in self._follow(task_id, None):
            yield event

    async def _follow(self, task_id: str, first: dict[str, Any] | None) -> AsyncIterator[Event]:
        schedule = PollSchedule(self.options.poll_interval)
        url = self.url(f"/sora/v1/video/feed/{quote(task_id, safe='')}")
        last: JobStatus | None = None
        task = first
        headers: Mapping[str, str] | None = None
        while True:
            if task is not None:
                status = normalise_status(task.get("status"))
                video_url = task.get("video_url") or task.get("url")
                if status is JobStatus.SUCCEEDED and isinstance(video_url, str) and video_url:
                    yield Progress(100.0)
                    thumbnail = task.get("thumbnail_url")
                    yield Succeeded(
                        video_url=video_url,
                        task_id=task_id,
                        thumbnail_url=thumbnail if isinstance(thumbnail, str) and thumbnail else None,
                    )
                    return
                if status in (JobStatus.FAILED, JobStatus.CANCELLED):
                    yield failure_from_body(task, status, task_id)
                    return
                if status is JobStatus.SUCCEEDED:
                    log.debug("task %s is completed but has no video_url yet; polling on", task_id)
                elif status is None:
                    log.debug("unknown status word %r for task %s", task.get("status"), task_id)
                elif status is JobStatus.QUEUED and last is not JobStatus.QUEUED:
                    yield Queued()
                elif status is JobStatus.RUNNING:
                    percent = parse_progress(task.get("progress"))
                    yield Progress(percent if percent is not None else 0.0)
                last = status or last
                await asyncio.sleep(schedule.next_delay(headers))
            body, headers = await self.get_json_with_retry(url)
            task = unwrap(body)


def create_body(request: VideoRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "images": [image.as_data_url() for image in request.images],
        "model": request.model,
        "prompt": request.prompt,
    }
    orientation = request.orientation or (orientation_of(request.size) if request.size else None)
    if orientation:
        body["orientation"] = orientation
    quality = size_word(request.size)
    if quality:
        body["size"] = quality
    if request.seconds is not None:
        body["duration"] = request.seconds
    return body


def dimensions(size: str | None) -> tuple[int, int] | None:
    if not size:
        return None
    try:
        width, height = (int(part) for part in size.lower().split("x"))
    except ValueError:
        return None
    return width, height


def orientation_of(size: str) -> str | None:
    found = dimensions(size)
    if found is None:
        return None
    width, height = found
    return "portrait" if height > width else "landscape"


def size_word(size: str | None) -> str | None:
    found = dimensions(size)
    if found is None:
        return None
    return "large" if min(found) >= LARGE_MIN_SIDE else "small"


def unwrap(body: Any) -> dict[str, Any]:
    """The task object, unwrapping the `{"code": 0, "data": {...}}` envelope some gateways add."""
    if isinstance(body, dict) and "status" not in body and isinstance(body.get("data"), dict):
        body = body["data"]
    if not isinstance(body, dict):
        raise UpstreamError("the gateway answered with something that is not a task")
    return body


__all__ = ["TaskClient", "create_body", "size_word"]
