"""RDP per-connection state: X.224 request/confirm, then client core data when the setup is not encrypted."""

from __future__ import annotations

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, set_time
from sensor.protocols.rdp import parser
from vigil.flow.v1 import rdp_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "rdp"
MAX_BUFFER = 16 * 1024


class RdpSession:
    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._buf = {True: bytearray(), False: bytearray()}
        self._rec = rdp_pb2.RdpRecord(uid=ctx.uid)
        self._request_seen = False
        self._confirm_seen = False
        # With TLS/CredSSP selected the rest is encrypted: nothing more to read.
        self._encrypted = False
        self._core_seen = False
        self._written = False
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if self._done:
            return
        try:
            buf = self._buf[is_orig]
            buf += payload
            while not self._done:
                length = parser.tpkt_length(bytes(buf[:4]))
                if length is None or len(buf) < length:
                    if len(buf) > MAX_BUFFER:
                        raise ParseError(PROTOCOL, "frame_too_large")
                    return
                frame = bytes(buf[:length])
                del buf[:length]
                self._frame(is_orig, ts, frame)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            self._finish_reading()
        # A sensor must survive any input: an analyzer bug becomes a counted error, never a crash.
        except Exception:
            self._count_error(PROTOCOL, "internal_error")
            self._finish_reading()

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        self._finish_reading()

    def finish(self, ts: float) -> None:
        try:
            self._write()
        except Exception:  # see data()
            self._count_error(PROTOCOL, "internal_error")

    def _finish_reading(self) -> None:
        self._write()
        self._done = True

    def _frame(self, is_orig: bool, ts: float, frame: bytes) -> None:
        rec = self._rec
        if is_orig and not self._request_seen:
            req = parser.parse_connection_request(frame)
            self._request_seen = True
            set_time(rec.time, ts)
            rec.cookie = req.cookie
            if req.requested is not None:
                rec.requested_protocols.extend(parser.protocol_names(req.requested))
            return
        if not is_orig and self._request_seen and not self._confirm_seen:
            conf = parser.parse_connection_confirm(frame)
            self._confirm_seen = True
            if conf.failure is not None:
                rec.result = parser.FAILURE_CODES.get(conf.failure, f"UNKNOWN-{conf.failure}")
                self._finish_reading()
                return
            selected = conf.selected or 0
            rec.security_protocol = parser.selected_name(selected)
            if selected != 0:
                rec.result = "encrypted"
                self._encrypted = True
                self._finish_reading()
            return
        if is_orig and self._confirm_seen and not self._core_seen:
            core = parser.find_client_core(frame)
            if core is not None:
                self._core_seen = True
                rec.client_name = core.client_name
                rec.client_build = parser.CLIENT_BUILDS.get(core.client_build, str(core.client_build))
                rec.keyboard_layout = parser.KEYBOARD_LAYOUTS.get(
                    core.keyboard_layout, f"0x{core.keyboard_layout:08x}"
                )
                rec.result = "Success"
                self._finish_reading()

    def _write(self) -> None:
        if self._written or not self._request_seen:
            return
        self._written = True
        self._emit(sensor_pb2.Record(rdp=self._rec))


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> RdpSession:
    return RdpSession(ctx, emit, count_error)
