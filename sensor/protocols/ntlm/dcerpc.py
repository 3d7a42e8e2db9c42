"""DCE-RPC connection-oriented authentication (C706 chapter 12, MS-RPCE 2.2.2.11) as an NTLM carrier.

Only the PDUs that carry authentication (bind, bind_ack, alter_context(_resp), auth3, bind_nak) are
read; request/response bodies are skipped by their fragment length without being buffered.
"""

from __future__ import annotations

import struct

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, Session
from sensor.protocols.ntlm.session import NtlmTracker

PROTOCOL = "dce_rpc"

PTYPE_BIND = 11
PTYPE_BIND_ACK = 12
PTYPE_BIND_NAK = 13
PTYPE_ALTER_CONTEXT = 14
PTYPE_ALTER_CONTEXT_RESP = 15
PTYPE_AUTH3 = 16
_AUTH_PTYPES = frozenset(
    {PTYPE_BIND, PTYPE_BIND_ACK, PTYPE_BIND_NAK, PTYPE_ALTER_CONTEXT, PTYPE_ALTER_CONTEXT_RESP, PTYPE_AUTH3}
)
# RPC_C_AUTHN_* values whose auth_value is (or wraps) NTLMSSP.
_AUTHN_SPNEGO = 9
_AUTHN_WINNT = 10
_HEADER = 16
_TRAILER = 8
# After this many PDUs without any authentication we have learnt all we will.
_MAX_UNAUTH_PDUS = 64


class DceRpcAuthSession:
    """Feeds the NTLM tokens of one DCE-RPC connection into an NtlmTracker."""

    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._count_error = count_error
        self._ntlm = NtlmTracker(ctx, emit, count_error, "dce_rpc")
        self._buf = {True: bytearray(), False: bytearray()}
        self._skip = {True: 0, False: 0}
        self._dead = {True: False, False: False}
        self._pdus = 0
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        try:
            self._data(is_orig, ts, payload)
        except Exception:  # never let a carrier bug escape into the flow table
            self._count_error(PROTOCOL, "internal_error")
            self._dead[is_orig] = True

    def _data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if self._dead[is_orig] or self._done:
            return
        view = memoryview(payload)
        if self._skip[is_orig]:
            take = min(self._skip[is_orig], len(view))
            self._skip[is_orig] -= take
            view = view[take:]
        buf = self._buf[is_orig]
        buf += view
        while len(buf) >= _HEADER:
            if buf[0] != 5 or buf[1] != 0:
                self._count_error(PROTOCOL, "bad_version")
                self._dead[is_orig] = True
                buf.clear()
                return
            little = bool(buf[4] & 0x10)
            frag_len, auth_len = struct.unpack_from("<HH" if little else ">HH", buf, 8)
            if frag_len < _HEADER:
                self._count_error(PROTOCOL, "bad_frag_length")
                self._dead[is_orig] = True
                buf.clear()
                return
            ptype = buf[2]
            if ptype not in _AUTH_PTYPES:
                # Bulk: drop what we hold of it and skip the rest as it arrives.
                self._pdus += 1
                if self._pdus > _MAX_UNAUTH_PDUS and not self._ntlm.pending:
                    self._done = True
                held = min(frag_len, len(buf))
                del buf[:held]
                self._skip[is_orig] = frag_len - held
                if self._skip[is_orig]:
                    return
                continue
            if len(buf) < frag_len:
                return
            pdu = bytes(buf[:frag_len])
            del buf[:frag_len]
            self._pdu(ts, ptype, pdu, auth_len)

    def _pdu(self, ts: float, ptype: int, pdu: bytes, auth_len: int) -> None:
        if ptype == PTYPE_BIND_NAK:
            self._ntlm.outcome(ts, False, 0)
            return
        if auth_len == 0 or auth_len + _TRAILER + _HEADER > len(pdu):
            return
        trailer = len(pdu) - auth_len - _TRAILER
        auth_type = pdu[trailer]
        if auth_type not in (_AUTHN_SPNEGO, _AUTHN_WINNT):
            return
        blob = pdu[trailer + _TRAILER :]
        if ptype in (PTYPE_BIND, PTYPE_ALTER_CONTEXT, PTYPE_AUTH3):
            self._ntlm.client_token(ts, blob)
        else:
            self._ntlm.server_token(ts, blob)

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        # Fragment boundaries are lost; DCE-RPC has no resync marker worth trusting.
        self._dead[is_orig] = True
        self._buf[is_orig].clear()

    def finish(self, ts: float) -> None:
        try:
            self._ntlm.finish(ts)
        except Exception:
            self._count_error(PROTOCOL, "internal_error")


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
    return DceRpcAuthSession(ctx, emit, count_error)
