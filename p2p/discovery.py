"""Finding peers without knowing their keys: mDNS on the LAN, and DNS names that list hosts.

mDNS uses python-zeroconf directly (not py-libp2p's mDNS, which advertises ``0.0.0.0`` for a
wildcard listen address, calls back on a foreign thread into a process-global singleton and has
no "peer left" event). Each node registers ``<peer id>._sierradb._tcp.local.`` with TXT records
naming its cluster, its peer id and its advertised multiaddrs, and browses for the others.
Zeroconf runs its own threads; what it finds is kept under a lock and the trio side is woken
through its token, so nothing blocks the event loop and no event is lost to a full queue.
Services of other clusters are ignored here (the handshake would refuse them anyway).

DNS names (``/dns4/tasks.sierradb/tcp/7000``, as Docker swarm's ``tasks.<service>`` gives one
address per running task) are resolved to every address they hold, in a worker thread; the
runtime re-resolves them periodically, since tasks come and go.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import trio

from .addresses import PeerAddress, parse_peer_address
from .errors import AddressError

log = logging.getLogger("sierradb.p2p")

SERVICE_TYPE = "_sierradb._tcp.local."
# One TXT value holds at most 255 bytes, so each multiaddr gets a key of its own.
MAX_ADVERTISED_ADDRESSES = 16
# How long one service lookup (after the browser saw a name) may take.
MDNS_LOOKUP_TIMEOUT_MS = 3000


class MdnsDiscovery:
    def __init__(
        self, cluster_name: str, peer_id: str, addresses: list[str], port: int, on_found: Callable
    ) -> None:
        self.cluster_name = cluster_name
        self.peer_id = peer_id
        self.addresses = addresses[:MAX_ADVERTISED_ADDRESSES]
        self.port = port
        self._on_found = on_found  # called on a zeroconf thread; must be thread-safe
        self._lock = threading.Lock()
        self._found: dict[str, tuple[str, ...]] = {}
        # zeroconf is imported where mDNS starts (a single node never loads it).
        self._zc: Any = None
        self._browser: Any = None
        self._info: Any = None

    def start(self) -> None:
        """Blocking (run it in a worker thread): announce this node and browse for others."""
        from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, Zeroconf

        properties = {"cluster": self.cluster_name, "peer": self.peer_id}
        properties |= {f"addr{i}": a for i, a in enumerate(self.addresses)}
        hosts = [parse_peer_address(a).host for a in self.addresses]
        self._info = ServiceInfo(
            SERVICE_TYPE,
            f"{self.peer_id}.{SERVICE_TYPE}",
            port=self.port,
            properties=properties,
            parsed_addresses=hosts,
            server=f"{self.peer_id[-16:].lower()}.local.",
        )
        self._zc = Zeroconf(ip_version=IPVersion.V4Only)
        self._zc.register_service(self._info)
        self._browser = ServiceBrowser(self._zc, SERVICE_TYPE, handlers=[self._on_change])

    def close(self) -> None:
        """Blocking: withdraw the announcement (peers see it go) and stop browsing."""
        if self._browser is not None:
            self._browser.cancel()
        if self._zc is not None:
            if self._info is not None:
                self._zc.unregister_service(self._info)
            self._zc.close()

    def found(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            return dict(self._found)

    def _on_change(self, zeroconf, service_type: str, name: str, state_change) -> None:  # type: ignore[no-untyped-def]
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            with self._lock:
                self._found = {p: a for p, a in self._found.items() if not name.startswith(p)}
            return
        info = zeroconf.get_service_info(service_type, name, timeout=MDNS_LOOKUP_TIMEOUT_MS)
        if info is None:
            return
        props = {
            k.decode(errors="replace"): (v or b"").decode(errors="replace")
            for k, v in info.properties.items()
        }
        peer_id = props.get("peer", "")
        if props.get("cluster") != self.cluster_name or not peer_id or peer_id == self.peer_id:
            return
        addresses = []
        for key in sorted(k for k in props if k.startswith("addr")):
            try:
                address = parse_peer_address(props[key])
            except AddressError:
                continue
            addresses.append(PeerAddress(address.protocol, address.host, address.port, peer_id))
        if addresses:
            with self._lock:
                self._found[peer_id] = tuple(a.multiaddr() for a in addresses)
            self._on_found()


async def resolve(address: PeerAddress) -> list[PeerAddress]:
    """Every IP address a DNS name holds, as dialable addresses (empty if it holds none)."""
    family = {
        "dns4": socket.AF_INET,
        "dns6": socket.AF_INET6,
        "dns": socket.AF_UNSPEC,
    }[address.protocol]
    try:
        infos = await trio.socket.getaddrinfo(
            address.host, address.port, family=family, type=socket.SOCK_STREAM
        )
    except OSError as e:
        log.debug("resolving %s: %s", address.host, e)
        return []
    found = []
    for fam, _, _, _, sockaddr in infos:
        protocol = "ip4" if fam == socket.AF_INET else "ip6"
        found.append(PeerAddress(protocol, str(sockaddr[0]), address.port, address.peer_id))
    return list(dict.fromkeys(found))
