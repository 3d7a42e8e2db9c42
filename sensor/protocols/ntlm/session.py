"""NtlmTracker: follows NTLMSSP authentications on any carrier and emits one NtlmRecord per authentication.

NTLM has no transport of its own; SMB, LDAP, HTTP and DCE-RPC sessions own a tracker and hand it the
security blobs they see (raw NTLMSSP or SPNEGO-wrapped; the tracker unwraps) and the carrier's verdict.
A record is written once per NEGOTIATE/CHALLENGE/AUTHENTICATE sequence: when the carrier reports the
outcome after an AUTHENTICATE, when a new sequence starts, or at finish.
"""

from __future__ import annotations

from dataclasses import dataclass

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, set_time
from sensor.protocols.ntlm import parser
from vigil.flow.v1 import ntlm_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "ntlm"
# SPNEGO negState values (RFC 4178 4.2.2) that end a negotiation.
SPNEGO_ACCEPT_COMPLETED, SPNEGO_REJECT = 0, 2


@dataclass(slots=True)
class _Auth:
    ts: float
    challenge: parser.Challenge | None = None
    authenticate: parser.Authenticate | None = None
    # The server's SPNEGO verdict, when an answer carried one (Zeek's ntlm.log "success").
    spnego_success: bool | None = None


class NtlmTracker:
    """Per-connection NTLM state for one carrier ("smb", "http", "ldap", "dce_rpc")."""

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter, carrier: str) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._carrier = carrier
        self._current: _Auth | None = None

    # The carrier may hand us anything it found in a security-blob slot: parse failures are counted
    # here so that no carrier has to know NTLM's error labels.
    def _unwrap(self, blob: bytes) -> parser.GssToken | None:
        try:
            return parser.unwrap(blob)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            return None

    def _message(self, found: parser.GssToken | None) -> parser.NtlmMessage | None:
        if found is None or found.mech != "ntlm" or not found.token:
            return None
        try:
            return parser.parse(found.token)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            return None

    def client_token(self, ts: float, blob: bytes) -> parser.NtlmMessage | None:
        """A blob the client sent (NEGOTIATE or AUTHENTICATE, possibly wrapped); returns the message, so
        the carrier can name the user on its own records without parsing it again."""
        msg = self._message(self._unwrap(blob))
        if isinstance(msg, parser.Negotiate):
            # A new handshake: whatever was pending never got a verdict.
            self._flush(None, None)
            self._current = _Auth(ts)
        elif isinstance(msg, parser.Authenticate):
            if self._current is None or self._current.authenticate is not None:
                self._flush(None, None)
                self._current = _Auth(ts)
            self._current.authenticate = msg
            self._current.ts = ts
        return msg

    def server_token(self, ts: float, blob: bytes) -> None:
        """A blob the server sent (CHALLENGE, or a final SPNEGO answer)."""
        found = self._unwrap(blob)
        msg = self._message(found)
        if isinstance(msg, parser.Challenge):
            if self._current is None or self._current.authenticate is not None:
                self._flush(None, None)
                self._current = _Auth(ts)
            self._current.challenge = msg
        elif (
            found is not None
            and found.neg_state in (SPNEGO_ACCEPT_COMPLETED, SPNEGO_REJECT)
            and self._current is not None
        ):
            # The verdict Zeek logs as success ("accept-incomplete" only asks for the next leg).
            self._current.spnego_success = found.neg_state == SPNEGO_ACCEPT_COMPLETED

    def outcome(self, ts: float, success: bool, status: int) -> None:
        """The carrier's verdict on the AUTHENTICATE just sent; ignored before one was seen."""
        if self._current is not None and self._current.authenticate is not None:
            self._flush(success, status)

    @property
    def pending(self) -> bool:
        return self._current is not None

    def finish(self, ts: float) -> None:
        self._flush(None, None)

    def _flush(self, success: bool | None, status: int | None) -> None:
        auth = self._current
        self._current = None
        if auth is None:
            return
        rec = ntlm_pb2.NtlmRecord(uid=self._ctx.uid, carrier=self._carrier)
        set_time(rec.time, auth.ts)
        if auth.authenticate is not None:
            rec.username = auth.authenticate.user
            rec.domain = auth.authenticate.domain
            rec.hostname = auth.authenticate.workstation
        if auth.challenge is not None:
            rec.server_nb_computer_name = auth.challenge.nb_computer_name
            rec.server_dns_computer_name = auth.challenge.dns_computer_name
            rec.server_tree_name = auth.challenge.dns_tree_name
        if success is not None:
            rec.success = success
        if auth.spnego_success is not None:
            rec.spnego_success = auth.spnego_success
        if status is not None:
            rec.status = status
        self._emit(sensor_pb2.Record(ntlm=rec))
