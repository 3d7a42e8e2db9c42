"""HTTP/1.x over TCP -> HttpRecord / Zeek http.log (NTLM in auth headers goes to the NTLM analyzer).

``FACTORY`` reads HTTP alone; :func:`session_factory` builds sessions that also hand a connection over
after a 101 (the analyzer table gives them WebSocket).
"""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.http import sqli
from sensor.protocols.http.parser import looks_like
from sensor.protocols.http.session import HttpSession, new_session, session_factory
from sensor.protocols.http.upgrade import Upgrade, UpgradeFactory

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp",)
PORTS: tuple[int, ...] = (80, 8080, 8000, 3128)


def heuristic(payload: bytes, is_orig: bool) -> bool:
    """Registry heuristic: a client's first bytes that form an HTTP request line, on any port."""
    return is_orig and looks_like(payload)


__all__ = [
    "FACTORY", "PORTS", "TRANSPORTS", "HttpSession", "Upgrade", "UpgradeFactory", "heuristic", "looks_like",
    "session_factory", "sqli",
]  # fmt: skip
