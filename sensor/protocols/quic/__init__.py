"""QUIC version 1 over UDP -> the TLS handshake inside its Initial packets -> TlsRecord / Zeek ssl.log."""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.quic.parser import looks_like_client_initial
from sensor.protocols.quic.session import QuicSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("udp",)
# Found by its first flight on any port; 443 marks the server of a connection joined mid-flow.
SERVER_PORTS: tuple[int, ...] = (443,)


def heuristic(payload: bytes, is_orig: bool) -> bool:
    """Registry heuristic: a client's padded version 1 Initial, on any port."""
    return is_orig and looks_like_client_initial(payload)


__all__ = ["FACTORY", "SERVER_PORTS", "TRANSPORTS", "QuicSession", "heuristic"]
