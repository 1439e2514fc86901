"""Which URLs sora-bot fetches: one policy for every link that came from outside (video results, thumbnails,
each redirect hop, `--image` URLs in the command line).

- Only `http` and `https`.
- The gateway's own host (from `SORA_BASE_URL`) is always allowed, on any address: it is the operator's choice.
- Any other host must resolve only to public addresses: loopback, private, link-local, shared (CGNAT),
  multicast, unspecified, reserved and documentation ranges are refused, for IPv4 and IPv6 alike (IPv4-mapped,
  6to4 and NAT64 addresses are judged by the IPv4 address inside them).
- `SORA_FETCH_ALLOW` (host names, IP addresses or CIDR ranges) admits private hosts an operator trusts.
- Redirects are followed here, not by aiohttp, at most `MAX_REDIRECTS` hops, each hop checked again; the API
  key goes only to the URL it was meant for.
- The address actually connected to is checked too (`GuardedConnector`, installed by `make_session`), so a DNS
  answer that changes between our check and the connection (DNS rebinding) still cannot reach a private
  address. Through an HTTP proxy (`HTTPS_PROXY`) the proxy connects, and only the host name checks apply.

A refusal is a `UrlRefused`, whose message names neither the host nor the address (a member sees it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from yarl import URL

from bot.upstream.types import UpstreamError

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
SCHEMES = frozenset({"http", "https"})
SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: private in all but name
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UrlRefused(UpstreamError):
    """A URL the policy does not fetch. The message never names the host or its address."""


def is_public(address: IPAddress) -> bool:
    """True for an address anyone on the internet could reach: not loopback, private, link-local, shared,
    multicast, unspecified or reserved; IPv6 forms that carry an IPv4 address are judged by that address."""
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and address in NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return is_public(inner)
    if address in SHARED_ADDRESS_SPACE:
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_reserved
        or address.is_unspecified
    )


def parse_address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def normal_host(host: str | None) -> str:
    return (host or "").strip().strip("[]").rstrip(".").lower()


def url_host(url: str) -> str:
    try:
        return normal_host(URL(url).host)
    except (ValueError, TypeError):
        return ""


def origin(url: str) -> tuple[str, str, int | None]:
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return ("", "", None)
    return (parsed.scheme.lower(), normal_host(parsed.host), parsed.port)


@dataclass(frozen=True, slots=True)
class UrlPolicy:
    """The rules for one gateway. Build it with `UrlPolicy.build(base_url, fetch_allow)`."""

    gateway_host: str = ""
    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    # Resolves host names for the check; None means the system resolver. Tests hand in their own.
    resolver: AbstractResolver | None = field(default=None, compare=False)

    @classmethod
    def build(
        cls, base_url: str | None, fetch_allow: Iterable[str] = (), *, resolver: AbstractResolver | None = None
    ) -> UrlPolicy:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in fetch_allow:
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                hosts.add(normal_host(entry))
        return cls(url_host(base_url) if base_url else "", frozenset(hosts), tuple(networks), resolver)

    def is_gateway(self, host: str | None) -> bool:
        return bool(self.gateway_host) and normal_host(host) == self.gateway_host

    def trusts_host(self, host: str | None) -> bool:
        """The host is the gateway or named in the allow-list: any address it has is fine."""
        name = normal_host(host)
        return self.is_gateway(name) or name in self.allowed_hosts

    def address_allowed(self, address: IPAddress) -> bool:
        return any(address in network for network in self.allowed_networks) or is_public(address)

    async def check(self, url: str, what: str = "video") -> None:
        """Raise `UrlRefused` unless `url` may be fetched (before connecting: scheme, host, its addresses)."""
        try:
            parsed = URL(url)
        except (ValueError, TypeError):
            raise UrlRefused(f"the {what} link is not a valid URL") from None
        if parsed.scheme.lower() not in SCHEMES:
            raise UrlRefused(f"the {what} link was refused: only http and https links are fetched")
        host = normal_host(parsed.host)
        if not host:
            raise UrlRefused(f"the {what} link has no host")
        if self.trusts_host(host):
            return
        literal = parse_address(host)
        addresses = [literal] if literal is not None else await self._resolve(host, parsed.port or 80)
        if not addresses:
            raise UrlRefused(f"the {what} link's host could not be resolved")
        if not all(self.address_allowed(address) for address in addresses):
            raise UrlRefused(f"the {what} link was refused: it points to a private or reserved address")

    def check_peer(self, host: str | None, peer: IPAddress | None, what: str = "video") -> None:
        """Raise `UrlRefused` when the connection for `host` went to an address the policy refuses."""
        if self.trusts_host(host):
            return
        if peer is None or not self.address_allowed(peer):
            raise UrlRefused(f"the {what} link was refused: it points to a private or reserved address")

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            if self.resolver is not None:
                found = [r["host"] for r in await self.resolver.resolve(host, port, family=socket.AF_UNSPEC)]
            else:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
                found = [str(info[4][0]) for info in infos]
        except (OSError, ValueError):
            return []
        addresses = [parse_address(text) for text in found]
        return [a for a in addresses if a is not None] if all(a is not None for a in addresses) else []


# --- the connection check --------------------------------------------------------------------------------

_ACTIVE: ContextVar[tuple[UrlPolicy, str] | None] = ContextVar("sora_url_policy", default=None)


@contextlib.contextmanager
def guarding(policy: UrlPolicy | None, what: str) -> Iterator[None]:
    """Within this block, connections `GuardedConnector` hands out are checked against `policy`."""
    token = _ACTIVE.set((policy, what) if policy is not None else None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def peer_address(transport: asyncio.BaseTransport | None) -> IPAddress | None:
    if transport is None:
        return None
    peer = transport.get_extra_info("peername")
    if not peer:
        return None
    return parse_address(str(peer[0]) if isinstance(peer, tuple | list) else str(peer))


class GuardedConnector(aiohttp.TCPConnector):
    """A `TCPConnector` that, inside `guarding(policy)`, refuses a connection whose remote address the policy
    refuses, before anything is sent on it. Outside such a block it is an ordinary connector."""

    async def connect(
        self,
        req: ClientRequest,
        traces: list[Any],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's own signature)
    ) -> Connection:
        connection = await super().connect(req, traces, timeout)
        active = _ACTIVE.get()
        if active is not None and req.proxy is None:
            policy, what = active
            try:
                policy.check_peer(req.url.host, peer_address(connection.transport), what)
            except UrlRefused:
                connection.close()
                raise
        return connection


def check_response_peer(response: aiohttp.ClientResponse, policy: UrlPolicy, what: str) -> None:
    """For sessions without a `GuardedConnector`: the same check after the fact, when the connection is still
    attached to the response (a small body may have released it already; `make_session` avoids the gap)."""
    connection = response.connection
    if connection is None or connection.transport is None:
        return
    policy.check_peer(response.url.host, peer_address(connection.transport), what)


# --- fetching with the policy ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_url(
    session: aiohttp.ClientSession,
    url: str,
    *,
    policy: UrlPolicy | None,
    headers: Mapping[str, str] | None = None,
    what: str = "video",
    request_timeout: aiohttp.ClientTimeout | None = None,
    max_redirects: int = MAX_REDIRECTS,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET `url`, following redirects ourselves (each hop checked by `policy`; None checks nothing); yields
    the final response, released on exit. `headers` (the API key) go only to the first URL's origin."""
    first = origin(url)
    current = url
    guarded = isinstance(session.connector, GuardedConnector)
    extra: dict[str, Any] = {} if request_timeout is None else {"timeout": request_timeout}
    for _ in range(max_redirects + 1):
        if policy is not None:
            await policy.check(current, what)
        hop_headers = dict(headers or {}) if origin(current) == first else {}
        with guarding(policy, what):
            response = await session.get(current, headers=hop_headers, allow_redirects=False, **extra)
        try:
            if policy is not None and not guarded:
                check_response_peer(response, policy, what)
            location = response.headers.get("Location")
            target = None
            if response.status in REDIRECT_STATUSES and location:
                try:
                    target = str(response.url.join(URL(location)))
                except (ValueError, TypeError):
                    raise UpstreamError(f"the {what} link redirected to an invalid address") from None
        except BaseException:
            response.close()
            raise
        if target is not None:
            response.close()  # its body is not read, so the connection is not reused
            current = target
            continue
        try:
            yield response
        finally:
            response.release()
        return
    raise UpstreamError(f"the {what} link redirected more than {max_redirects} times")


__all__ = [
    "MAX_REDIRECTS",
    "GuardedConnector",
    "UrlPolicy",
    "UrlRefused",
    "check_response_peer",
    "guarding",
    "is_public",
    "open_url",
    "peer_address",
]
