"""Kerberos per-connection state: pair KDC requests with replies/errors and emit one KerberosRecord each.

UDP: one message per datagram (retries reuse the socket, so requests queue). TCP: each message is
preceded by a 4-byte big-endian length (RFC 4120 7.2.2).
"""

from __future__ import annotations

import struct
from collections import deque

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, Session, set_time
from sensor.protocols.kerberos import parser
from sensor.protocols.ntlm import parser as ntlm_parser
from vigil.flow.v1 import kerberos_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "kerberos"
# Real KDC messages are a few KiB (PACs make TGS-REPs larger); 1 MiB bounds what we buffer.
MAX_MESSAGE = 1 << 20
MAX_PENDING = 64
# KRB-ERROR e-texts MIT/Heimdal KDCs send when asking for pre-authentication: part of every normal
# logon, so they are not logged as failures (Zeek does the same).
IGNORED_ERROR_TEXTS = frozenset({"NEEDED_PREAUTH", "Need to use PA-ENC-TIMESTAMP/PA-PK-AS-REQ"})


def _client(principal: parser.Principal | None, realm: str) -> str:
    # Zeek's convention: the name components joined by "/", then "/" and the realm.
    if principal is None:
        return ""
    return f"{principal.render()}/{realm}"


def record_for(
    uid: str,
    ts: float,
    request: parser.KdcRequest | None,
    reply: parser.KdcReply | parser.KrbError | None,
) -> kerberos_pb2.KerberosRecord:
    """Build the kerberos.log record for one exchange (either side may be missing)."""
    rec = kerberos_pb2.KerberosRecord(uid=uid)
    set_time(rec.time, ts)
    msg_type = request.msg_type if request is not None else None
    if msg_type is None and isinstance(reply, parser.KdcReply):
        msg_type = parser.AS_REQ if reply.msg_type == parser.AS_REP else parser.TGS_REQ
    if msg_type is not None:
        rec.request_type = "AS" if msg_type == parser.AS_REQ else "TGS"
    if request is not None:
        if request.cname is not None:
            rec.client = _client(request.cname, request.realm)
        if request.sname is not None:
            rec.service = request.sname.render()
        if request.from_time is not None:
            set_time(rec.from_time, request.from_time)
        if request.till is not None:
            set_time(rec.till_time, request.till)
        rec.forwardable = request.forwardable
        rec.renewable = request.renewable
        rec.client_ciphers.extend(parser.CIPHER_NAMES.get(e, str(e)) for e in request.etypes)
        rec.client_cert_subject = request.cert_subject
        rec.auth_ticket_sha256 = request.auth_ticket_sha256
    if isinstance(reply, parser.KdcReply):
        rec.success = True
        if not rec.client and reply.cname is not None:
            rec.client = _client(reply.cname, reply.crealm)
        if not rec.service and reply.ticket_sname is not None:
            rec.service = reply.ticket_sname.render()
        if reply.ticket_etype is not None:
            rec.cipher = parser.CIPHER_NAMES.get(reply.ticket_etype, str(reply.ticket_etype))
        rec.server_cert_subject = reply.cert_subject
        rec.new_ticket_sha256 = reply.ticket_sha256
    elif isinstance(reply, parser.KrbError):
        rec.success = False
        rec.error_code = reply.error_code
        # Zeek prefers the KDC's own e-text and falls back to the RFC name.
        rec.error_msg = reply.e_text or parser.ERROR_NAMES.get(reply.error_code, str(reply.error_code))
        if not rec.client and reply.cname is not None:
            rec.client = _client(reply.cname, reply.crealm)
        if not rec.service and reply.sname is not None:
            rec.service = reply.sname.render()
    return rec


def ap_request_in(token: bytes, count_error: ErrorCounter) -> parser.ApRequest | None:
    """The AP-REQ inside a GSS-API Kerberos token (SMB session setup, LDAP SASL bind), if it is one.

    A malformed token is counted as a kerberos parse error, never raised into the carrier's session.
    """
    try:
        message = parser.parse_prefix(token)
    except ParseError as exc:
        count_error(PROTOCOL, exc.reason)
        return None
    return message if isinstance(message, parser.ApRequest) else None


def ap_record(uid: str, ts: float, ap: parser.ApRequest, success: bool | None) -> kerberos_pb2.KerberosRecord:
    """An AP-REQ seen inside another protocol's GSS-API exchange (SMB, LDAP): Zeek's request_type "AP".

    The client name is encrypted in the authenticator, so only the ticket realm is known ("/REALM").
    """
    rec = kerberos_pb2.KerberosRecord(uid=uid, request_type="AP", client=f"/{ap.ticket_realm}")
    set_time(rec.time, ts)
    if ap.ticket_sname is not None:
        rec.service = ap.ticket_sname.render()
    if ap.ticket_etype is not None:
        rec.cipher = parser.CIPHER_NAMES.get(ap.ticket_etype, str(ap.ticket_etype))
    rec.auth_ticket_sha256 = ap.ticket_sha256
    if success is not None:
        rec.success = success
    return rec


class KerberosSession:
    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._tcp = ctx.transport == "tcp"
        self._buf = {True: bytearray(), False: bytearray()}
        self._dead = {True: False, False: False}
        self._pending: deque[tuple[float, parser.KdcRequest]] = deque()

    @property
    def done(self) -> bool:
        return self._dead[True] and self._dead[False]

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        try:
            if not self._tcp:
                self._message(ts, payload)
                return
            if self._dead[is_orig]:
                return
            buf = self._buf[is_orig]
            buf += payload
            while len(buf) >= 4:
                (length,) = struct.unpack_from(">I", buf, 0)
                # The top bit is reserved for a future extension (RFC 4120 7.2.2); nobody sets it.
                if length == 0 or length > MAX_MESSAGE:
                    self._count_error(PROTOCOL, "bad_record_length")
                    self._dead[is_orig] = True
                    buf.clear()
                    return
                if len(buf) < 4 + length:
                    return
                msg = bytes(buf[4 : 4 + length])
                del buf[: 4 + length]
                self._message(ts, msg)
        except Exception:  # a bug here must not take the flow table down
            self._count_error(PROTOCOL, "internal_error")

    def _message(self, ts: float, raw: bytes) -> None:
        try:
            msg = parser.parse(raw)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            return
        if isinstance(msg, parser.KdcRequest):
            if len(self._pending) >= MAX_PENDING:
                old_ts, old = self._pending.popleft()
                self._emit_record(old_ts, old, None)
            self._pending.append((ts, msg))
        elif isinstance(msg, parser.KrbError) and msg.e_text in IGNORED_ERROR_TEXTS:
            # Zeek does not log the pre-authentication challenge of a normal AS exchange; the client
            # retries with pre-auth on the same or a new connection and that exchange is logged.
            if self._pending:
                self._pending.popleft()
        elif isinstance(msg, (parser.KdcReply, parser.KrbError)):
            if self._pending:
                req_ts, req = self._pending.popleft()
                self._emit_record(req_ts, req, msg)
            else:
                self._emit_record(ts, None, msg)

    def _emit_record(
        self, ts: float, req: parser.KdcRequest | None, rep: parser.KdcReply | parser.KrbError | None
    ) -> None:
        self._emit(sensor_pb2.Record(kerberos=record_for(self._ctx.uid, ts, req, rep)))

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        if self._tcp:
            self._dead[is_orig] = True
            self._buf[is_orig].clear()

    def finish(self, ts: float) -> None:
        try:
            while self._pending:
                req_ts, req = self._pending.popleft()
                self._emit_record(req_ts, req, None)
        except Exception:
            self._count_error(PROTOCOL, "internal_error")


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
    return KerberosSession(ctx, emit, count_error)


# MS-RPCE 2.2.1.1.7: a DCE-RPC auth verifier holding a bare Kerberos GSS token (9 is SPNEGO).
RPC_C_AUTHN_GSS_KERBEROS = 16


class GssApTracker:
    """The Kerberos AP exchanges of a carrier that hands over every GSS-API token it sees, from both
    sides (DCE-RPC auth verifiers: SPNEGO or bare Kerberos). An AP-REQ from the client opens an exchange;
    the server's answer closes it, as Zeek's kerberos.log "AP" row: success when an AP-REP came back,
    failure on a KRB-ERROR; an exchange never answered is written at finish with success unset.
    """

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._pending: tuple[float, parser.ApRequest] | None = None

    def _kerberos(self, blob: bytes) -> bytes:
        try:
            found = ntlm_parser.unwrap(blob)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            return b""
        return found.token if found.mech == "kerberos" else b""

    def client_token(self, ts: float, blob: bytes) -> None:
        token = self._kerberos(blob)
        ap = ap_request_in(token, self._count_error) if token else None
        if ap is not None:
            self._write(None)
            self._pending = (ts, ap)

    def server_token(self, ts: float, blob: bytes) -> None:
        token = self._kerberos(blob)
        if not token or self._pending is None:
            return
        try:
            answer = parser.parse_prefix(token)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            return
        if isinstance(answer, parser.ApReply):
            self._write(True)
        elif isinstance(answer, parser.KrbError):
            self._write(False)

    def finish(self, ts: float) -> None:
        self._write(None)

    def _write(self, success: bool | None) -> None:
        if self._pending is not None:
            ts, ap = self._pending
            self._pending = None
            self._emit(sensor_pb2.Record(kerberos=ap_record(self._ctx.uid, ts, ap, success)))
