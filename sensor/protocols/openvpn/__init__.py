"""OpenVPN on any port, UDP or TCP: recognised by its control channel's opening, named in conn.log's
service once the server has acknowledged the client (the master's VPN models read it)."""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.openvpn.parser import looks_like_client_reset
from sensor.protocols.openvpn.session import OpenVpnSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("udp", "tcp")
PORTS: tuple[int, ...] = (1194,)


def heuristic(payload: bytes, is_orig: bool) -> bool:
    return is_orig and looks_like_client_reset(payload)


__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "OpenVpnSession", "heuristic"]
