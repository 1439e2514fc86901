"""The fake gateway's images (DALL·E-style) format (seed 002 §3).

- `POST /v1/images/generations {model, prompt, n, size, image?}` (JSON; `image` is an optional URL or list).
- `POST /v1/images/edits` (multipart: `model`, `prompt`, one or more `image[]` files, optional `image_url`).

Both block for the scenario's whole render time, then answer `{created, data: [{url, revised_prompt}]}`; the
URL serves the MP4 (so `fake:html`, `fake:huge` and `fake:bytes=N` apply to it).

Format-specific directives, besides the common ones of `bot.fake_upstream.app`:

| directive | effect here |
| --- | --- |
| `fake:moderation` | HTTP 400 `content_policy_violation` straight away (DALL·E's safety-system answer) |
| `fake:moderation_late` | the same answer, after half the render time |
| `fake:fail` | HTTP 500 with an upstream error message after half the render time |
| `fake:stall` | never answers (until the client gives up) |
| `fake:drop` | the connection is cut mid-answer |
| `fake:garbage` | HTTP 200 with a body that is not JSON |
| `fake:b64` | the result comes as `b64_json` instead of a URL |
| `fake:hugejson` / `fake:hugeerror` | an endless JSON answer / an endless HTTP 500 error body |
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

from aiohttp import web

from bot.fake_upstream.app import (
    FORM_KEY,
    FakeVideo,
    Scenario,
    create_fault_response,
    huge_error,
    huge_json,
    openai_error,
    sample_mp4,
    state_of,
)
from bot.fake_upstream.videos import drop_mid_body

SAFETY_MESSAGE = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text that is not "
    "allowed by our safety system."
)


async def wait_connected(request: web.Request, seconds: float | None) -> bool:
    """Sleep for `seconds` (forever when None) while the client stays connected; False once it has gone."""
    deadline = None if seconds is None else time.monotonic() + seconds
    while deadline is None or time.monotonic() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        step = 0.05 if deadline is None else min(0.05, max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(step)
    return True


def render_seconds(scenario: Scenario) -> float:
    return scenario.total_seconds + (scenario.interval if scenario.queue else 0.0)


async def respond(request: web.Request, prompt: str, model: str, size: str | None) -> web.StreamResponse:
    state = state_of(request)
    scenario = state.scenario(request, prompt)
    fault = create_fault_response(scenario)
    if fault is not None:
        return fault
    if scenario.has("moderation"):
        return openai_error(400, SAFETY_MESSAGE, code="content_policy_violation")
    if scenario.has("hugeerror"):
        return await huge_error(request)
    if scenario.has("hugejson"):
        return await huge_json(request)
    if scenario.has("garbage"):
        return web.Response(text="<html><body>upstream error</body></html>", content_type="text/html")
    total = render_seconds(scenario)
    if scenario.has("stall"):
        await wait_connected(request, None)
        return web.Response(status=504, text="gave up")
    if scenario.has("drop"):
        await wait_connected(request, total / 2)
        return await drop_mid_body(request)
    if scenario.has("fail") or scenario.has("moderation_late"):
        if not await wait_connected(request, total / 2):
            return web.Response(status=499)
        if scenario.has("moderation_late"):
            return openai_error(400, SAFETY_MESSAGE, code="content_policy_violation")
        return openai_error(500, "Video generation failed upstream: the render task errored.", type_="upstream_error")
    video = FakeVideo(id=state.new_id("image"), prompt=prompt, model=model, scenario=scenario, size=size)
    state.videos[video.id] = video
    if not await wait_connected(request, total):
        return web.Response(status=499)
    item: dict[str, Any] = {"revised_prompt": prompt}
    if scenario.has("b64"):
        item["b64_json"] = base64.b64encode(sample_mp4()).decode("ascii")
    else:
        item["url"] = state.video_file_url(request, video)
    return web.json_response({"created": int(time.time()), "data": [item]})


async def generations(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return openai_error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter")
    if body.get("n", 1) != 1:
        return openai_error(400, "Only n=1 is supported for video models.", code="invalid_value")
    image = body.get("image")
    if image is not None and not (
        isinstance(image, str) or (isinstance(image, list) and all(isinstance(i, str) for i in image))
    ):
        return openai_error(400, "image must be a URL or a list of URLs", code="invalid_value")
    return await respond(request, body["prompt"], str(body.get("model") or "sora_video2"), body.get("size"))


async def edits(request: web.Request) -> web.StreamResponse:
    form = request.get(FORM_KEY)
    if not isinstance(form, dict):
        return openai_error(400, "This endpoint expects multipart/form-data.", code="invalid_request_error")
    prompt = form.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return openai_error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter")
    files = form.get("image[]", form.get("image"))
    files = files if isinstance(files, list) else [files] if files is not None else []
    if not any(isinstance(f, dict) for f in files) and not form.get("image_url"):
        return openai_error(400, "Missing required parameter: 'image[]'.", code="missing_required_parameter")
    size = form.get("size") if isinstance(form.get("size"), str) else None
    return await respond(request, prompt, str(form.get("model") or "sora_video2"), size)


def setup_routes(app: web.Application) -> None:
    """Register this format's routes on the fake gateway app."""
    app.router.add_post("/v1/images/generations", generations)
    app.router.add_post("/v1/images/edits", edits)
