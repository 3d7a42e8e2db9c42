"""TLS per-connection state: read the clear-text handshake, fingerprint both hellos, one TlsRecord each.

Stops reading once the handshake turns opaque: after both ChangeCipherSpecs (TLS <= 1.2, where the
server's Certificate is still visible) or once both sides send application data (TLS 1.3).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, set_time
from sensor.protocols.tls import parser
from sensor.protocols.x509 import certificate_names
from vigil.flow.v1 import tls_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "tls"
MAX_RECORD = 18 * 1024 + 5  # 2^14 plaintext + expansion allowance + header
MAX_HANDSHAKE_BUFFER = 256 * 1024  # certificate chains can be large, but not this large
_READ_BODIES = frozenset({parser.CONTENT_HANDSHAKE, parser.CONTENT_ALERT})


class TlsSession:
    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter, carrier: str = "t") -> None:
        self._ctx = ctx
        # JA4's first letter: what carries the handshake ("t" TCP, "q" QUIC, "d" DTLS).
        self._carrier = carrier
        self._emit = emit
        self._count_error = count_error
        self._records = {True: bytearray(), False: bytearray()}
        self._handshake = {True: bytearray(), False: bytearray()}
        self._ccs = {True: False, False: False}
        self._appdata = {True: False, False: False}
        self._dead = {True: False, False: False}
        self._rec = tls_pb2.TlsRecord(uid=ctx.uid)
        self._started = False
        self._client_session_id = b""
        self._server_hello: parser.ServerHello | None = None
        self._saw_certificate = False
        self._written = False
        self._done = False
        # ssl_history as Zeek writes it; the client is the side that sent the first ClientHello.
        self._history: list[str] = []
        self._client_is_orig = True
        self._hello_seen = False
        self._tls13 = False  # a HelloRetryRequest or ServerHello chose TLS 1.3

    @property
    def done(self) -> bool:
        return self._done

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        self._read(is_orig, ts, self._read_records, payload)

    def plain_record(self, is_orig: bool, ts: float, ctype: int, body: bytes) -> None:
        """One record's content without the TLS record layer, for carriers that frame TLS themselves:
        QUIC (its CRYPTO frames hold the handshake messages) and DTLS (own record and handshake
        headers). ``body`` is the clear-text content; b"" when only the type is known."""
        self._read(is_orig, ts, functools.partial(self._plain, ctype), body)

    def _read(
        self, is_orig: bool, ts: float, step: Callable[[bool, float, bytes], None], payload: bytes
    ) -> None:
        if self._done or self._dead[is_orig]:
            return
        try:
            if not self._started:
                self._started = True
                set_time(self._rec.time, ts)
            step(is_orig, ts, payload)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            self._kill(is_orig)
        # A sensor must survive any input: an analyzer bug becomes a counted error, never a crash.
        except Exception:
            self._count_error(PROTOCOL, "internal_error")
            self._kill(is_orig)

    def _plain(self, ctype: int, is_orig: bool, ts: float, body: bytes) -> None:
        self._record(is_orig, ts, ctype, body)

    @property
    def rejected(self) -> bool:
        """The bytes were no TLS: a direction failed before any hello was read (the flow table then
        lets the payload heuristics have the connection, e.g. OpenVPN on 443)."""
        return (self._dead[True] or self._dead[False]) and not self._rec.ja3 and self._server_hello is None

    @property
    def hellos_seen(self) -> bool:
        """Both the ClientHello and the ServerHello were read."""
        return bool(self._rec.ja3) and self._server_hello is not None

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        # Record framing is lost for this direction; what we have so far still gets written at finish.
        self._kill(is_orig)

    def finish(self, ts: float) -> None:
        try:
            self._write()
        except Exception:  # see data()
            self._count_error(PROTOCOL, "internal_error")

    # ---------------------------------------------------------------------------------------------------

    def _kill(self, is_orig: bool) -> None:
        self._dead[is_orig] = True
        self._records[is_orig].clear()
        self._handshake[is_orig].clear()
        if all(self._dead.values()):
            self._done = True

    def _read_records(self, is_orig: bool, ts: float, payload: bytes) -> None:
        buf = self._records[is_orig]
        if buf:
            buf += payload
            data = bytes(buf)
            buf.clear()
        else:
            # The usual case: whole records in one segment are read straight from the payload.
            data = payload
        pos = 0
        size = len(data)
        try:
            while size - pos >= 5 and not self._done and not self._dead[is_orig]:
                ctype, major, length = data[pos], data[pos + 1], (data[pos + 3] << 8) | data[pos + 4]
                if ctype not in (20, 21, 22, 23, 24) or major != 3:
                    raise ParseError(PROTOCOL, "bad_record_header")
                if length > MAX_RECORD:
                    raise ParseError(PROTOCOL, "record_too_long")
                end = pos + 5 + length
                if end > size:
                    break
                # Only clear-text handshake and alert bodies are read; other records (application
                # data above all) matter by their type alone, so their bytes are never copied.
                body = data[pos + 5 : end] if ctype in _READ_BODIES else b""
                pos = end
                self._record(is_orig, ts, ctype, body)
        finally:
            if pos < size and not self._done and not self._dead[is_orig]:
                buf += data[pos:]

    def _record(self, is_orig: bool, ts: float, ctype: int, body: bytes) -> None:
        if ctype == parser.CONTENT_CCS:
            self._ccs[is_orig] = True
            self._add_history(is_orig, parser.HISTORY_CCS)
        elif ctype == parser.CONTENT_APPDATA:
            self._appdata[is_orig] = True
        elif (self._ccs[is_orig] and not self._tls13) or self._encrypted(is_orig):
            # An encrypted handshake, alert or heartbeat: its type alone says nothing reliable. (In
            # TLS 1.3 a ChangeCipherSpec is a compatibility dummy, sent after a HelloRetryRequest too.)
            pass
        elif ctype == parser.CONTENT_ALERT:
            # Each two bytes are one alert (level, description); a record may carry several.
            for at in range(0, len(body) - 1, 2):
                self._add_history(is_orig, parser.HISTORY_ALERT)
                self._rec.last_alert = parser.alert_name(body[at + 1])
        elif ctype == parser.CONTENT_HEARTBEAT:
            self._add_history(is_orig, parser.HISTORY_HEARTBEAT)
        elif ctype == parser.CONTENT_HANDSHAKE:
            hs = self._handshake[is_orig]
            if hs:
                hs += body
                if len(hs) > MAX_HANDSHAKE_BUFFER:
                    raise ParseError(PROTOCOL, "handshake_too_large")
                messages, used = parser.split_handshakes(bytes(hs))
                del hs[:used]
            else:
                # The usual case: whole messages in one record, split straight from its body.
                if len(body) > MAX_HANDSHAKE_BUFFER:
                    raise ParseError(PROTOCOL, "handshake_too_large")
                messages, used = parser.split_handshakes(body)
                hs += body[used:]
            for msg in messages:
                self._handshake_message(is_orig, msg)
        self._check_done()

    def _encrypted(self, is_orig: bool) -> bool:
        # In TLS 1.3 everything after the ServerHello is encrypted, flagged as handshake or not.
        sh = self._server_hello
        if sh is None or sh.version != 0x0304:
            return False
        return is_orig != self._client_is_orig or self._rec.ja3 != ""

    def _add_history(self, is_orig: bool, letter: str) -> None:
        if len(self._history) < parser.MAX_HISTORY:
            self._history.append(letter.upper() if is_orig == self._client_is_orig else letter)

    def _handshake_message(self, is_orig: bool, msg: parser.Handshake) -> None:
        rec = self._rec
        if msg.type == parser.HS_CLIENT_HELLO and not self._hello_seen:
            self._hello_seen = True
            if not is_orig:
                # The responder opened the handshake (DTLS after STUN, a misjudged direction).
                self._client_is_orig = False
                self._history.append(parser.HISTORY_FLIPPED)
        # Roles, not directions: the client is whoever sent the first ClientHello.
        client = is_orig == self._client_is_orig
        if msg.type == parser.HS_SERVER_HELLO and not client and self._server_hello is None:
            sh = parser.parse_server_hello(msg.body)
            self._add_history(is_orig, "j" if sh.retry_request else "s")
            self._server_hello_message(sh)
            return
        self._add_history(is_orig, parser.HISTORY_LETTERS.get(msg.type, "z"))
        if client and msg.type == parser.HS_CLIENT_HELLO and not rec.ja3:
            hello = parser.parse_client_hello(msg.body)
            self._client_session_id = hello.session_id
            rec.server_name = hello.server_name
            del rec.client_alpn[:]
            rec.client_alpn.extend(hello.alpn)
            rec.ja3, rec.ja3_string, rec.ja4 = parser.fingerprints(hello, self._carrier)
            if not rec.version:
                rec.version = parser.VERSION_NAMES.get(
                    hello.legacy_version, f"unknown-{hello.legacy_version}"
                )
        elif not client and msg.type == parser.HS_CERTIFICATE and not self._saw_certificate:
            self._saw_certificate = True
            chain = parser.parse_certificate_chain(msg.body)
            if chain:
                rec.subject, rec.issuer = certificate_names(chain[0])
        elif not client and msg.type == parser.HS_SERVER_KEY_EXCHANGE:
            group = parser.server_key_exchange_curve(msg.body)
            if group is not None:
                rec.curve = parser.GROUP_NAMES.get(group, f"unknown-{group}")

    def _server_hello_message(self, sh: parser.ServerHello) -> None:
        rec = self._rec
        rec.version = parser.VERSION_NAMES.get(sh.version, f"unknown-{sh.version}")
        rec.cipher = parser.cipher_name(sh.cipher)
        self._tls13 = sh.version == 0x0304
        if sh.retry_request:
            # A HelloRetryRequest: the client sends a second ClientHello in clear and the real
            # ServerHello follows; only that one says what was negotiated and starts encryption.
            return
        self._server_hello = sh
        rec.next_protocol = sh.alpn
        rec.ja3s = parser.ja3s(sh)[0]
        if sh.key_share_group is not None:
            rec.curve = parser.GROUP_NAMES.get(sh.key_share_group, f"unknown-{sh.key_share_group}")
        if sh.version == 0x0304:
            rec.resumed = sh.psk_accepted
        else:
            rec.resumed = bool(sh.session_id) and sh.session_id == self._client_session_id

    def _check_done(self) -> None:
        sh = self._server_hello
        if sh is None:
            return
        if sh.version == 0x0304:
            established = self._appdata[True] and self._appdata[False]
        else:
            established = self._ccs[True] and self._ccs[False]
            # An abbreviated handshake (server CCS without a Certificate) is a resumption.
            if self._ccs[False] and not self._saw_certificate:
                self._rec.resumed = True
        if established:
            self._rec.established = True
            self._write()
            self._done = True

    def _write(self) -> None:
        if self._written or not self._started:
            return
        if not (self._rec.ja3 or self._server_hello is not None):
            return  # nothing TLS-shaped was ever seen
        self._written = True
        self._rec.ssl_history = "".join(self._history)
        self._emit(sensor_pb2.Record(tls=self._rec))


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> TlsSession:
    return TlsSession(ctx, emit, count_error)
