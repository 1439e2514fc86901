"""The fake gateway's videos format: OpenAI's Video API shape (seeds 002 §4 and 004).

- `POST /v1/videos` (JSON or multipart with an `input_reference` file) → a Video object, `seconds` as a string.
- `GET /v1/videos/{id}` → the Video object now; progress is a function of time (`FakeVideo.state`).
- `GET /v1/videos/{id}/content[?variant=video|thumbnail|spritesheet]` → the MP4 (or the PNG), key required.
- `POST /v1/videos/{id}/remix {prompt}` → a new Video object with `remixed_from_video_id`.
- `DELETE /v1/videos/{id}` → cancels; later polls say `cancelled`.

Format-specific directives, besides the common ones of `bot.fake_upstream.app`:

| directive | effect here |
| --- | --- |
| `fake:moderation` | the create call answers HTTP 400 `{"error": {"code": "moderation_blocked", ...}}` |
| `fake:moderation_late` | the job starts, then a poll reports `failed` with error code `moderation_blocked` |
| `fake:poll_after=MS` | every answer carries an `openai-poll-after-ms: MS` header |
| `fake:video_url` | the completed object carries a direct `video_url` (as some gateways do) |
| `fake:drop` / `fake:garbage` / `fake:poll429` | the first poll is cut mid-body / is not JSON / answers 429 |
| `fake:hugejson` / `fake:hugeerror` | the first poll is an endless JSON body / the create answers an endless 500 |
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from bot.fake_upstream.app import (
    DIRECTIVE,
    FORM_KEY,
    SCENARIO_HEADER,
    FakeVideo,
    huge_error,
    huge_json,
    openai_error,
    sample_thumbnail,
    serve_video,
    state_of,
)
from bot.fake_upstream.app import create_fault_response as common_create_fault

POLL_AFTER = "openai-poll-after-ms"
DEFAULT_SECONDS = "4"
DEFAULT_SIZE = "720x1280"


def directive_value(request: web.Request, prompt: str, name: str) -> str | None:
    """The value of `fake:NAME=VALUE` from the prompt or the scenario header (`Scenario` keeps only the name)."""
    header = " ".join(f"fake:{p.strip()}" for p in request.headers.get(SCENARIO_HEADER, "").split(",") if p.strip())
    for found, value in DIRECTIVE.findall(f"{prompt} {header}"):
        if found.lower() == name and value:
            return value
    return None


def video_object(request: web.Request, video: FakeVideo) -> dict[str, Any]:
    status, progress = video.state()
    if video.cancelled:
        status = "cancelled"
    elif video.scenario.has("moderation_late") and status != "queued" and progress >= 30.0:
        status, progress = "failed", progress
    created_at = int(time.time() - video.elapsed())
    body: dict[str, Any] = {
        "id": video.id,
        "object": "video",
        "model": video.model,
        "status": status,
        "progress": int(progress),
        "created_at": created_at,
        "completed_at": int(time.time()) if status == "completed" else None,
        "expires_at": created_at + 3600 if status == "completed" else None,
        "prompt": video.prompt,
        "remixed_from_video_id": video.remixed_from,
        "seconds": str(video.seconds) if video.seconds is not None else DEFAULT_SECONDS,
        "size": video.size or DEFAULT_SIZE,
        "error": None,
    }
    if status == "failed" and video.scenario.has("moderation_late"):
        body["error"] = {
            "code": "moderation_blocked",
            "message": "Your request was blocked by our moderation system after generation started.",
        }
    elif status == "failed":
        body["error"] = {"code": "video_generation_failed", "message": "Video generation failed: render node lost."}
    elif status == "cancelled":
        body["error"] = {"code": "cancelled", "message": "The video was cancelled."}
    if status == "completed" and video.scenario.has("video_url"):
        body["video_url"] = state_of(request).video_file_url(request, video)
    return body


def answer(request: web.Request, video: FakeVideo, status: int = 200) -> web.Response:
    response = web.json_response(video_object(request, video), status=status)
    poll_after = directive_value(request, video.prompt, "poll_after")
    if poll_after is not None:
        response.headers[POLL_AFTER] = poll_after
    return response


async def read_create_body(request: web.Request) -> dict[str, Any]:
    form = request.get(FORM_KEY)
    if form is not None:
        return dict(form)
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}
    return {}


def parse_seconds(value: Any) -> int | None:
    try:
        return int(str(value)) if value is not None and str(value).strip() else None
    except ValueError:
        return None


async def create_video(request: web.Request) -> web.StreamResponse:
    body = await read_create_body(request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return openai_error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter")
    state = state_of(request)
    scenario = state.scenario(request, prompt)
    fault = common_create_fault(scenario)
    if fault is not None:
        return fault
    if scenario.has("hugeerror"):
        return await huge_error(request)
    if scenario.has("moderation"):
        return openai_error(
            400,
            "Your request was blocked by our moderation system.",
            code="moderation_blocked",
            type_="invalid_request_error",
        )
    seconds = parse_seconds(body.get("seconds"))
    if body.get("seconds") is not None and seconds is None:
        return openai_error(400, "Invalid value for 'seconds'.", code="invalid_value")
    video = FakeVideo(
        id=state.new_id("video"),
        prompt=prompt,
        model=str(body.get("model") or "sora-2"),
        scenario=scenario,
        seconds=seconds,
        size=str(body["size"]) if body.get("size") else None,
    )
    state.videos[video.id] = video
    return answer(request, video)


def find_video(request: web.Request) -> FakeVideo | None:
    video = state_of(request).videos.get(request.match_info["video_id"])
    return video if video is not None and video.id.startswith("video_") else None


def not_found(video_id: str) -> web.Response:
    return openai_error(404, f"Video with id '{video_id}' not found.", code="not_found")


async def get_video(request: web.Request) -> web.StreamResponse:
    video = find_video(request)
    if video is None:
        return not_found(request.match_info["video_id"])
    video.polls += 1
    first = video.polls == 1
    if first and video.scenario.has("poll429"):
        response = openai_error(429, "Too many requests, slow down.", code="rate_limit_exceeded")
        response.headers["Retry-After"] = "0"
        return response
    if first and video.scenario.has("garbage"):
        return web.Response(text="<html>upstream hiccup</html>\x00\xff", content_type="text/html")
    if first and video.scenario.has("drop"):
        return await drop_mid_body(request)
    if first and video.scenario.has("hugejson"):
        return await huge_json(request)
    return answer(request, video)


async def drop_mid_body(request: web.Request) -> web.StreamResponse:
    """Promise a JSON body, send a few bytes of it, then cut the connection."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 400
    await response.prepare(request)
    await response.write(b'{"id": "video_')
    if request.transport is not None:
        request.transport.close()
    return response


async def video_content(request: web.Request) -> web.StreamResponse:
    video = find_video(request)
    if video is None:
        return not_found(request.match_info["video_id"])
    status, _ = video.state()
    if status != "completed" or video.cancelled:
        return openai_error(404, "Video is not ready yet; poll until its status is completed.", code="not_ready")
    variant = request.query.get("variant", "video")
    if variant in ("thumbnail", "spritesheet"):
        return web.Response(body=sample_thumbnail(), content_type="image/png")
    if variant != "video":
        return openai_error(400, f"Invalid variant '{variant}'.", code="invalid_value")
    return await serve_video(request, video)


async def remix_video(request: web.Request) -> web.Response:
    parent = find_video(request)
    if parent is None:
        return not_found(request.match_info["video_id"])
    body = await read_create_body(request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return openai_error(400, "Missing required parameter: 'prompt'.", code="missing_required_parameter")
    if parent.state()[0] != "completed":
        return openai_error(400, "Only completed videos can be remixed.", code="invalid_request_error")
    state = state_of(request)
    scenario = state.scenario(request, prompt)
    fault = common_create_fault(scenario)
    if fault is not None:
        return fault
    if scenario.has("moderation"):
        return openai_error(400, "Your request was blocked by our moderation system.", code="moderation_blocked")
    video = FakeVideo(
        id=state.new_id("video"),
        prompt=prompt,
        model=parent.model,
        scenario=scenario,
        seconds=parent.seconds,
        size=parent.size,
        remixed_from=parent.id,
    )
    state.videos[video.id] = video
    return answer(request, video)


async def delete_video(request: web.Request) -> web.Response:
    video = find_video(request)
    if video is None:
        return not_found(request.match_info["video_id"])
    video.cancelled = True
    return web.json_response({"id": video.id, "object": "video.deleted", "deleted": True})


def setup_routes(app: web.Application) -> None:
    """Register this format's routes on the fake gateway app."""
    app.router.add_post("/v1/videos", create_video)
    app.router.add_get("/v1/videos/{video_id}", get_video)
    app.router.add_delete("/v1/videos/{video_id}", delete_video)
    app.router.add_get("/v1/videos/{video_id}/content", video_content)
    app.router.add_post("/v1/videos/{video_id}/remix", remix_video)
