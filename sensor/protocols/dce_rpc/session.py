"""DCE-RPC calls -> DceRpcRecord (Zeek dce_rpc.log), over TCP and over SMB named pipes.

A *channel* is one DCE-RPC association's byte streams: a TCP connection, or one named pipe of an SMB
connection (several pipes share one SMB connection, each with its own contexts and calls, as Zeek keeps
them per file id). Per channel:

* binds and alter-contexts map presentation context ids to interfaces (DCOM calls carry an object UUID,
  the interface is still the one bound to the context id);
* the bind_ack's secondary address names the channel (``named_pipe``: "135", "\\PIPE\\lsass");
* a request's last fragment opens a call, the answer's last fragment (response or fault, same call id)
  closes it and writes one record with the time between them; requests never answered are written,
  without rtt, when the channel ends.

PDUs are framed by their fragment length. Requests and responses are read for their header only and the
rest of them is skipped as it arrives, never buffered; binds and their answers (small) are read whole,
since their auth verifier (NTLM, carried to an :class:`NtlmTracker` on TCP) sits at their end.
"""

from __future__ import annotations

from dataclasses import dataclass

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, Session, set_time
from sensor.protocols.dce_rpc import arguments, names, parser
from sensor.protocols.kerberos.session import RPC_C_AUTHN_GSS_KERBEROS, GssApTracker
from sensor.protocols.ntlm.session import NtlmTracker
from vigil.flow.v1 import dce_rpc_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "dce_rpc"
# Bytes of a request/response/fault kept: the header, the call header, a DCOM object UUID and the stub's
# leading arguments that the models read (sensor/protocols/dce_rpc/arguments.py).
CALL_PREFIX = 40 + arguments.STUB_BYTES
# Control PDUs (bind & co.) larger than this are not read (a real one is a few hundred bytes).
MAX_CONTROL_PDU = 16 * 1024
MAX_CONTEXTS = 256
MAX_PENDING_CALLS = 1024
MAX_PIPES = 256

_CALL = frozenset({parser.REQUEST, parser.RESPONSE, parser.FAULT})


class PduStream:
    """One direction of a channel: bytes in, PDUs (or their leading part) out.

    A call PDU (request, response, fault) is handed out when its last byte arrives, as Zeek times calls
    from complete PDUs, but only its leading ``CALL_PREFIX`` bytes are kept meanwhile.

    After lost bytes (a TCP gap, an SMB read we saw only part of) fragment boundaries are unknown; the
    stream waits for a later chunk that starts with a plausible header, since PDUs usually start a TCP
    segment and always start a pipe message.
    """

    __slots__ = ("_buf", "_count_error", "_held", "_lost", "_skip")

    def __init__(self, count_error: ErrorCounter) -> None:
        self._buf = bytearray()
        self._skip = 0
        # The kept prefix of a call PDU whose remaining ``_skip`` bytes are still to come.
        self._held = b""
        self._lost = False
        self._count_error = count_error

    def feed(self, data: bytes | memoryview) -> list[bytes]:
        view = memoryview(data)
        out: list[bytes] = []
        if self._skip:
            take = min(self._skip, len(view))
            self._skip -= take
            view = view[take:]
            if not self._skip and self._held:
                out.append(self._held)
                self._held = b""
        if not view:
            return out
        if self._lost:
            if not parser.looks_like_pdu(bytes(view[: parser.HEADER_SIZE])):
                return out
            self._lost = False
        buf = self._buf
        buf += view
        while len(buf) >= parser.HEADER_SIZE:
            try:
                header = parser.parse_header(bytes(buf[: parser.HEADER_SIZE]))
            except ParseError as exc:
                self._count_error(PROTOCOL, exc.reason)
                self.lose()
                return out
            length = header.frag_length
            kept = b""
            if header.ptype in _CALL:
                if len(buf) < min(length, CALL_PREFIX):
                    break
                kept = bytes(buf[: min(length, CALL_PREFIX)])
            elif length > MAX_CONTROL_PDU:
                self._count_error(PROTOCOL, "oversized_pdu")
            else:
                if len(buf) < length:
                    break
                kept = bytes(buf[:length])
            held = min(length, len(buf))
            del buf[:held]
            self._skip = length - held
            if self._skip:
                self._held = kept
                break
            if kept:
                out.append(kept)
        return out

    def lose(self) -> None:
        """Bytes of this direction went missing: drop what is held and wait for a PDU start."""
        self._buf.clear()
        self._skip = 0
        self._held = b""
        self._lost = True

    def missing(self, length: int) -> None:
        """``length`` bytes were not seen; inside a PDU being skipped they cost nothing."""
        if self._skip and not self._buf and length <= self._skip:
            self._skip -= length
            return
        self.lose()


@dataclass(slots=True)
class _Call:
    ts: float
    interface: str
    opnum: int
    # The request came from the connection's responder: the capture began after the connection did and
    # the flow table oriented it by the first packet it saw (the caller is what the master blames).
    flipped: bool = False
    # The relative id a SAMR call concerns: named by an open call, or the one its handle was opened for.
    rid: int | None = None
    # An open call: its answer carries the handle of ``rid``.
    opens: bool = False
    # The request named a DCOM object (an ORPC call on an interface pointer).
    dcom: bool = False


class Channel:
    """Contexts and calls of one DCE-RPC association; emits one record per call."""

    def __init__(
        self,
        ctx: ConnContext,
        emit: Emit,
        count_error: ErrorCounter,
        transport: str,
        pipe: str = "",
        ntlm: NtlmTracker | None = None,
        kerberos: GssApTracker | None = None,
    ) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._transport = transport
        self._pipe = pipe
        self._ntlm = ntlm
        # Kerberos AP exchanges in the auth verifiers (SPNEGO, or bare Kerberos: RPC_C_AUTHN_GSS_KERBEROS).
        self._kerberos = kerberos
        self._sec_addr = ""
        self._contexts: dict[int, str] = {}
        self._calls: dict[int, _Call] = {}
        # Answers whose request was not seen yet, by call id: (time, fault status). The two directions
        # are separate streams, and after lost bytes one of them may be delivered late (the reassembler
        # holds what follows a hole), so an answer can come before its request.
        self._early: dict[int, tuple[float, int | None]] = {}
        self._handles = arguments.SamrHandles()

    def pdu(self, ts: float, raw: bytes, from_orig: bool = True) -> None:
        try:
            pdu = parser.parse_pdu(raw)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            return
        h, body = pdu.header, pdu.body
        if isinstance(body, parser.Request):
            if h.last_frag:
                self._request(ts, h.call_id, body, not from_orig, h.little_endian)
        elif isinstance(body, parser.Response):
            if h.first_frag:
                self._opened(h.call_id, body.stub_head, h.little_endian)
            if h.last_frag:
                self._answer(ts, h.call_id, None)
        elif isinstance(body, parser.Fault):
            self._answer(ts, h.call_id, body.status)
        elif isinstance(body, parser.Bind):
            for item in body.contexts:
                if item.context_id in self._contexts or len(self._contexts) < MAX_CONTEXTS:
                    self._contexts[item.context_id] = item.interface
        elif isinstance(body, parser.BindAck) and h.ptype == parser.BIND_ACK and body.sec_addr:
            self._sec_addr = body.sec_addr
        if self._ntlm is not None:
            self._authentication(ts, pdu)

    def _authentication(self, ts: float, pdu: parser.Pdu) -> None:
        ntlm = self._ntlm
        assert ntlm is not None
        ptype = pdu.header.ptype
        if ptype == parser.BIND_NAK:
            ntlm.outcome(ts, False, 0)
            return
        auth = pdu.auth
        kerberos_auth = (parser.AUTHN_GSS_NEGOTIATE, RPC_C_AUTHN_GSS_KERBEROS)
        if self._kerberos is not None and auth is not None and auth.auth_type in kerberos_auth:
            if ptype in (parser.BIND, parser.ALTER_CONTEXT, parser.AUTH3):
                self._kerberos.client_token(ts, auth.token)
            elif ptype in (parser.BIND_ACK, parser.ALTER_CONTEXT_RESP):
                self._kerberos.server_token(ts, auth.token)
        if auth is None or auth.auth_type not in (parser.AUTHN_GSS_NEGOTIATE, parser.AUTHN_WINNT):
            return
        if ptype in (parser.BIND, parser.ALTER_CONTEXT, parser.AUTH3):
            ntlm.client_token(ts, auth.token)
        elif ptype in (parser.BIND_ACK, parser.ALTER_CONTEXT_RESP):
            ntlm.server_token(ts, auth.token)

    def _interface(self, context_id: int) -> str:
        found = self._contexts.get(context_id)
        if found is not None:
            return found
        # The capture missed the bind: a pipe that carries one interface still names it.
        return names.pipe_interface(self._pipe) if self._pipe else ""

    def _request(
        self, ts: float, call_id: int, req: parser.Request, flipped: bool, little_endian: bool
    ) -> None:
        interface = self._interface(req.context_id)
        if not interface:
            self._count_error(PROTOCOL, "unknown_context")
            if not req.object_uuid:
                return
            # A DCOM call whose bind the capture missed is still a call on another host's object; it is
            # written unnamed (Zeek's log has no row for it: zeek.py leaves it out).
        call = _Call(ts, interface, req.opnum, flipped, dcom=bool(req.object_uuid))
        call.rid = arguments.opened_rid(interface, req.opnum, req.stub_head, little_endian)
        if call.rid is not None:
            call.opens = True
        else:
            call.rid = self._handles.rid_of(interface, req.stub_head)
        earlier = self._calls.pop(call_id, None)
        if earlier is not None:
            self._write(earlier, None, None)
        early = self._early.pop(call_id, None)
        if early is not None and early[0] >= ts:
            self._write(call, early[0] - ts, early[1])
            return
        if len(self._calls) >= MAX_PENDING_CALLS:
            self._count_error(PROTOCOL, "too_many_pending_calls")
            oldest = next(iter(self._calls))
            self._write(self._calls.pop(oldest), None, None)
        self._calls[call_id] = call

    def _opened(self, call_id: int, answer: bytes, little_endian: bool) -> None:
        call = self._calls.get(call_id)
        if call is not None and call.opens and call.rid is not None:
            self._handles.opened(call.rid, answer, little_endian)

    def _answer(self, ts: float, call_id: int, fault: int | None) -> None:
        call = self._calls.pop(call_id, None)
        if call is None:
            if call_id in self._early or len(self._early) < MAX_PENDING_CALLS:
                self._early[call_id] = (ts, fault)
            return
        self._write(call, ts - call.ts, fault)

    def _write(self, call: _Call, rtt: float | None, fault: int | None) -> None:
        rec = dce_rpc_pb2.DceRpcRecord(
            uid=self._ctx.uid,
            named_pipe=self._sec_addr or self._pipe,
            endpoint=names.endpoint_name(call.interface) if call.interface else "",
            operation=names.operation_name(call.interface, call.opnum),
            interface_uuid=call.interface,
            opnum=call.opnum,
            transport=self._transport,
            roles_flipped=call.flipped,
            dcom=call.dcom,
        )
        set_time(rec.time, call.ts)
        if rtt is not None:
            rec.rtt.FromNanoseconds(round(max(rtt, 0.0) * 1e9))
        if fault is not None:
            rec.fault_status = fault
        if call.rid is not None:
            rec.rid = call.rid
        self._emit(sensor_pb2.Record(dce_rpc=rec))

    def finish(self) -> None:
        """The channel ended: calls still waiting for an answer are written without rtt."""
        calls, self._calls = self._calls, {}
        self._early.clear()
        for call in calls.values():
            self._write(call, None, None)


class DceRpcSession:
    """DCE-RPC over TCP (the endpoint mapper on 135 and the dynamic ports it hands out)."""

    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._count_error = count_error
        self._ntlm = NtlmTracker(ctx, emit, count_error, "dce_rpc")
        self._kerberos = GssApTracker(ctx, emit, count_error)
        self._channel = Channel(ctx, emit, count_error, "tcp", ntlm=self._ntlm, kerberos=self._kerberos)
        self._streams = {True: PduStream(count_error), False: PduStream(count_error)}

    @property
    def done(self) -> bool:
        return False

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        try:
            for raw in self._streams[is_orig].feed(payload):
                self._channel.pdu(ts, raw, is_orig)
        except Exception:  # an analyzer bug must not escape into the flow table
            self._count_error(PROTOCOL, "internal_error")
            self._streams[is_orig].lose()

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        self._streams[is_orig].missing(length)

    def finish(self, ts: float) -> None:
        try:
            self._channel.finish()
            self._ntlm.finish(ts)
            self._kerberos.finish(ts)
        except Exception:
            self._count_error(PROTOCOL, "internal_error")


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
    return DceRpcSession(ctx, emit, count_error)


@dataclass(slots=True)
class _Pipe:
    channel: Channel
    client: PduStream
    server: PduStream


class PipeCalls:
    """The DCE-RPC channels of one SMB connection, one per named-pipe file id.

    The SMB session hands over what the client writes to a pipe (WRITE, TransactNmPipe or IOCTL
    FSCTL_PIPE_TRANSCEIVE input) and what the server returns from it (READ, transaction or IOCTL output),
    with the count of bytes it could not see (frames are kept only up to a prefix).
    """

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._pipes: dict[bytes, _Pipe] = {}
        self._names: dict[bytes, str] = {}

    def opened(self, file_id: bytes, name: str) -> None:
        """A file on an IPC$ tree was opened: ``name`` is the pipe ("srvsvc", "\\lsarpc")."""
        if file_id in self._names or len(self._names) < MAX_PIPES:
            self._names[file_id] = name

    def _pipe(self, file_id: bytes, data: bytes | memoryview) -> _Pipe | None:
        pipe = self._pipes.get(file_id)
        if pipe is not None:
            return pipe
        # A channel starts with a PDU: anything else written to a pipe is some other protocol.
        if not parser.looks_like_pdu(bytes(data[: parser.HEADER_SIZE])):
            return None
        if len(self._pipes) >= MAX_PIPES:
            self._count_error(PROTOCOL, "too_many_pipes")
            return None
        channel = Channel(self._ctx, self._emit, self._count_error, "smb", self._names.get(file_id, ""))
        pipe = self._pipes[file_id] = _Pipe(
            channel, PduStream(self._count_error), PduStream(self._count_error)
        )
        return pipe

    def _feed(self, file_id: bytes, ts: float, data: bytes | memoryview, missing: int, client: bool) -> None:
        try:
            pipe = self._pipe(file_id, data)
            if pipe is None:
                return
            stream = pipe.client if client else pipe.server
            for raw in stream.feed(data):
                pipe.channel.pdu(ts, raw, client)
            if missing:
                stream.missing(missing)
        except Exception:  # an analyzer bug must not escape into the SMB session
            self._count_error(PROTOCOL, "internal_error")

    def client_data(self, file_id: bytes, ts: float, data: bytes | memoryview, missing: int = 0) -> None:
        self._feed(file_id, ts, data, missing, True)

    def server_data(self, file_id: bytes, ts: float, data: bytes | memoryview, missing: int = 0) -> None:
        self._feed(file_id, ts, data, missing, False)

    def closed(self, file_id: bytes) -> None:
        self._names.pop(file_id, None)
        pipe = self._pipes.pop(file_id, None)
        if pipe is not None:
            pipe.channel.finish()

    def finish(self) -> None:
        pipes, self._pipes = self._pipes, {}
        for pipe in pipes.values():
            pipe.channel.finish()
