"""WebSocket per-connection state, from the 101 that switched the connection: one WebSocketRecord for
the handshake, then each direction's frames read and their data payload handed on.

The payload of the data frames (text, binary and their continuations; control frames are the
WebSocket's own) is one byte stream per direction, like TCP's. The first message of a direction is
shown to the payload heuristics of the analyzer table (Zeek finds the protocol inside the same way);
the analyzer that recognises it gets both streams from then on, so a TLS session inside a WebSocket
tunnel writes its ssl record as it would over TCP. A payload no analyzer recognises ends the reading.

Frames are streamed: a frame's payload is unmasked and handed on as its bytes arrive, so memory stays
bounded whatever length a header claims; only a header (at most 14 bytes), a control frame's payload (at
most 125) and the first bytes of a direction's first message (PROBE_BYTES) are ever held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sensor.protocols.base import (
    ConnContext,
    Emit,
    ErrorCounter,
    ParseError,
    Session,
    SessionFactory,
    set_time,
)
from sensor.protocols.http.upgrade import Upgrade
from sensor.protocols.websocket import parser
from vigil.flow.v1 import websocket_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "websocket"
# How much of a direction's first message the payload heuristics see (they read a few bytes of a hello;
# a message shorter than this is shown whole once it ends).
PROBE_BYTES = 4096

# (payload, is_orig) -> (analyzer name, its session factory) of the analyzer the payload belongs to.
FindAnalyzer = Callable[[bytes, bool], tuple[str, SessionFactory] | None]


@dataclass(slots=True)
class _Direction:
    """Frame-reading state of one direction."""

    buf: bytearray = field(default_factory=bytearray)
    # The frame whose payload is being read, and how many of its payload bytes are still to come.
    head: parser.FrameHeader | None = None
    left: int = 0
    # Payload bytes of the current frame already read (the mask key turns with them).
    at: int = 0
    # A data message whose last frame has not come yet.
    in_message: bool = False
    # The current message is compressed (RSV1 under permessage-deflate): its bytes are not handed on.
    compressed: bool = False
    control: bytearray = field(default_factory=bytearray)
    closed: bool = False
    dead: bool = False
    # The direction's first message, while no analyzer has been chosen; None once it was shown.
    probe: bytearray | None = field(default_factory=bytearray)
    # A masking fault was counted already (once per direction is enough to say the peer does it).
    mask_noted: bool = False


def handshake_record(ctx: ConnContext, upgrade: Upgrade) -> websocket_pb2.WebSocketRecord:
    """The websocket.log row of the exchange: what the request asked for and what the server chose."""
    req = upgrade.request
    rec = websocket_pb2.WebSocketRecord(uid=ctx.uid, host=req.host, uri=req.uri, user_agent=req.user_agent)
    set_time(rec.time, upgrade.ts)
    chosen = upgrade.response_values("sec-websocket-protocol")
    rec.subprotocol = chosen[0] if chosen else ""
    rec.client_protocols.extend(parser.split_list(upgrade.request_values("sec-websocket-protocol")))
    rec.client_extensions.extend(parser.split_list(upgrade.request_values("sec-websocket-extensions")))
    rec.server_extensions.extend(parser.split_list(upgrade.response_values("sec-websocket-extensions")))
    keys, accepts = (
        upgrade.request_values("sec-websocket-key"),
        upgrade.response_values("sec-websocket-accept"),
    )
    rec.accept_valid = (
        len(keys) == 1 and len(accepts) == 1 and parser.accept_for(keys[0]) == accepts[0].strip()
    )
    return rec


class WebSocketSession:
    protocol = PROTOCOL

    def __init__(
        self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter, upgrade: Upgrade, find: FindAnalyzer
    ) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._find = find
        self._dirs = {True: _Direction(), False: _Direction()}
        rec = handshake_record(ctx, upgrade)
        # Extensions may give the RSV bits a meaning (section 5.2); without one, a set bit is a fault.
        self._extensions = bool(rec.server_extensions)
        self._deflate = any(
            e.split(";", 1)[0].strip().lower() == "permessage-deflate" for e in rec.server_extensions
        )
        self._inner: Session | None = None
        self._inner_name = ""
        # Nothing more to hand on: no analyzer took the payload, or it is compressed.
        self._given_up = False
        emit(sensor_pb2.Record(websocket=rec))

    @property
    def done(self) -> bool:
        if self._given_up or all(d.dead or d.closed for d in self._dirs.values()):
            return True
        return self._inner is not None and self._inner.done

    @property
    def inner_services(self) -> tuple[str, ...]:
        inner = self._inner
        if inner is None or not getattr(inner, "confirmed", True):
            return ()
        return (self._inner_name, *getattr(inner, "inner_services", ()))

    # -- Session interface -------------------------------------------------------------------------------

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        d = self._dirs[is_orig]
        if d.dead or self._given_up:
            return
        try:
            d.buf += payload
            self._frames(is_orig, ts, d)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            self._kill(d)
        # A sensor must survive any input: an analyzer bug becomes a counted error, never a crash.
        except Exception:
            self._count_error(PROTOCOL, "internal_error")
            self._kill(d)

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        # Frame boundaries are lost in this direction; the analyzer inside loses its stream as well.
        self._kill(self._dirs[is_orig])
        if self._inner is not None:
            self._inner.gap(is_orig, ts, length)

    def finish(self, ts: float) -> None:
        if self._inner is not None:
            self._inner.finish(ts)

    # -- frames -------------------------------------------------------------------------------------------

    def _kill(self, d: _Direction) -> None:
        d.dead = True
        d.buf.clear()
        d.control.clear()
        d.probe = None

    def _frames(self, is_orig: bool, ts: float, d: _Direction) -> None:
        while d.buf and not d.dead and not self._given_up:
            head = d.head
            if head is None:
                if d.closed:
                    raise ParseError(PROTOCOL, "data_after_close")
                head = parser.frame_header(d.buf)
                if head is None:
                    return
                del d.buf[: head.size]
                self._start_frame(is_orig, d, head)
                if head.length == 0:
                    self._end_frame(is_orig, ts, d)
                continue
            take = min(d.left, len(d.buf))
            wanted = head.is_control or self._inner is not None or d.probe is not None
            if wanted:
                chunk = bytes(d.buf[:take])
                if head.mask is not None:
                    chunk = parser.unmask(chunk, head.mask, d.at)
                if head.is_control:
                    d.control += chunk
                else:
                    self._payload(is_orig, ts, d, chunk)
            del d.buf[:take]
            d.at += take
            d.left -= take
            if d.left == 0:
                self._end_frame(is_orig, ts, d)

    def _start_frame(self, is_orig: bool, d: _Direction, head: parser.FrameHeader) -> None:
        if head.rsv and not self._extensions:
            raise ParseError(PROTOCOL, "reserved_bits")
        if (head.mask is None) == is_orig and not d.mask_noted:
            # Clients must mask every frame and servers none (section 5.1); read the frame all the same.
            d.mask_noted = True
            self._count_error(PROTOCOL, "unmasked_client_frame" if is_orig else "masked_server_frame")
        if head.opcode == parser.OP_CONTINUATION:
            if not d.in_message:
                raise ParseError(PROTOCOL, "orphan_continuation")
        elif not head.is_control:
            if d.in_message:
                raise ParseError(PROTOCOL, "interrupted_message")
            d.in_message = True
            d.compressed = self._deflate and bool(head.rsv & parser.RSV1)
            if d.compressed:
                # Inflating what an attacker sends is a cost this sensor does not take on; what such a
                # message carries stays unread, and so does what follows it.
                self._given_up = True
        d.head, d.left, d.at = head, head.length, 0

    def _end_frame(self, is_orig: bool, ts: float, d: _Direction) -> None:
        head = d.head
        assert head is not None
        d.head = None
        if head.is_control:
            if head.opcode == parser.OP_CLOSE:
                d.closed = True
            d.control.clear()
        elif head.fin:
            d.in_message = False
            if d.probe is not None and self._inner is None:
                self._choose(is_orig, ts, d)

    # -- the protocol inside ----------------------------------------------------------------------------

    def _payload(self, is_orig: bool, ts: float, d: _Direction, chunk: bytes) -> None:
        if self._inner is not None:
            self._inner.data(is_orig, ts, chunk)
        elif d.probe is not None:
            d.probe += chunk[: PROBE_BYTES - len(d.probe)]
            if len(d.probe) >= PROBE_BYTES:
                self._choose(is_orig, ts, d)

    def _choose(self, is_orig: bool, ts: float, d: _Direction) -> None:
        """The direction's first message (or its first PROBE_BYTES) decides which analyzer reads on."""
        probe = bytes(d.probe or b"")
        d.probe = None
        found = self._find(probe, is_orig) if probe else None
        if found is None:
            # Neither direction's first message was anything known: stop reading.
            if all(x.probe is None for x in self._dirs.values()):
                self._given_up = True
            return
        name, factory = found
        inner = factory(self._ctx, self._emit, self._count_error)
        self._inner, self._inner_name = inner, name
        inner.data(is_orig, ts, probe)
        if getattr(inner, "rejected", False):
            self._inner, self._inner_name, self._given_up = None, "", True
            return
        other = self._dirs[not is_orig]
        if other.probe:
            # The other direction's first message had begun: it belongs to the same analyzer.
            inner.data(not is_orig, ts, bytes(other.probe))
        other.probe = None


def upgrade_factory(find: FindAnalyzer) -> Callable[[ConnContext, Emit, ErrorCounter, Upgrade], Session]:
    """The session factory HTTP calls after a 101 to "websocket"; ``find`` names the analyzer of the
    frames' payload."""

    def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter, upgrade: Upgrade) -> Session:
        return WebSocketSession(ctx, emit, count_error, upgrade, find)

    return new_session
