"""RDP connection setup over TCP -> RdpRecord / Zeek rdp.log."""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.rdp.session import RdpSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp",)
PORTS: tuple[int, ...] = (3389,)

__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "RdpSession"]
