"""SMTP over TCP -> SmtpRecord / Zeek smtp.log, with the AUTH mechanism, user name and outcome, and the
size of each message. STARTTLS hands the connection to the TLS analyzer.

Port 465 (SMTP inside TLS from the first byte) stays the TLS analyzer's: nothing of SMTP shows there.
"""

from __future__ import annotations

from sensor.protocols.base import SessionFactory
from sensor.protocols.smtp.parser import looks_like_greeting, looks_like_hello
from sensor.protocols.smtp.session import SmtpSession, new_session

FACTORY: SessionFactory = new_session
TRANSPORTS: tuple[str, ...] = ("tcp",)
# 25 relay, 587 submission (RFC 6409), as Zeek registers it; other ports are found by the heuristic.
PORTS: tuple[int, ...] = (25, 587)


def heuristic(payload: bytes, is_orig: bool) -> bool:
    """Registry heuristic, on any port: a server's 220 greeting naming (E)SMTP, or a client's EHLO/HELO."""
    return looks_like_hello(payload) if is_orig else looks_like_greeting(payload)


__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "SmtpSession", "heuristic"]
