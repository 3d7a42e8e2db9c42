"""DNS (and mDNS, LLMNR: same wire format) over UDP and TCP -> DnsRecord / Zeek dns.log."""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.dns.session import DnsSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("udp", "tcp")
# 53 DNS (both transports), 5353 mDNS, 5355 LLMNR; the flow table applies each port to both transports.
PORTS: tuple[int, ...] = (53, 5353, 5355)

__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "DnsSession"]
