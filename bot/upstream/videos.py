"""The videos wire format: OpenAI's Video API shape, as gateways serve it (seeds 002 §4 and 004).

Create `POST /v1/videos`, poll `GET /v1/videos/{id}`, download `GET /v1/videos/{id}/content` with the key (or
the object's own `video_url`, which some gateways add), remix `POST /v1/videos/{id}/remix`, cancel `DELETE`.

The create body's `input_reference`:
- no reference image: the field is left out;
- any image given as bytes: the request is multipart and each image is an `input_reference` part (a file for
  bytes, a text field for a URL), as in the seeds' curl examples;
- one URL, not a Veo model: the official JSON shape, a single object `{"image_url": url}` (seed 004's note);
- several URLs, or a Veo model: a list of URL strings, the shape seed 004's Veo gateway documents (1-3 images).

`seconds` goes out as an integer in JSON (seed 004's examples; a multipart field is text anyway) and is read
back whether the gateway answers with a number or a string.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.upstream.base import (
    JobStatus,
    PollSchedule,
    UpstreamClient,
    error_from_response,
    failure_from_body,
    normalise_status,
    parse_progress,
    request_json,
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


class VideosClient(UpstreamClient):
    api_format = "videos"
    supports_remix = True
    supports_resume = True
    supports_cancel = True

    # --- the stream --------------------------------------------------------------------------------------

    async def _generate(self, request: VideoRequest) -> AsyncIterator[Event]:
        if request.remix_of:
            url = self.url(f"/v1/videos/{quote(request.remix_of, safe='')}/remix")
            body, headers = await self._create(url, json_body={"prompt": request.prompt})
        else:
            json_body, form = create_body(request)
            body, headers = await self._create(self.url("/v1/videos"), json_body=json_body, data=form)
        video = video_object(body)
        video_id = video.get("id")
        if not isinstance(video_id, str) or not video_id:
            raise UpstreamError("the gateway accepted the video but gave no id")
        yield TaskId(video_id, resumable=True)
        async for event in self._follow(video_id, video, headers):
            yield event

    async def _resume(self, task_id: str) -> AsyncIterator[Event]:
        yield TaskId(task_id, resumable=True)
        async for event in self._follow(task_id, None, None):
            yield event

    async def cancel(self, task_id: str) -> bool:
        """`DELETE /v1/videos/{id}`; best effort, never raises."""
        try:
            async with self.session.delete(
                self.url(f"/v1/videos/{quote(task_id, safe='')}"), headers=self.headers(), timeout=self.read_timeout()
            ) as response:
                if response.status < 400:
                    return True
                error = await error_from_response(response)
                log.info("the gateway refused to cancel video %s: %s", task_id, error)
                return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("could not cancel video %s (%s)", task_id, type(exc).__name__)
            return False

    # --- internals ---------------------------------------------------------------------------------------

    async def _create(
        self, url: str, *, json_body: Any = None, data: Callable[[], aiohttp.FormData] | None = None
    ) -> tuple[Any, Mapping[str, str]]:
        # Not `post_json_once`: the create answer may already carry the poll-after header we want to honour.
        return await request_json(
            self.session,
            "POST",
            url,
            headers=self.headers(),
            json_body=None if data is not None else json_body,
            data=data,
            attempts=self.options.retry_attempts,
            idempotent=False,
            request_timeout=self.read_timeout(),
        )

    async def _follow(
        self, video_id: str, first: dict[str, Any] | None, headers: Mapping[str, str] | None
    ) -> AsyncIterator[Event]:
        """Poll until the video is finished, yielding what changed."""
        schedule = PollSchedule(self.options.poll_interval)
        url = self.url(f"/v1/videos/{quote(video_id, safe='')}")
        last: JobStatus | None = None
        video = first
        while True:
            if video is not None:
                status = normalise_status(video.get("status"))
                if status is JobStatus.SUCCEEDED:
                    yield Progress(100.0)
                    yield self._succeeded(video_id, video)
                    return
                if status in (JobStatus.FAILED, JobStatus.CANCELLED):
                    yield failure_from_body(video, status, video_id)
                    return
                if status is None:
                    log.debug("unknown status word %r for video %s", video.get("status"), video_id)
                elif status is JobStatus.QUEUED and last is not JobStatus.QUEUED:
                    yield Queued(position=queue_position(video))
                elif status is JobStatus.RUNNING:
                    percent = parse_progress(video.get("progress"))
                    yield Progress(percent if percent is not None else 0.0)
                last = status or last
                await asyncio.sleep(schedule.next_delay(headers))
            body, headers = await self.get_json_with_retry(url)
            video = video_object(body)

    def _succeeded(self, video_id: str, video: Mapping[str, Any]) -> Succeeded:
        direct = video.get("video_url") or video.get("url")
        thumbnail = video.get("thumbnail_url")
        content = self.url(f"/v1/videos/{quote(video_id, safe='')}/content")
        if isinstance(direct, str) and direct:
            return Succeeded(
                video_url=direct,
                authenticated=False,
                task_id=video_id,
                thumbnail_url=thumbnail if isinstance(thumbnail, str) and thumbnail else None,
            )
        if isinstance(thumbnail, str) and thumbnail:
            thumbnail_url, thumbnail_authenticated = thumbnail, False
        else:
            thumbnail_url, thumbnail_authenticated = f"{content}?variant=thumbnail", True
        return Succeeded(
            video_url=content,
            authenticated=True,
            task_id=video_id,
            thumbnail_url=thumbnail_url,
            thumbnail_authenticated=thumbnail_authenticated,
        )


# --- wire shapes -----------------------------------------------------------------------------------------


def create_body(request: VideoRequest) -> tuple[dict[str, Any], Callable[[], aiohttp.FormData] | None]:
    """The create call's JSON body, and a multipart form builder when an image is local bytes."""
    fields: dict[str, Any] = {"model": request.model, "prompt": request.prompt}
    if request.seconds is not None:
        fields["seconds"] = request.seconds
    if request.size:
        fields["size"] = request.size
    images = request.images
    if any(image.data is not None for image in images):

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            for name, value in fields.items():
                data.add_field(name, str(value))
            for image in images:
                if image.data is not None:
                    data.add_field(
                        "input_reference", image.data, filename=image.filename, content_type=image.content_type
                    )
                else:
                    data.add_field("input_reference", str(image.url))
            return data

        return fields, form
    urls = [str(image.url) for image in images]
    if len(urls) > 1 or (urls and "veo" in request.model.lower()):
        fields["input_reference"] = urls
    elif urls:
        fields["input_reference"] = {"image_url": urls[0]}
    return fields, None


def video_object(body: Any) -> dict[str, Any]:
    """The Video object, unwrapping the `{"data": {...}}` envelope a few gateways add."""
    if isinstance(body, dict) and "id" not in body and isinstance(body.get("data"), dict):
        body = body["data"]
    if not isinstance(body, dict):
        raise UpstreamError("the gateway answered with something that is not a video object")
    return body


def queue_position(video: Mapping[str, Any]) -> int | None:
    value = video.get("queue_position")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


__all__ = ["VideosClient", "create_body", "video_object"]
