"""What HTTP hands to the protocol a connection switches to (RFC 9110 section 7.8, Upgrade + 101).

The HTTP analyzer is given a table of protocols it may hand a connection over to, by the token of the
server's ``Upgrade`` header (``sensor.analyzers`` builds it); once the server answers 101 with one of
them, the connection's bytes after the two heads belong to that protocol's session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, Session
from vigil.flow.v1 import http_pb2

# Header fields of one message head, names lower-cased (parser.split_head).
Fields = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The exchange that switched protocols."""

    # When the request was seen.
    ts: float
    # The exchange as HTTP logs it (host, decoded uri, user agent, 101).
    request: http_pb2.HttpRecord
    request_fields: Fields
    response_fields: Fields

    def request_values(self, name: str) -> list[str]:
        return values(self.request_fields, name)

    def response_values(self, name: str) -> list[str]:
        return values(self.response_fields, name)


# Builds the session of the protocol switched to, from the connection and the exchange that switched.
UpgradeFactory = Callable[[ConnContext, Emit, ErrorCounter, Upgrade], Session]


def values(fields: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Every value of the header ``name`` (lower case), in order."""
    return [value for field, value in fields if field == name]


def protocol_token(value: str) -> str:
    """The protocol an ``Upgrade`` value names first, lower-cased, without its version:
    ``"WebSocket"`` -> ``"websocket"``, ``"h2c, websocket"`` -> ``"h2c"``, ``"IRC/6.9"`` -> ``"irc"``."""
    return value.split(",", 1)[0].split("/", 1)[0].strip().lower()
