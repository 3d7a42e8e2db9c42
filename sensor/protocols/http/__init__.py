"""HTTP/1.x over TCP -> HttpRecord / Zeek http.log (NTLM in auth headers goes to the NTLM analyzer)."""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.http.parser import looks_like
from sensor.protocols.http.session import HttpSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp",)
PORTS: tuple[int, ...] = (80, 8080, 8000, 3128)


def heuristic(payload: bytes, is_orig: bool) -> bool:
    """Registry heuristic: a client's first bytes that form an HTTP request line, on any port."""
    return is_orig and looks_like(payload)


__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "HttpSession", "heuristic", "looks_like"]
