"""TLS over TCP -> TlsRecord / Zeek ssl.log with JA3, JA3S and JA4 fingerprints."""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.tls.parser import looks_like_client_hello
from sensor.protocols.tls.session import TlsSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp",)
PORTS: tuple[int, ...] = (443, 993, 995, 465, 636, 853, 8443)


def heuristic(payload: bytes, is_orig: bool) -> bool:
    """Registry heuristic: a client's first bytes that form a TLS ClientHello record, on any port."""
    return is_orig and looks_like_client_hello(payload)


__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "TlsSession", "heuristic", "looks_like_client_hello"]
