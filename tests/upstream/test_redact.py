"""Redaction: the API key (whole or in pieces) and key-like URL parameters never reach a member, a log or a
repr; a URL carrying a credential is never published as a link."""

from __future__ import annotations

import json
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web

from bot.fake_upstream import FakeUpstream
from bot.upstream import UpstreamClient, UpstreamOptions, make_client
from bot.upstream.chat import ChatStream
from bot.upstream.redact import MASK, publishable_url, redact, redact_query, redact_secrets
from bot.upstream.types import Failed, FailureKind, Preview, Succeeded
from tests.fixtures.upstream import TEST_API_KEY
from tests.upstream.helpers import collect, request, serve, succeeded

KEY = "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def pieces_of(secret: str, length: int) -> list[str]:
    return [secret[i : i + length] for i in range(len(secret) - length + 1)]


# --- redact ------------------------------------------------------------------------------------------------


def test_the_whole_key_is_masked() -> None:
    assert redact(f"Incorrect API key provided: {KEY}.", (KEY,)) == f"Incorrect API key provided: {MASK}."


@pytest.mark.parametrize("piece", [KEY[:8], KEY[:20], KEY[5:19], KEY[-8:], KEY[-13:]])
def test_any_piece_of_eight_or_more_characters_is_masked(piece: str) -> None:
    text = f"the key ...{piece}... was refused"
    out = redact(text, (KEY,))
    assert piece not in out
    assert all(p not in out for p in pieces_of(KEY, 8))
    assert out == f"the key ...{MASK}... was refused"


def test_shorter_pieces_and_other_text_are_left_alone() -> None:
    text = f"prefix {KEY[:7]} and an unrelated sentence"
    assert redact(text, (KEY,)) == text
    assert redact_secrets("", (KEY,)) == ""
    assert redact("no secrets at all", ()) == "no secrets at all"


def test_two_separate_pieces_are_both_masked() -> None:
    out = redact(f"a={KEY[:10]} b={KEY[20:32]}", (KEY,))
    assert out == f"a={MASK} b={MASK}"


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://cdn.example.com/v.mp4?sig=abcdef&expires=1", "expires=1"),
        ("https://s3.example.com/v.mp4?X-Amz-Credential=AKIA/x&X-Amz-Signature=0a1b2c", "s3.example.com/v.mp4"),
        ("https://gw.example.com/v1/videos/1?api_key=sk-1234&variant=video", "variant=video"),
        ("https://x.example.com/a?TOKEN=abc;Signature=def", "x.example.com/a"),
        ("https://x.example.com/a?access_token=abc#frag", "#frag"),
    ],
)
def test_key_like_query_parameters_are_masked(url: str, kept: str) -> None:
    out = redact(f"download failed for {url} (HTTP 403)", ())
    assert kept in out
    for secret in ("abcdef", "0a1b2c", "AKIA", "sk-1234", "abc", "def"):
        assert f"={secret}" not in out
    assert MASK in out


def test_parameters_that_only_look_alike_are_kept() -> None:
    text = "https://x.example.com/a?keyboard=1&monkey=2&tokens_used=3"
    assert redact_query(text) == text


# --- publishable URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/v.mp4?sig=abcdef",
        "https://cdn.example.com/v.mp4?Expires=1&Signature=abc&Key-Pair-Id=K1",
        f"https://cdn.example.com/{KEY[3:15]}/v.mp4",
        f"https://gw.example.com/v.mp4?k={KEY}",
        "https://user:pass@cdn.example.com/v.mp4",
        "ftp://cdn.example.com/v.mp4",
        "javascript:alert(1)",
        "",
        None,
    ],
)
def test_urls_with_credentials_are_not_publishable(url: str | None) -> None:
    assert publishable_url(url, (KEY,)) is None


def test_a_plain_url_is_publishable() -> None:
    url = "https://cdn.example.com/videos/v_123.mp4?quality=hd"
    assert publishable_url(url, (KEY,)) == url


async def test_the_client_publishes_only_clean_unauthenticated_links(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient]
) -> None:
    client = upstream_client("task")
    plain = succeeded(await collect(client.generate(request("a cat"))))
    assert client.publishable_url(plain) == plain.video_url
    signed = succeeded(await collect(client.generate(request("a cat fake:signed"))))
    assert "sig=" in signed.video_url  # kept intact for the download itself
    assert client.publishable_url(signed) is None
    assert client.publishable_url(Succeeded(plain.video_url, authenticated=True)) is None
    videos = upstream_client("videos")
    content = succeeded(await collect(videos.generate(request("a cat"))))
    assert content.authenticated and videos.publishable_url(content) is None
    assert videos.publishable_url(content, thumbnail=True) is None  # the thumbnail needs the key too


def test_reprs_hide_signatures_and_the_options_key() -> None:
    result = Succeeded(
        "https://cdn.example.com/v.mp4?sig=SECRETSIG",
        thumbnail_url="https://cdn.example.com/t.png?token=TOK",
        assistant_text="long text " * 50,
    )
    text = repr(result)
    assert "SECRETSIG" not in text and "TOK" not in text and "cdn.example.com/v.mp4" in text
    assert "<500 chars>" in text
    assert "SECRETSIG" not in repr(Preview("https://cdn.example.com/p.png?sig=SECRETSIG"))
    options = UpstreamOptions(base_url="https://gw.example.com?key=INURL", api_key=KEY)
    assert "INURL" not in repr(options) and KEY not in repr(options)


# --- redaction comes before cutting ------------------------------------------------------------------------


async def test_an_error_body_is_redacted_before_it_is_cut(http_session: aiohttp.ClientSession) -> None:
    async def cut_at_the_key(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        # The gateway's message is longer than what the bot keeps, and the key straddles the cut.
        message = "x" * 490 + " " + key + " and more words after it"
        return web.json_response({"error": {"message": message}}, status=400)

    async with serve({("*", "/{tail:.*}"): cut_at_the_key}) as base:
        options = UpstreamOptions(base_url=base, api_key=TEST_API_KEY, job_timeout=5.0, retry_attempts=0)
        for api_format in ("videos", "task", "images", "chat"):
            client = make_client(api_format, http_session, options)
            end = (await collect(client.generate(request("a cat"))))[-1]
            assert isinstance(end, Failed) and end.kind is FailureKind.BAD_REQUEST, end
            assert all(piece not in end.reason for piece in pieces_of(TEST_API_KEY, 8)), end.reason
            assert TEST_API_KEY[:6] not in end.reason[480:], end.reason


def test_a_chat_failure_is_redacted_before_it_is_shortened() -> None:
    key = TEST_API_KEY
    stream = ChatStream(secrets=(key,))
    text = "> ❌ 生成失败: " + "y" * 280 + f" key {key} rejected"
    content = json.dumps(text, ensure_ascii=False)
    body = f'{{"choices":[{{"index":0,"delta":{{"content":{content}}},"finish_reason":null}}]}}'
    events = stream.feed(f"data: {body}\n\n".encode()) + stream.finish()
    end = events[-1]
    assert isinstance(end, Failed)
    assert all(piece not in end.reason for piece in pieces_of(key, 8)), end.reason


def test_a_chat_error_payload_is_redacted_before_it_is_cut() -> None:
    key = TEST_API_KEY
    stream = ChatStream(secrets=(key,))
    message = "z" * 495 + key
    events = stream.feed(f'data: {{"error": {{"message": "{message}"}}}}\n\n'.encode()) + stream.finish()
    end = events[-1]
    assert isinstance(end, Failed)
    assert all(piece not in end.reason for piece in pieces_of(key, 8)), end.reason
