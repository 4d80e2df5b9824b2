"""Cluster addresses: the listen address, what a node advertises, and peer addresses.

A listen address is a TCP multiaddr (``/ip4/0.0.0.0/tcp/7000``, ``/ip6/::/tcp/7000``) or the
shorthand ``HOST:PORT``. A wildcard listen address is never advertised as such (peers would dial
themselves): it is expanded to this host's interface addresses, loopback only when there is
nothing else. A peer address is an ``/ip4``, ``/ip6``, ``/dns4``, ``/dns6`` or ``/dns`` TCP
multiaddr, optionally ending in ``/p2p/<peer id>``; without one, the id is learned in the Noise
handshake. Nothing here imports libp2p.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .errors import AddressError

_PEER_ID = re.compile(r"[1-9A-HJ-NP-Za-km-z]{40,64}")
_HOST_PORT = re.compile(r"\[?(?P<host>[^\[\]\s/]+?)\]?:(?P<port>[0-9]{1,5})")
_DNS_NAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+")


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """Where to dial a peer: an IP or a DNS name that may resolve to several hosts."""

    protocol: str  # ip4, ip6, dns4, dns6, dns
    host: str
    port: int
    peer_id: str | None = None

    @property
    def is_dns(self) -> bool:
        return self.protocol.startswith("dns")

    def multiaddr(self, with_peer_id: bool = True) -> str:
        text = f"/{self.protocol}/{self.host}/tcp/{self.port}"
        if with_peer_id and self.peer_id:
            text += f"/p2p/{self.peer_id}"
        return text

    def __str__(self) -> str:
        return self.multiaddr()


def _port(text: str, where: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise AddressError(f"{where}: invalid TCP port {text!r}")
    return int(text)


def _ip(text: str, version: int, where: str) -> str:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise AddressError(f"{where}: {text!r} is not an IPv{version} address") from None
    if addr.version != version:
        raise AddressError(f"{where}: {text!r} is not an IPv{version} address")
    return str(addr)


def parse_listen_address(text: str) -> PeerAddress:
    """A listen address (multiaddr or HOST:PORT) as an ip4/ip6 TCP address."""
    where = f"cluster address {text!r}"
    text = text.strip()
    if not text.startswith("/"):
        match = _HOST_PORT.fullmatch(text)
        if match is None:
            raise AddressError(
                f"{where}: expected a multiaddr like /ip4/0.0.0.0/tcp/7000 or HOST:PORT"
            )
        host, port = match["host"], _port(match["port"], where)
        version = 6 if ":" in host else 4
        return PeerAddress(f"ip{version}", _ip(host, version, where), port)
    address = parse_peer_address(text, where)
    if address.is_dns or address.peer_id is not None:
        raise AddressError(f"{where}: listen on an /ip4 or /ip6 TCP address, without /p2p")
    return address


def parse_peer_address(text: str, where: str | None = None) -> PeerAddress:
    where = where or f"peer address {text!r}"
    parts = text.strip().split("/")
    if len(parts) not in (5, 7) or parts[0] != "" or parts[3] != "tcp":
        raise AddressError(
            f"{where}: expected /ip4/<ip>/tcp/<port>[/p2p/<peer id>] or /dns4/<name>/tcp/<port>"
        )
    protocol, host, port = parts[1], parts[2], _port(parts[4], where)
    if protocol in ("ip4", "ip6"):
        host = _ip(host, int(protocol[-1]), where)
    elif protocol in ("dns", "dns4", "dns6"):
        if not _DNS_NAME.fullmatch(host):
            raise AddressError(f"{where}: {host!r} is not a DNS name")
    else:
        raise AddressError(f"{where}: unsupported protocol /{protocol} (use ip4, ip6, dns4, dns6)")
    peer_id = None
    if len(parts) == 7:
        if parts[5] != "p2p" or not _PEER_ID.fullmatch(parts[6]):
            raise AddressError(f"{where}: expected /p2p/<peer id> after the port")
        peer_id = parts[6]
    return PeerAddress(protocol, host, port, peer_id)


def is_wildcard(address: PeerAddress) -> bool:
    return not address.is_dns and ipaddress.ip_address(address.host).is_unspecified


def interface_addresses(version: int) -> list[str]:
    """This host's IP addresses of one version, non-loopback first."""
    import ifaddr  # a zeroconf dependency; imported only by a cluster node

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            raw = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                addr = ipaddress.ip_address(raw)
            except ValueError:
                continue
            if addr.version == version and not addr.is_link_local:
                found.append(addr)
    found.sort(key=lambda a: (a.is_loopback, a.packed))
    return [str(a) for a in dict.fromkeys(found)]


def advertised_addresses(listen: PeerAddress, port: int) -> list[str]:
    """The multiaddrs peers can dial this node at, for a listen address and its bound port."""
    if not is_wildcard(listen):
        return [PeerAddress(listen.protocol, listen.host, port).multiaddr()]
    version = int(listen.protocol[-1])
    ips = interface_addresses(version)
    routable = [ip for ip in ips if not ipaddress.ip_address(ip).is_loopback]
    return [PeerAddress(listen.protocol, ip, port).multiaddr() for ip in (routable or ips)]
