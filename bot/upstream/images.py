"""The images wire format: DALL·E-style endpoints that answer with a video (seed 002 §3).

One long-blocking call, no progress: we emit `Queued`, then wait for the answer (bounded by the job timeout,
not the stall timeout: the gateway is silent for the whole render).

- No reference image: `POST /v1/images/generations {model, prompt, n: 1, size}`.
- Only URL references: the same JSON call with an `image` field (one URL as a string, several as a list), so
  the gateway fetches them; we never download members' links ourselves.
- Any reference as local bytes: multipart `POST /v1/images/edits` with `model`, `prompt`, `size` and one
  `image[]` file per image (URL references in the same request go as `image_url` text fields).

The answer `{created, data: [{url | b64_json, revised_prompt?}]}` gives the video URL. An inline `b64_json`
video is not supported (a multi-megabyte data URL has no place in messages or storage): it ends in a clear
`Failed`. The format has no task id, so it can neither resume nor cancel; duration is the gateway's choice.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from bot.upstream.base import UpstreamClient, classify_error
from bot.upstream.types import Event, Failed, FailureKind, Queued, Succeeded, UpstreamError, VideoRequest

log = logging.getLogger(__name__)

INLINE_UNSUPPORTED = (
    "the gateway sent the video inline (b64_json), which sora-bot does not support; "
    "configure the gateway to answer with a URL"
)


class ImagesClient(UpstreamClient):
    api_format = "images"

    async def _generate(self, request: VideoRequest) -> AsyncIterator[Event]:
        yield Queued()
        path, json_body, form = create_call(request)
        body = await self.post_json_once(
            self.url(path), json_body=json_body, data=form, request_timeout=self.blocking_timeout()
        )
        yield result_event(body)


def create_call(request: VideoRequest) -> tuple[str, dict[str, Any] | None, Callable[[], aiohttp.FormData] | None]:
    """(path, JSON body, multipart builder) for the request; exactly one of the last two is set."""
    if any(image.data is not None for image in request.images):
        images = request.images

        def form() -> aiohttp.FormData:
            data = aiohttp.FormData()
            data.add_field("model", request.model)
            data.add_field("prompt", request.prompt)
            if request.size:
                data.add_field("size", request.size)
            for image in images:
                if image.data is not None:
                    data.add_field("image[]", image.data, filename=image.filename, content_type=image.content_type)
                else:
                    data.add_field("image_url", str(image.url))
            return data

        return "/v1/images/edits", None, form
    body: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "n": 1}
    if request.size:
        body["size"] = request.size
    urls = [str(image.url) for image in request.images]
    if urls:
        body["image"] = urls[0] if len(urls) == 1 else urls
    return "/v1/images/generations", body, None


def result_event(body: Any) -> Succeeded | Failed:
    """The answer's first item as the terminal event."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict | str):
        # Some gateways answer 200 with an error object.
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else error
        code = error.get("code") if isinstance(error, dict) else None
        raise classify_error(None, str(message) if message else None, str(code) if code else None)
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise UpstreamError("the gateway's answer has no result in it")
    item = items[0]
    url = item.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return Succeeded(video_url=url)
    if item.get("b64_json") or (isinstance(url, str) and url.startswith("data:")):
        return Failed(FailureKind.UPSTREAM, INLINE_UNSUPPORTED)
    raise UpstreamError("the gateway's answer has no video URL in it")


__all__ = ["ImagesClient", "create_call", "result_event"]
