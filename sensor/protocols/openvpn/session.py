"""OpenVPN per-connection state: the client's hard reset, then the server's acknowledging it; only that
exchange confirms the connection as OpenVPN (a lone first byte proves nothing)."""

from __future__ import annotations

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, HandshakeWatch
from sensor.protocols.openvpn import parser


class OpenVpnSession(HandshakeWatch):
    protocol = "openvpn"

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        super().__init__(ctx, emit, count_error)
        self._tcp = ctx.transport == "tcp"
        self._head = {True: b"", False: b""}  # TCP: each direction's first bytes, until a packet is whole
        self._client_reset: bytes | None = None

    def watch(self, is_orig: bool, payload: bytes) -> None:
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


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> OpenVpnSession:
    return OpenVpnSession(ctx, emit, count_error)
