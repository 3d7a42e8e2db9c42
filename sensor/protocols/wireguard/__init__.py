"""WireGuard on any UDP port: the handshake initiation (type 1, 148 bytes) and the response that
names the initiator's sender index (type 2, 92 bytes) confirm it; the service is named then."""

from __future__ import annotations

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, HandshakeWatch, SessionFactory

PROTOCOL = "wireguard"
INITIATION = b"\x01\x00\x00\x00"
RESPONSE = b"\x02\x00\x00\x00"
INITIATION_SIZE = 148
RESPONSE_SIZE = 92
TRANSPORTS: tuple[str, ...] = ("udp",)
PORTS: tuple[int, ...] = (51820,)


def is_initiation(payload: bytes) -> bool:
    return len(payload) == INITIATION_SIZE and payload[:4] == INITIATION


class WireGuardSession(HandshakeWatch):
    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        super().__init__(ctx, emit, count_error)
        self._sender: bytes | None = None  # the initiator's sender index

    def watch(self, is_orig: bool, payload: bytes) -> None:
        if is_orig and is_initiation(payload):
            self._sender = payload[4:8]
        elif (
            not is_orig
            and self._sender is not None
            and len(payload) == RESPONSE_SIZE
            and payload[:4] == RESPONSE
            and payload[8:12] == self._sender  # the response's receiver index
        ):
            self._confirmed = True
            self._done = True

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        pass  # datagrams: there are no gaps


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> WireGuardSession:
    return WireGuardSession(ctx, emit, count_error)


FACTORY: SessionFactory = new_session


def heuristic(payload: bytes, is_orig: bool) -> bool:
    return is_orig and is_initiation(payload)


__all__ = ["FACTORY", "PORTS", "TRANSPORTS", "WireGuardSession", "heuristic"]
