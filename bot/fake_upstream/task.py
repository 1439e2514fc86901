"""The fake gateway's task format (seed 002 §1).

- `POST /sora/v1/video/create {images, model, orientation, size, duration, prompt}` → `{id, status: "pending"}`.
- `GET /sora/v1/video/feed/{id}` → `{id, status, video_url?}` with the seed's status words: `pending` while
  queued, `video_generating` for the first half of the render and `running` for the second, then `completed`
  (with `video_url`) or `failed` (with `fail_reason`).

Format-specific directives, besides the common ones of `bot.fake_upstream.app`:

| directive | effect here |
| --- | --- |
| `fake:moderation` | accepted, then the feed says `failed` with a "Content Policy Violation" `fail_reason` |
| `fake:moderation_late` | the same, once the render is under way |
| `fake:progress` | feed answers carry a `progress` field (the seed's gateway sends none) |
| `fake:drop` / `fake:garbage` / `fake:poll429` | the first feed poll is cut mid-body / is not JSON / answers 429 |
| `fake:hugejson` / `fake:hugeerror` | the first feed poll is an endless JSON body / the create answers an endless 500 |
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.fake_upstream.app import FakeVideo, create_fault_response, huge_error, huge_json, openai_error, state_of
from bot.fake_upstream.videos import drop_mid_body

MODERATION_REASON = "Content Policy Violation: this prompt may violate our guardrails around harmful content."


def feed_body(request: web.Request, video: FakeVideo) -> dict[str, Any]:
    status, progress = video.state()
    body: dict[str, Any] = {"id": video.id}
    late = video.scenario.has("moderation_late") and status != "queued" and progress >= 30.0
    if video.scenario.has("moderation") or late:
        body.update(status="failed", fail_reason=MODERATION_REASON)
        return body
    if status == "queued":
        body["status"] = "pending"
    elif status == "in_progress":
        body["status"] = "video_generating" if progress < 50.0 else "running"
    elif status == "completed":
        body["status"] = "completed"
        body["video_url"] = state_of(request).video_file_url(request, video)
    else:
        body.update(status="failed", fail_reason="upstream render failed: worker crashed")
    if video.scenario.has("progress"):
        body["progress"] = int(progress)
    return body


async def create_task(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        return openai_error(400, "prompt is required")
    images = body.get("images", [])
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        return openai_error(400, "images must be a list of URLs or base64 strings")
    if body.get("orientation") not in (None, "landscape", "portrait"):
        return openai_error(400, "orientation must be landscape or portrait")
    if body.get("size") not in (None, "large", "small"):
        return openai_error(400, "size must be large or small")
    state = state_of(request)
    scenario = state.scenario(request, body["prompt"])
    fault = create_fault_response(scenario)
    if fault is not None:
        return fault
    if scenario.has("hugeerror"):
        return await huge_error(request)
    duration = body.get("duration")
    video = FakeVideo(
        id=state.new_id("task"),
        prompt=body["prompt"],
        model=str(body.get("model") or "sora-2"),
        scenario=scenario,
        seconds=int(duration) if isinstance(duration, int | float) else None,
    )
    state.videos[video.id] = video
    return web.json_response({"id": video.id, "status": "pending"})


async def feed(request: web.Request) -> web.StreamResponse:
    video = state_of(request).videos.get(request.match_info["task_id"])
    if video is None or not video.id.startswith("task_"):
        return openai_error(404, "task not found")
    video.polls += 1
    first = video.polls == 1
    if first and video.scenario.has("poll429"):
        response = openai_error(429, "too many requests", code="rate_limit_exceeded")
        response.headers["Retry-After"] = "0"
        return response
    if first and video.scenario.has("garbage"):
        return web.Response(text="502 Bad Gateway <nginx>", content_type="text/plain")
    if first and video.scenario.has("drop"):
        return await drop_mid_body(request)
    if first and video.scenario.has("hugejson"):
        return await huge_json(request)
    return web.json_response(feed_body(request, video))


def setup_routes(app: web.Application) -> None:
    """Register this format's routes on the fake gateway app."""
    app.router.add_post("/sora/v1/video/create", create_task)
    app.router.add_get("/sora/v1/video/feed/{task_id}", feed)
