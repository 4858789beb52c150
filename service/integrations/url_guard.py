"""Keeping webhook URLs out of the operator's network (SSRF).

A URL is resolved and every address it resolves to is checked: loopback, private (RFC 1918, unique local),
link-local (169.254/16 and fe80::/10, where cloud metadata services live), shared, multicast, reserved and
unspecified addresses are refused unless WEBHOOK_ALLOW_PRIVATE=1. It is checked when the job is made and
again at each delivery; the delivery then connects to the address that was checked (not to a second
lookup's), so a name that resolves elsewhere a moment later (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.errors import UnsafeDestination

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services that are not in a private or link-local range on some clouds.
_METADATA = frozenset({ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")})


@dataclass(frozen=True)
class Destination:
    """A checked URL: where to connect (`address`), and the name and port the request is for."""

    url: str
    scheme: str
    host: str
    port: int
    address: str


def is_internal(address: IpAddress) -> bool:
    """Whether an address is inside someone's network rather than on the public internet."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_internal(address.ipv4_mapped)
    return (address in _METADATA or address.is_loopback or address.is_private or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified
            or not address.is_global)


def parse(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; UnsafeDestination otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeDestination("webhook_url is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeDestination("webhook_url must be an http or https URL with a host")
    if parts.username or parts.password:
        raise UnsafeDestination("webhook_url must not carry a user name or password")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[IpAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=10)
    except (OSError, TimeoutError) as exc:
        raise UnsafeDestination(f"webhook_url's host {host!r} does not resolve", retryable=True) from exc
    found: list[IpAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise UnsafeDestination(f"webhook_url's host {host!r} does not resolve", retryable=True)
    return found


async def check(url: str, allow_private: bool) -> Destination:
    """The URL checked and pinned to one of its addresses; UnsafeDestination when it may not be used."""
    scheme, host, port = parse(url)
    addresses = await resolve(host, port)
    if not allow_private:
        internal = [str(a) for a in addresses if is_internal(a)]
        if internal:
            raise UnsafeDestination(f"webhook_url's host {host!r} resolves to an internal address "
                                    f"({internal[0]}): only public addresses are allowed")
    return Destination(url, scheme, host, port, str(addresses[0]))
