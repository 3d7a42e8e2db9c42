"""WebSocket (RFC 6455) after an HTTP Upgrade -> WebSocketRecord / Zeek websocket.log; the frames' payload
goes on to the analyzer it belongs to (TLS inside wstunnel, say).

No port or heuristic of its own: HTTP hands a connection over once the server answers 101 to an upgrade
to "websocket" (``sensor.analyzers`` puts this factory in HTTP's upgrade table).
"""

from __future__ import annotations

from sensor.protocols.websocket.session import FindAnalyzer, WebSocketSession, upgrade_factory

__all__ = ["FindAnalyzer", "WebSocketSession", "upgrade_factory"]
