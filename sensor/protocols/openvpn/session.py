"""OpenVPN per-connection state: the client's hard reset, then the server's acknowledging it by session
id; only that exchange confirms the connection as OpenVPN (a lone first byte proves nothing)."""

from __future__ import annotations

from sensor.protocols.base import ConnContext, Emit, ErrorCounter
from sensor.protocols.openvpn import parser

PROTOCOL = "openvpn"
MAX_PACKETS = 16  # the server answers the hard reset at once; no answer by then is no OpenVPN


class OpenVpnSession:
    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._tcp = ctx.transport == "tcp"
        self._head = {True: b"", False: b""}  # TCP: each direction's first bytes, until a packet is whole
        self._client_reset: bytes | None = None
        self._confirmed = False
        self._seen = 0
        self._done = False

    @property
    def confirmed(self) -> bool:
        return self._confirmed

    @property
    def done(self) -> bool:
        return self._done

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        self._seen += 1
        if self._done or self._seen > MAX_PACKETS:
            self._done = True
            return
        data = payload
        if self._tcp:
            data = self._head[is_orig] + payload
            self._head[is_orig] = data[: 2 + parser.MAX_RESET]
        packet = parser.first_packet(data, self._tcp)
        if packet is None:
            return
        if is_orig and self._client_reset is None:
            if parser.client_session_id(packet) is None:
                self._done = True  # not an OpenVPN opening after all
            else:
                self._client_reset = packet
        elif not is_orig and self._client_reset is not None:
            self._confirmed = parser.acknowledges(packet, self._client_reset)
            self._done = True

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        self._done = True

    def finish(self, ts: float) -> None:
        pass


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> OpenVpnSession:
    return OpenVpnSession(ctx, emit, count_error)
