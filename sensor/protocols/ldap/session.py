"""LDAP per-connection state: frame LDAPMessages, pair requests with results, emit ldap/ldap_search records.

TCP: each LDAPMessage is one BER element. After a SASL bind that negotiated integrity, messages come
inside SASL buffers (4-byte length, RFC 4422 3.7); when the mechanism only signs, the LDAPMessage is
in clear inside the buffer and we find it there; sealed buffers are counted and skipped.
UDP (CLDAP): one or more LDAPMessages per datagram.
After a successful StartTLS the rest of the connection is TLS: it goes to a TLS session of its own,
which writes the connection's ssl record (as Zeek's ssl.log has one for LDAP on 389 with StartTLS).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sensor.protocols import asn1
from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, Session, set_time
from sensor.protocols.kerberos import parser as krb_parser
from sensor.protocols.kerberos.session import ap_record, ap_request_in
from sensor.protocols.ldap import parser
from sensor.protocols.ntlm import parser as ntlm_parser
from sensor.protocols.ntlm.session import NtlmTracker
from sensor.protocols.tls import session as tls_session
from vigil.flow.v1 import ldap_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "ldap"
# Messages we buffer whole; larger ones (big search entries) are identified by their head and skipped.
MAX_MESSAGE = 1 << 20
MAX_SASL_BUFFER = 1 << 24
MAX_PENDING = 1024
# How far into a SASL buffer the clear LDAPMessage may start (GSS wrap headers are 16-28 bytes).
_SASL_SCAN = 96

SICILY_OPS = {
    parser.AUTH_SICILY_DISCOVERY: "sicily_package_discovery",
    parser.AUTH_SICILY_NEGOTIATE: "sicily_negotiate",
    parser.AUTH_SICILY_RESPONSE: "sicily_response",
}


@dataclass(slots=True)
class _Pending:
    ts: float
    opcode: int
    record: ldap_pb2.LdapMessage | None = None
    search: ldap_pb2.LdapSearch | None = None
    ntlm: bool = False
    ap: krb_parser.ApRequest | None = None
    starttls: bool = False
    extra: dict[str, str] = field(default_factory=dict)


class LdapSession:
    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._udp = ctx.transport == "udp"
        self._ntlm = NtlmTracker(ctx, emit, count_error, "ldap")
        self._buf = {True: bytearray(), False: bytearray()}
        self._skip = {True: 0, False: 0}
        self._dead = {True: False, False: False}
        self._pending: dict[int, _Pending] = {}
        self._done = False
        self._tls: tls_session.TlsSession | None = None

    @property
    def done(self) -> bool:
        return self._done or (self._tls is not None and self._tls.done)

    @property
    def inner_services(self) -> tuple[str, ...]:
        return ("ssl",) if self._tls is not None else ()

    # -- framing -------------------------------------------------------------------------------

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if self._tls is not None:
            self._tls.data(is_orig, ts, payload)
            return
        try:
            if self._udp:
                self._datagram(is_orig, ts, payload)
            elif not self._dead[is_orig] and not self._done:
                self._stream(is_orig, ts, payload)
        except Exception:  # never let an analyzer bug escape into the flow table
            self._count_error(PROTOCOL, "internal_error")
            self._dead[is_orig] = True

    def _datagram(self, is_orig: bool, ts: float, payload: bytes) -> None:
        pos = 0
        while pos < len(payload):
            try:
                size = asn1.definite_frame_length(payload[pos:])
            except ParseError as exc:
                self._count_error(PROTOCOL, f"ber_{exc.reason}")
                return
            if size is None or pos + size > len(payload):
                self._count_error(PROTOCOL, "truncated_datagram")
                return
            self._message(is_orig, ts, payload[pos : pos + size])
            pos += size

    def _stream(self, is_orig: bool, ts: float, payload: bytes) -> None:
        view = memoryview(payload)
        if self._skip[is_orig]:
            take = min(self._skip[is_orig], len(view))
            self._skip[is_orig] -= take
            view = view[take:]
        buf = self._buf[is_orig]
        buf += view
        while buf and not self._done:
            if buf[0] == 0x30:
                try:
                    size = asn1.definite_frame_length(bytes(buf[:8]))
                except ParseError as exc:
                    self._lose(is_orig, f"ber_{exc.reason}")
                    return
                if size is None:
                    return
                if size > MAX_MESSAGE:
                    if len(buf) < 64:
                        return
                    self._oversized(is_orig, ts, bytes(buf[:64]))
                    held = min(size, len(buf))
                    del buf[:held]
                    self._skip[is_orig] = size - held
                    return
                if len(buf) < size:
                    return
                msg = bytes(buf[:size])
                del buf[:size]
                self._message(is_orig, ts, msg)
                if self._tls is not None:
                    # StartTLS took effect: whatever followed the response in this segment is TLS.
                    self._to_tls(ts)
                    return
            elif buf[0] == 0x00:
                if len(buf) < 4:
                    return
                (size,) = struct.unpack_from(">I", buf, 0)
                if size > MAX_SASL_BUFFER:
                    self._lose(is_orig, "sasl_buffer_too_large")
                    return
                if len(buf) < 4 + size:
                    return
                wrapped = bytes(buf[4 : 4 + size])
                del buf[: 4 + size]
                self._sasl_buffer(is_orig, ts, wrapped)
            else:
                self._lose(is_orig, "not_ldap")
                return

    def _lose(self, is_orig: bool, reason: str) -> None:
        self._count_error(PROTOCOL, reason)
        self._dead[is_orig] = True
        self._buf[is_orig].clear()

    def _sasl_buffer(self, is_orig: bool, ts: float, wrapped: bytes) -> None:
        # Signed-only GSS wrap tokens keep the LDAPMessage in clear after a short header; find the
        # offset where a whole LDAPMessage ends exactly before the trailer or the end.
        for start in range(min(_SASL_SCAN, len(wrapped))):
            if wrapped[start] != 0x30:
                continue
            try:
                size = asn1.definite_frame_length(wrapped[start : start + 8])
                if size is None or start + size > len(wrapped):
                    continue
                msg = parser.parse_message(wrapped[start : start + size])
            except ParseError:
                continue
            self._handle(is_orig, ts, msg)
            # One buffer may hold several messages (a search's entries and its done).
            pos = start + size
            while pos < len(wrapped) and wrapped[pos] == 0x30:
                try:
                    size = asn1.definite_frame_length(wrapped[pos : pos + 8])
                    if size is None or pos + size > len(wrapped):
                        break
                    self._handle(is_orig, ts, parser.parse_message(wrapped[pos : pos + size]))
                except ParseError:
                    break
                pos += size
            return
        self._count_error(PROTOCOL, "sasl_sealed")

    def _oversized(self, is_orig: bool, ts: float, head: bytes) -> None:
        # Only search entries are large in practice; count them without reading them.
        try:
            # Skip the outer SEQUENCE header (short or long length form) to reach messageID.
            start = 2 + (head[1] & 0x7F if head[1] & 0x80 else 0)
            id_tlv, after = asn1.read_tlv(head, start)
            message_id = asn1.as_int(id_tlv)
            op_tag = head[after] & 0x1F
        except (ParseError, IndexError):
            self._count_error(PROTOCOL, "bad_large_message")
            return
        if op_tag == parser.OP_SEARCH_RESULT_ENTRY:
            pending = self._pending.get(message_id)
            if pending is not None and pending.search is not None:
                pending.search.result_count += 1

    def _message(self, is_orig: bool, ts: float, raw: bytes) -> None:
        try:
            msg = parser.parse_message(raw)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            return
        self._handle(is_orig, ts, msg)

    # -- semantics -----------------------------------------------------------------------------

    def _handle(self, is_orig: bool, ts: float, msg: parser.Message) -> None:
        if msg.opcode in parser.OPCODE_NAMES and msg.opcode not in parser.RESPONSE_TO_REQUEST:
            self._request(ts, msg)
        elif msg.opcode == parser.OP_SEARCH_RESULT_ENTRY:
            pending = self._pending.get(msg.message_id)
            if pending is not None and pending.search is not None:
                pending.search.result_count += 1
        elif msg.opcode in parser.RESPONSE_TO_REQUEST and isinstance(msg.body, parser.Result):
            self._response(ts, msg.message_id, msg.body)

    def _request(self, ts: float, msg: parser.Message) -> None:
        if len(self._pending) >= MAX_PENDING:
            oldest = next(iter(self._pending))
            self._flush(self._pending.pop(oldest), None)
        pending = _Pending(ts, msg.opcode)
        body = msg.body
        if msg.opcode == parser.OP_SEARCH_REQUEST and isinstance(body, parser.Search):
            search = ldap_pb2.LdapSearch(
                uid=self._ctx.uid,
                message_id=msg.message_id,
                scope=parser.SCOPE_NAMES.get(body.scope, str(body.scope)),
                deref_aliases=parser.DEREF_NAMES.get(body.deref, str(body.deref)),
                base_object=body.base_object,
                filter=body.filter,
                attributes=list(body.attributes),
            )
            set_time(search.time, ts)
            pending.search = search
        else:
            rec = ldap_pb2.LdapMessage(
                uid=self._ctx.uid, message_id=msg.message_id, opcode=parser.OPCODE_NAMES[msg.opcode]
            )
            set_time(rec.time, ts)
            if isinstance(body, parser.Bind):
                self._bind(ts, rec, body, pending)
            elif isinstance(body, parser.Operation):
                rec.object = body.object
                rec.argument = body.argument
                pending.starttls = body.object.startswith(parser.OID_STARTTLS)
            pending.record = rec
        if msg.opcode in (parser.OP_UNBIND_REQUEST, parser.OP_ABANDON_REQUEST):
            # No response will come.
            self._flush(pending, None)
            return
        previous = self._pending.pop(msg.message_id, None)
        if previous is not None:
            self._flush(previous, None)
        self._pending[msg.message_id] = pending

    def _bind(self, ts: float, rec: ldap_pb2.LdapMessage, bind: parser.Bind, pending: _Pending) -> None:
        rec.version = str(bind.version)
        rec.object = bind.name
        if bind.auth == parser.AUTH_SIMPLE:
            rec.argument = "simple"
            return
        if bind.auth == parser.AUTH_SASL:
            rec.argument = f"SASL {bind.mechanism}"
        else:
            rec.argument = SICILY_OPS.get(bind.auth, f"auth_{bind.auth}")
        if not bind.credentials:
            return
        try:
            token = ntlm_parser.unwrap(bind.credentials)
        except ParseError:
            token = ntlm_parser.GssToken("")
        if token.mech == "ntlm":
            self._ntlm.client_token(ts, bind.credentials)
            pending.ntlm = True
        elif token.mech == "kerberos" and token.token:
            ap = ap_request_in(token.token, self._count_error)
            if ap is not None:
                pending.ap = ap

    def _response(self, ts: float, message_id: int, result: parser.Result) -> None:
        pending = self._pending.pop(message_id, None)
        if pending is None:
            self._count_error(PROTOCOL, "unmatched_response")
            return
        if pending.opcode == parser.OP_BIND_REQUEST:
            if result.sasl_creds:
                self._ntlm.server_token(ts, result.sasl_creds)
            if pending.ntlm and result.code != 14:
                self._ntlm.outcome(ts, result.code == 0, result.code)
        self._flush(pending, result)
        if pending.starttls and result.code == 0 and not self._udp:
            self._tls = tls_session.TlsSession(self._ctx, self._emit, self._count_error)

    def _to_tls(self, ts: float) -> None:
        assert self._tls is not None
        for direction in (True, False):
            rest = bytes(self._buf[direction])
            self._buf[direction].clear()
            if rest:
                self._tls.data(direction, ts, rest)

    def _flush(self, pending: _Pending, result: parser.Result | None) -> None:
        if pending.ap is not None:
            # Zeek hands only the bind request's credentials to GSS-API, never the answer's AP-REP, so
            # its "AP" row has no success; the bind's outcome is the ldap row's result.
            self._emit(sensor_pb2.Record(kerberos=ap_record(self._ctx.uid, pending.ts, pending.ap, None)))
        if pending.search is not None:
            if result is not None:
                pending.search.result = parser.RESULT_NAMES.get(result.code, str(result.code))
                pending.search.diagnostic_message = result.diagnostic
            self._emit(sensor_pb2.Record(ldap_search=pending.search))
        elif pending.record is not None:
            if result is not None:
                pending.record.result = parser.RESULT_NAMES.get(result.code, str(result.code))
                pending.record.diagnostic_message = result.diagnostic
            self._emit(sensor_pb2.Record(ldap=pending.record))

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        if self._tls is not None:
            self._tls.gap(is_orig, ts, length)
        elif not self._udp:
            self._dead[is_orig] = True
            self._buf[is_orig].clear()

    def finish(self, ts: float) -> None:
        try:
            for pending in list(self._pending.values()):
                self._flush(pending, None)
            self._pending.clear()
            self._ntlm.finish(ts)
        except Exception:
            self._count_error(PROTOCOL, "internal_error")
        if self._tls is not None:
            self._tls.finish(ts)


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
    return LdapSession(ctx, emit, count_error)
