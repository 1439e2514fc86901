"""The URL policy: which links the bot fetches, on every redirect hop and on the address actually connected to.

The fake gateway listens on 127.0.0.1 and is the configured gateway, so it is always allowed; a result link
naming another loopback host (`localhost`, `127.0.0.2`) is "another host on a private address" and refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.cli import CliError, load_image
from bot.config import load_settings
from bot.fake_upstream import FakeUpstream
from bot.fake_upstream.app import sample_mp4, sample_thumbnail
from bot.upstream import UpstreamClient, UpstreamOptions, make_session
from bot.upstream.base import download_to_file
from bot.upstream.progress import ProgressParser
from bot.upstream.types import FailureKind, Succeeded, UpstreamError
from bot.upstream.urlpolicy import GuardedConnector, UrlPolicy, UrlRefused, is_public
from bot.upstream.videos import VideosClient
from tests.fixtures.upstream import TEST_API_KEY
from tests.upstream.helpers import assert_mp4, collect, request, serve, succeeded

# --- addresses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.0.0.2", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
        "0.0.0.0", "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255", "192.0.2.1", "198.18.0.1",
        "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "2001:db8::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::", "2002:0a00:0001::",
        "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe",
    ],
)  # fmt: skip
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:0808:0808::"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


# --- the check before connecting ---------------------------------------------------------------------------


async def refused(policy: UrlPolicy, url: str) -> str:
    with pytest.raises(UrlRefused) as caught:
        await policy.check(url)
    assert caught.value.kind is FailureKind.UPSTREAM
    return caught.value.message


async def test_only_http_and_https() -> None:
    policy = UrlPolicy.build("http://127.0.0.1:8000")
    for url in ("ftp://127.0.0.1/v.mp4", "file:///etc/passwd", "gopher://127.0.0.1:70/", "data:video/mp4,xx"):
        assert "http" in await refused(policy, url)


async def test_the_gateway_host_is_allowed_and_other_loopback_names_are_not() -> None:
    policy = UrlPolicy.build("http://127.0.0.1:8000")
    await policy.check("http://127.0.0.1:9999/any/port.mp4")
    await policy.check("https://127.0.0.1/v.mp4")
    for url in (
        "http://localhost:8000/v.mp4",
        "http://127.0.0.2:8000/v.mp4",
        "http://[::1]:8000/v.mp4",
        "http://[::ffff:127.0.0.1]:8000/v.mp4",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/internal",
        "http://0.0.0.0:8000/",
        "http://2130706433/",  # 127.0.0.1 as one number
    ):
        message = await refused(policy, url)
        assert "private or reserved" in message or "resolved" in message
        for host in ("localhost", "127.0.0", "169.254", "10.0.0.5", "::1", "2130706433"):
            assert host not in message  # a member sees this: it never names the refused host


async def test_a_named_gateway_host_is_matched_by_name() -> None:
    policy = UrlPolicy.build("http://LocalHost.:8000/v1")
    await policy.check("http://localhost:8000/v.mp4")
    await refused(policy, "http://127.0.0.1:8000/v.mp4")


async def test_the_allow_list_admits_hosts_and_ranges() -> None:
    policy = UrlPolicy.build("https://gw.example.com", ["localhost", "10.20.0.0/16", " ", "fd00::/8"])
    await policy.check("http://localhost:1234/v.mp4")
    await policy.check("http://10.20.3.4/v.mp4")
    await policy.check("http://[fd00::5]/v.mp4")
    await refused(policy, "http://10.21.0.1/v.mp4")
    await refused(policy, "http://127.0.0.1/v.mp4")


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    assert "resolved" in await refused(UrlPolicy.build("https://gw.example.com"), "http://no-such-host.invalid/v")


# --- end to end, through the fake gateway ------------------------------------------------------------------


async def test_a_result_on_another_loopback_host_is_refused(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    for api_format in ("task", "images", "chat"):
        client = upstream_client(api_format)
        result = succeeded(await collect(client.generate(request("a cat fake:result_host=localhost"))))
        assert result.video_url.startswith("http://localhost:")
        files_before = len(fake_upstream.state.requests_to("/files/"))
        with pytest.raises(UrlRefused):
            await client.download(result, tmp_path / "v.mp4")
        assert not (tmp_path / "v.mp4").exists()
        assert len(fake_upstream.state.requests_to("/files/")) == files_before  # nothing was even asked


async def test_127_0_0_2_is_refused_before_connecting(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("task")
    result = succeeded(await collect(client.generate(request("a cat fake:result_host=127.0.0.2"))))
    with pytest.raises(UrlRefused) as caught:
        await client.download(result, tmp_path / "v.mp4")
    assert "127.0.0.2" not in str(caught.value)


async def test_the_allow_list_lets_the_operator_fetch_a_private_host(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("task", fetch_allow=("localhost",))
    result = succeeded(await collect(client.generate(request("a cat fake:result_host=localhost"))))
    video = await client.download(result, tmp_path / "v.mp4")
    assert video.size == len(sample_mp4())
    assert_mp4(tmp_path / "v.mp4")


async def test_every_redirect_hop_is_checked(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("task")
    result = succeeded(await collect(client.generate(request("a cat fake:redirect_host=localhost"))))
    assert result.video_url.startswith(fake_upstream.base_url)  # the first hop is the gateway: allowed
    with pytest.raises(UrlRefused):
        await client.download(result, tmp_path / "v.mp4")
    hops = fake_upstream.state.requests_to("/files/")
    assert len(hops) == 1  # the redirect to localhost was refused, not followed

    allowed = upstream_client("task", fetch_allow=("127.0.0.0/8",))
    video = await allowed.download(result, tmp_path / "v.mp4")
    assert video.size == len(sample_mp4())


async def test_redirects_are_followed_but_bounded(
    fake_upstream: FakeUpstream, upstream_client: Callable[..., UpstreamClient], tmp_path: Path
) -> None:
    client = upstream_client("task")
    three = succeeded(await collect(client.generate(request("a cat fake:redirects=3"))))
    assert (await client.download(three, tmp_path / "v.mp4")).size == len(sample_mp4())
    six = succeeded(await collect(client.generate(request("a cat fake:redirects=6"))))
    with pytest.raises(UpstreamError) as caught:
        await client.download(six, tmp_path / "v.mp4")
    assert "redirected more than 5 times" in caught.value.message


async def test_the_key_is_not_sent_along_a_redirect(http_session: aiohttp.ClientSession, tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def file(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=sample_mp4(), content_type="video/mp4")

    async with serve({("GET", "/cdn/v.mp4"): file}) as cdn:
        cdn_url = cdn.replace("127.0.0.1", "localhost") + "/cdn/v.mp4"

        async def content(request: web.Request) -> web.StreamResponse:
            assert request.headers.get("Authorization") == f"Bearer {TEST_API_KEY}"
            raise web.HTTPFound(cdn_url)

        async with serve({("GET", "/v1/videos/{id}/content"): content}) as gateway:
            options = UpstreamOptions(base_url=gateway, api_key=TEST_API_KEY, fetch_allow=("localhost",))
            client = VideosClient(http_session, options)
            result = Succeeded(f"{gateway}/v1/videos/v1/content", authenticated=True)
            await client.download(result, tmp_path / "v.mp4")
    assert seen == [None]


async def test_a_result_claiming_the_key_on_another_host_does_not_get_it(
    http_session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    seen: list[str | None] = []

    async def file(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=sample_mp4(), content_type="video/mp4")

    async with serve({("GET", "/v.mp4"): file}) as other:
        options = UpstreamOptions(base_url="https://gw.example.com", api_key=TEST_API_KEY, fetch_allow=("127.0.0.1",))
        client = VideosClient(http_session, options)
        await client.download(Succeeded(f"{other}/v.mp4", authenticated=True), tmp_path / "v.mp4")
    assert seen == [None]


async def test_error_pages_of_other_hosts_are_never_shown(http_session: aiohttp.ClientSession, tmp_path: Path) -> None:
    async def forbidden(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": {"message": "internal bucket acme-secret-bucket denied"}}, status=403)

    async with serve({("GET", "/v.mp4"): forbidden}) as other:
        options = UpstreamOptions(base_url="https://gw.example.com", api_key=TEST_API_KEY, fetch_allow=("127.0.0.1",))
        client = VideosClient(http_session, options)
        with pytest.raises(UpstreamError) as caught:
            await client.download(Succeeded(f"{other}/v.mp4"), tmp_path / "v.mp4")
    assert caught.value.message == "the video host answered HTTP 403"
    assert caught.value.kind is FailureKind.UPSTREAM and caught.value.status == 403


# --- DNS rebinding: the address connected to is checked too -----------------------------------------------


class RebindingResolver(AbstractResolver):
    """A name server that answers a public address the first time and loopback afterwards (DNS rebinding)."""

    def __init__(self, first: str = "93.184.215.14", then: str = "127.0.0.1") -> None:
        self.answers = [first, then]
        self.asked = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return [ResolveResult(hostname=host, host=address, port=port, family=socket.AF_INET, proto=0, flags=0)]

    async def close(self) -> None:
        return None


async def test_dns_rebinding_is_caught_at_the_connection(tmp_path: Path) -> None:
    calls: list[web.Request] = []

    async def file(request: web.Request) -> web.StreamResponse:
        calls.append(request)
        return web.Response(body=sample_mp4(), content_type="video/mp4")

    async with serve({("GET", "/v.mp4"): file}) as base:
        port = base.rsplit(":", 1)[1]
        resolver = RebindingResolver()
        policy = UrlPolicy.build("https://gw.example.com", resolver=resolver)
        connector = GuardedConnector(resolver=resolver, use_dns_cache=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            with pytest.raises(UrlRefused) as caught:
                await download_to_file(
                    session,
                    f"http://rebind.test:{port}/v.mp4",
                    tmp_path / "v.mp4",
                    headers={},
                    max_bytes=2**20,
                    policy=policy,
                )
    assert resolver.asked == 2  # our check saw the public answer, the connection the loopback one
    assert calls == []  # refused before a single byte of the request went out
    assert "rebind" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
    assert not (tmp_path / "v.mp4").exists()


async def _mp4(request: web.Request) -> web.StreamResponse:
    return web.Response(body=sample_mp4(), content_type="video/mp4")


async def test_the_guard_stays_out_of_the_way_of_the_gateway_and_other_calls(tmp_path: Path) -> None:
    async with serve({("GET", "/v.mp4"): _mp4}) as base, make_session(connect_timeout=2.0) as session:
        assert isinstance(session.connector, GuardedConnector)
        async with session.get(f"{base}/v.mp4") as response:  # no policy in force: an ordinary connector
            assert response.status == 200
        policy = UrlPolicy.build(base)
        video = await download_to_file(session, f"{base}/v.mp4", tmp_path / "v.mp4", headers={}, max_bytes=2**20,
                                       policy=policy)  # fmt: skip
        assert video.size == len(sample_mp4())


# --- the chat format's echo of the prompt ------------------------------------------------------------------


def test_a_link_in_the_prompt_is_not_taken_when_the_echo_is_re_spaced() -> None:
    prompt = "make it like   https://media.example.com/theirs.mp4  but blue"
    for echo in (
        "make it like https://media.example.com/theirs.mp4 but blue",
        "make it like\thttps://media.example.com/theirs.mp4\u3000but   blue",
        "makeit like https://media.example.com/theirs.mp4 butblue",
    ):
        parser = ProgressParser(ignore=(prompt,))
        parser.feed(f"> {echo}\n> ✅ 生成成功\n")
        parser.finish()
        assert parser.outcome() is None, echo  # the member's own link is never the result
        parser = ProgressParser(ignore=(prompt,))
        parser.feed(f"> {echo}\n> ✅ 生成成功 [视频文件](https://cdn.example.com/ours.mp4)\n")
        parser.finish()
        outcome = parser.outcome()
        assert isinstance(outcome, Succeeded) and outcome.video_url == "https://cdn.example.com/ours.mp4"


# --- the command line's --image links ----------------------------------------------------------------------


async def test_cli_image_links_are_fetched_under_the_policy() -> None:
    async def image(request: web.Request) -> web.StreamResponse:
        return web.Response(body=sample_thumbnail(), content_type="image/png")

    async def page(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>not an image</html>", content_type="text/html")

    async with serve({("GET", "/cat.png"): image, ("GET", "/page"): page}) as base:
        settings = load_settings(None, sora_base_url=base, sora_api_key=TEST_API_KEY)
        loaded = await asyncio.to_thread(load_image, f"{base}/cat.png?sig=abc", settings)
        assert loaded.data == sample_thumbnail() and loaded.url is None
        assert loaded.filename == "cat.png" and loaded.content_type == "image/png"
        with pytest.raises(CliError, match="did not return an image"):
            await asyncio.to_thread(load_image, f"{base}/page", settings)
        # Without the gateway's host to trust, 127.0.0.1 is just a private address.
        with pytest.raises(CliError, match="private or reserved") as caught:
            await asyncio.to_thread(load_image, f"{base}/cat.png?sig=abc")
        assert "sig=abc" not in str(caught.value)
        other = load_settings(None, sora_base_url="https://gw.example.com", sora_api_key=TEST_API_KEY,
                              sora_fetch_allow="127.0.0.1")  # fmt: skip
        assert (await asyncio.to_thread(load_image, f"{base}/cat.png", other)).data == sample_thumbnail()
