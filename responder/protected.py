"""Protected assets: addresses no action may ever target, whatever the caller asks.

The check lives in the responder as well as in the master because the responder is the last component
before the kernel; a bug or a compromised master must not be able to quarantine the DNS server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize_ip(ip: IPAddress) -> IPAddress:
    """Fold IPv4-mapped IPv6 (``::ffff:10.0.0.1``) to IPv4 so it cannot slip past an IPv4 entry."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class ProtectedAssets:
    """A fixed set of CIDRs; ``contains`` answers whether an address falls in any of them."""

    def __init__(self, networks: Iterable[str]) -> None:
        nets: list[IPNetwork] = []
        for item in networks:
            net = ipaddress.ip_network(item, strict=False)
            if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None:
                # A mapped entry protects the IPv4 network it stands for.
                mapped = net.network_address.ipv4_mapped
                net = ipaddress.IPv4Network(f"{mapped}/{max(net.prefixlen - 96, 0)}", strict=False)
            nets.append(net)
        self._networks: tuple[IPNetwork, ...] = tuple(nets)

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        return self._networks

    def contains(self, ip: str | IPAddress) -> bool:
        """True when ``ip`` is protected. An unparsable address raises ``ValueError``."""
        addr = normalize_ip(ipaddress.ip_address(ip) if isinstance(ip, str) else ip)
        return any(addr.version == net.version and addr in net for net in self._networks)

    def __len__(self) -> int:
        return len(self._networks)
