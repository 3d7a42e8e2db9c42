"""DTLS over UDP (VPN clients on 443, WebRTC, IoT) -> the TLS handshake -> TlsRecord / Zeek ssl.log."""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.dtls.parser import looks_like_client_hello
from sensor.protocols.dtls.session import DtlsSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("udp",)
# Found by its first flight on any port; 443 (Zeek's DTLS port) marks the server of a mid-flow start.
SERVER_PORTS: tuple[int, ...] = (443,)


def heuristic(payload: bytes, is_orig: bool) -> bool:
    """Registry heuristic: a client's first DTLS flight (an epoch-0 ClientHello), on any port."""
    return is_orig and looks_like_client_hello(payload)


__all__ = ["FACTORY", "SERVER_PORTS", "TRANSPORTS", "DtlsSession", "heuristic"]
