"""HTTP/1.x per-connection state: frame both directions, pair requests with responses, one HttpRecord each.

Bodies are skipped by Content-Length or chunk sizes; only the first bytes are kept, for MIME sniffing.
Requests are queued so pipelined requests pair with responses in order (RFC 9112 section 9.3.2).

A request asking to upgrade (RFC 9110 section 7.8) holds the client's bytes back until the server answers;
a 101 to a protocol of the session's upgrade table hands the connection to that protocol's session, which
then gets everything after the two heads (WebSocket, say). Any other answer lets HTTP read on.
"""

from __future__ import annotations

import base64
import binascii
from collections import deque
from collections.abc import Mapping
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
from sensor.protocols.http import parser, sqli
from sensor.protocols.http.upgrade import Fields, Upgrade, UpgradeFactory, protocol_token
from sensor.protocols.ntlm.session import NtlmTracker
from vigil.flow.v1 import http_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "http"
MAX_HEAD = 64 * 1024
# parser.sniff_mime looks at the first 512 bytes only; the rest of a body can be skipped unread.
SNIFF_BYTES = 512
MAX_PENDING = 100


@dataclass(slots=True)
class _Txn:
    ts: float
    depth: int
    record: http_pb2.HttpRecord
    is_head: bool = False
    is_connect: bool = False
    request_done: bool = False
    written: bool = False
    # The request's header fields when it asked to upgrade (only then are they kept).
    upgrade_fields: Fields | None = None


@dataclass(slots=True)
class _Direction:
    """Framing state of one direction."""

    buf: bytearray = field(default_factory=bytearray)
    # "head" | "length" | "chunk_size" | "chunk_data" | "chunk_crlf" | "trailer" | "close" | "dead"
    # | "upgrading" (the client waits for the answer to its upgrade) | "switched" (handed over)
    state: str = "head"
    remaining: int = 0
    body_len: int = 0
    sniff: bytearray = field(default_factory=bytearray)


def _binary(head: bytes) -> bool:
    """Bytes outside printable ASCII and the usual whitespace."""
    return any(b < 0x09 or 0x0D < b < 0x20 or b > 0x7E for b in head)


class HttpSession:
    protocol = PROTOCOL

    def __init__(
        self,
        ctx: ConnContext,
        emit: Emit,
        count_error: ErrorCounter,
        upgrades: Mapping[str, UpgradeFactory] | None = None,
        tag_sqli: bool = False,
    ) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._dirs = {True: _Direction(), False: _Direction()}
        self._pending: deque[_Txn] = deque()
        # The transaction whose response is being read (popped from _pending once its head arrived).
        self._responding: _Txn | None = None
        self._requesting: _Txn | None = None
        self._depth = 0
        self._done = False
        # HTTP carries NTLM in Authorization / WWW-Authenticate; the NTLM analyzer owns that record.
        self._ntlm = NtlmTracker(ctx, emit, count_error, "http")
        # Whether the first bytes seen were HTTP at all (None until some arrive): see ``rejected``.
        self._first_was_http: bool | None = None
        # Protocols a 101 may hand the connection to, by Upgrade token; the session of the one it did.
        self._upgrades: Mapping[str, UpgradeFactory] = upgrades or {}
        self._switched: Session | None = None
        # Tag requests whose target reads like an SQL injection (http.log's HTTP::URI_SQLI).
        self._tag_sqli = tag_sqli

    @property
    def done(self) -> bool:
        if self._switched is not None:
            return self._switched.done
        return self._done

    @property
    def inner_services(self) -> tuple[str, ...]:
        """The protocol the connection switched to, and what that one found inside (conn.log's service)."""
        inner = self._switched
        if inner is None:
            return ()
        return (inner.protocol, *getattr(inner, "inner_services", ()))

    # -- Session interface -------------------------------------------------------------------------------

    @property
    def rejected(self) -> bool:
        """The connection's first bytes were binary, which no HTTP message starts with (TLS on 8080,
        a raw shell on 80). The flow table then lets the payload heuristics have the connection, as
        Zeek's dynamic protocol detection would. Malformed text (a bad request line) stays HTTP: Zeek
        logs it, with the server's 400."""
        return self._first_was_http is False

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if self._first_was_http is None and payload:
            self._first_was_http = not _binary(payload[:16])
        if self._switched is not None:
            self._switched.data(is_orig, ts, payload)
            return
        if self._done:
            return
        try:
            d = self._dirs[is_orig]
            if d.state == "dead":
                return
            d.buf += payload
            self._drive(is_orig, ts)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            self._kill(is_orig)
        # A sensor must survive any input: an analyzer bug becomes a counted error, never a crash.
        except Exception:
            self._count_error(PROTOCOL, "internal_error")
            self._kill(is_orig)

    def skip_hint(self, is_orig: bool) -> int:
        """Body bytes of known length this session will not read (see Session in protocols.base).

        Once the MIME sniffer has its bytes, the rest of a Content-Length body or of the current chunk
        only adds to ``body_len``: the reassembler may count it instead of delivering it.
        """
        d = self._dirs[is_orig]
        if d.state in ("length", "chunk_data") and not d.buf and len(d.sniff) >= SNIFF_BYTES:
            return d.remaining
        return 0

    def skipped(self, is_orig: bool, ts: float, length: int) -> None:
        """``length`` body bytes went by unread (only ever within what skip_hint offered)."""
        d = self._dirs[is_orig]
        if d.state not in ("length", "chunk_data") or length > d.remaining:
            self._kill(is_orig)  # cannot happen with a well-behaved reassembler; never mis-frame
            return
        d.body_len += length
        d.remaining -= length
        if d.remaining == 0:
            if d.state == "length":
                self._body_done(is_orig, ts)
            else:
                d.state = "chunk_crlf"

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        if self._switched is not None:
            self._switched.gap(is_orig, ts, length)
            return
        d = self._dirs[is_orig]
        # A hole inside a body we are skipping anyway costs nothing; anywhere else framing is lost.
        if d.state == "length" and length <= d.remaining:
            d.remaining -= length
            d.body_len += length
            if d.remaining == 0:
                self._body_done(is_orig, ts)
            return
        if d.state == "close":
            d.body_len += length
            return
        self._kill(is_orig)

    def finish(self, ts: float) -> None:
        try:
            resp = self._dirs[False]
            if self._responding is not None and resp.state == "close":
                self._body_done(False, ts)
            if self._responding is not None:
                self._write(self._responding)
                self._responding = None
            if self._requesting is not None and self._requesting not in self._pending:
                self._write(self._requesting)
            self._requesting = None
            while self._pending:
                self._write(self._pending.popleft())
            self._ntlm.finish(ts)
        except Exception:  # see data()
            self._count_error(PROTOCOL, "internal_error")
        if self._switched is not None:
            self._switched.finish(ts)

    # -- framing ------------------------------------------------------------------------------------------

    def _kill(self, is_orig: bool) -> None:
        d = self._dirs[is_orig]
        d.state = "dead"
        d.buf.clear()
        if all(x.state == "dead" for x in self._dirs.values()):
            self._done = True

    def _drive(self, is_orig: bool, ts: float) -> None:
        d = self._dirs[is_orig]
        while d.buf and d.state not in ("dead", "switched") and not self._done:
            if d.state == "upgrading":
                # Sent before the server agreed (or refused): read once the answer says what it is.
                if len(d.buf) > MAX_HEAD:
                    raise ParseError(PROTOCOL, "upgrade_wait_too_long")
                return
            if d.state == "head":
                end = d.buf.find(b"\r\n\r\n")
                sep = 4
                lf = d.buf.find(b"\n\n")
                if lf >= 0 and (end < 0 or lf < end):
                    end, sep = lf, 2
                if end < 0:
                    if not is_orig and self._is_http09_response():
                        self._start_close_body(ts)
                        continue
                    if len(d.buf) > MAX_HEAD:
                        raise ParseError(PROTOCOL, "head_too_large")
                    if self._maybe_http09(is_orig, ts):
                        continue
                    return
                if end == 0 and is_orig:
                    # Stray CRLF between pipelined requests (RFC 9112 section 2.2 allows one).
                    del d.buf[:sep]
                    continue
                if not is_orig and self._is_http09_response():
                    self._start_close_body(ts)
                    continue
                head = bytes(d.buf[:end])
                del d.buf[: end + sep]
                if is_orig:
                    self._request_head(ts, head)
                else:
                    self._response_head(ts, head)
            elif d.state == "length":
                take = min(d.remaining, len(d.buf))
                self._consume(d, take)
                d.remaining -= take
                if d.remaining == 0:
                    self._body_done(is_orig, ts)
            elif d.state == "close":
                self._consume(d, len(d.buf))
            elif d.state == "chunk_size":
                nl = d.buf.find(b"\n")
                if nl < 0:
                    if len(d.buf) > 1024:
                        raise ParseError(PROTOCOL, "bad_chunk_size")
                    return
                size = parser.parse_chunk_size(bytes(d.buf[:nl]).rstrip(b"\r"))
                del d.buf[: nl + 1]
                if size == 0:
                    d.state = "trailer"
                else:
                    d.state, d.remaining = "chunk_data", size
            elif d.state == "chunk_data":
                take = min(d.remaining, len(d.buf))
                self._consume(d, take)
                d.remaining -= take
                if d.remaining == 0:
                    d.state = "chunk_crlf"
            elif d.state == "chunk_crlf":
                nl = d.buf.find(b"\n")
                if nl < 0:
                    if len(d.buf) > 2:
                        raise ParseError(PROTOCOL, "bad_chunk_end")
                    return
                del d.buf[: nl + 1]
                d.state = "chunk_size"
            elif d.state == "trailer":
                nl = d.buf.find(b"\n")
                if nl < 0:
                    if len(d.buf) > MAX_HEAD:
                        raise ParseError(PROTOCOL, "trailer_too_large")
                    return
                line = bytes(d.buf[:nl]).rstrip(b"\r")
                del d.buf[: nl + 1]
                if not line:
                    self._body_done(is_orig, ts)

    def _consume(self, d: _Direction, n: int) -> None:
        if len(d.sniff) < SNIFF_BYTES:
            d.sniff += d.buf[: min(n, SNIFF_BYTES - len(d.sniff))]
        d.body_len += n
        del d.buf[:n]

    def _maybe_http09(self, is_orig: bool, ts: float) -> bool:
        """A complete two-token request line with no head after it is an HTTP/0.9 request."""
        d = self._dirs[is_orig]
        if not is_orig:
            return False
        nl = d.buf.find(b"\n")
        if nl < 0:
            return False
        line = bytes(d.buf[:nl]).rstrip(b"\r")
        if line.count(b" ") != 1:
            return False
        try:
            parser.parse_request_line(line)
        except ParseError:
            return False
        # Clients sending 0.9 usually follow it with header-looking lines anyway; they are not ours to parse.
        del d.buf[:]
        self._request_head(ts, line)
        return True

    def _is_http09_response(self) -> bool:
        txn = self._responding or (self._pending[0] if self._pending else None)
        return txn is not None and txn.record.version == "0.9" and self._dirs[False].state == "head"

    def _start_close_body(self, ts: float) -> None:
        # An HTTP/0.9 response has no head: everything the server sends is the body, until it closes.
        txn = self._pending.popleft()
        self._responding = txn
        txn.record.status_msg = "<empty>"
        d = self._dirs[False]
        d.state, d.body_len, d.sniff = "close", 0, bytearray()

    # -- messages -----------------------------------------------------------------------------------------

    def _request_head(self, ts: float, head: bytes) -> None:
        self._depth += 1
        rec = http_pb2.HttpRecord(uid=self._ctx.uid, trans_depth=self._depth)
        set_time(rec.time, ts)
        txn = _Txn(ts, self._depth, rec)
        d = self._dirs[True]
        d.body_len, d.sniff = 0, bytearray()
        if len(self._pending) >= MAX_PENDING:
            self._count_error(PROTOCOL, "pending_overflow")
            self._write(self._pending.popleft())
        self._pending.append(txn)
        try:
            start, fields = parser.split_head(head)
            line = parser.parse_request_line(start)
        except ParseError as exc:
            # Zeek still logs the exchange (method unset) and pairs the server's answer with it.
            self._count_error(PROTOCOL, exc.reason)
            txn.request_done = True
            self._requesting = None
            d.state = "head"
            return
        rec.method, rec.uri, rec.version = line.method, line.uri, line.version
        if self._tag_sqli and sqli.looks_like_injection(line.uri):
            rec.tags.append(http_pb2.HTTP_TAG_URI_SQLI)
        txn.is_head = line.method == "HEAD"
        txn.is_connect = line.method == "CONNECT"
        length, chunked = self._apply_headers(txn, fields, True)
        if self._upgrades and any(name == "upgrade" for name, _ in fields):
            txn.upgrade_fields = tuple(fields)
        self._requesting = txn
        if line.version == "0.9":
            txn.request_done = True
            d.state = "head"
        elif chunked:
            d.state = "chunk_size"
        elif length:
            d.state, d.remaining = "length", length
        else:
            self._body_done(True, ts)

    def _response_head(self, ts: float, head: bytes) -> None:
        start, fields = parser.split_head(head)
        status = parser.parse_status_line(start)
        if 100 <= status.code < 200 and status.code != 101:
            return  # interim response (100 Continue, 103 Early Hints): the final one follows
        if self._pending:
            txn = self._pending.popleft()
        else:
            # A response nobody asked for (we missed the request): log it on its own.
            self._depth += 1
            txn = _Txn(ts, self._depth, http_pb2.HttpRecord(uid=self._ctx.uid, trans_depth=self._depth))
            set_time(txn.record.time, ts)
        self._responding = txn
        rec = txn.record
        rec.status_code, rec.status_msg = status.code, status.reason
        # Zeek's version column ends up holding the server's version when there is a response.
        rec.version = status.version
        length, chunked = self._apply_headers(txn, fields, False)
        d = self._dirs[False]
        d.body_len, d.sniff = 0, bytearray()
        if status.code == 101 or (txn.is_connect and 200 <= status.code < 300):
            # Protocol switch or tunnel: what follows is not HTTP.
            self._write(txn)
            self._responding = None
            factory = self._upgrade_to(fields) if status.code == 101 else None
            if factory is None:
                self._done = True
            else:
                self._switch(factory, txn, tuple(fields), ts)
            return
        if self._dirs[True].state == "upgrading":
            self._resume_client(ts)
        if txn.is_head or status.code in (204, 304):
            self._body_done(False, ts)
        elif chunked:
            d.state = "chunk_size"
        elif length is not None:
            d.state, d.remaining = "length", length
            if length == 0:
                self._body_done(False, ts)
        else:
            d.state = "close"

    def _resume_client(self, ts: float) -> None:
        """The server said no to the upgrade: the client's held-back bytes are HTTP after all."""
        self._dirs[True].state = "head"
        try:
            self._drive(True, ts)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            self._kill(True)

    def _upgrade_to(self, fields: list[tuple[str, str]]) -> UpgradeFactory | None:
        for name, value in fields:
            if name == "upgrade":
                return self._upgrades.get(protocol_token(value))
        return None

    def _switch(self, factory: UpgradeFactory, txn: _Txn, response_fields: Fields, ts: float) -> None:
        """Hand the connection over: the new session gets the bytes each side sent after its head."""
        upgrade = Upgrade(txn.ts, txn.record, txn.upgrade_fields or (), response_fields)
        held = {}
        for is_orig, d in self._dirs.items():
            held[is_orig] = bytes(d.buf) if d.state != "dead" else b""
            d.buf.clear()
            d.state = "switched"
        self._pending.clear()
        self._requesting = None
        switched = factory(self._ctx, self._emit, self._count_error, upgrade)
        self._switched = switched
        for is_orig in (True, False):
            if held[is_orig]:
                switched.data(is_orig, ts, held[is_orig])

    def _apply_headers(
        self, txn: _Txn, fields: list[tuple[str, str]], is_orig: bool
    ) -> tuple[int | None, bool]:
        rec = txn.record
        length: int | None = None
        chunked = False
        for name, value in fields:
            if name == "content-length":
                try:
                    length = int(value.split(",")[0].strip())
                except ValueError:
                    self._count_error(PROTOCOL, "bad_content_length")
                    continue
                if length < 0:
                    length = None
            elif name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "content-type":
                if is_orig:
                    rec.request_content_type = value
                else:
                    rec.response_content_type = value
            elif is_orig and name == "host":
                rec.host = value
            elif is_orig and name == "referer":
                rec.referrer = value
            elif is_orig and name == "user-agent":
                rec.user_agent = value
            elif is_orig and name in ("authorization", "proxy-authorization"):
                self._auth(txn, value)
            elif not is_orig and name in ("www-authenticate", "proxy-authenticate"):
                self._ntlm_token(False, txn.ts, value)
        return length, chunked

    def _auth(self, txn: _Txn, value: str) -> None:
        scheme = value.strip().split(" ", 1)[0].lower()
        if scheme == "basic":
            txn.record.username = parser.basic_username(value)
        elif scheme in ("ntlm", "negotiate"):
            self._ntlm_token(True, txn.ts, value)

    def _ntlm_token(self, client: bool, ts: float, value: str) -> None:
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() not in ("ntlm", "negotiate") or not token.strip():
            return
        try:
            blob = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            self._count_error(PROTOCOL, "bad_auth_token")
            return
        if client:
            self._ntlm.client_token(ts, blob)
        else:
            self._ntlm.server_token(ts, blob)

    def _body_done(self, is_orig: bool, ts: float) -> None:
        d = self._dirs[is_orig]
        mime = parser.sniff_mime(bytes(d.sniff))
        if is_orig:
            txn = self._requesting
            self._requesting = None
            d.state = "head"
            if txn is None:
                return
            if txn.upgrade_fields is not None and txn in self._pending:
                # Not answered yet: what the client sends next waits for the answer.
                d.state = "upgrading"
            txn.request_done = True
            if txn.written:
                return  # the server answered before the body ended; the record is already out
            txn.record.request_body_len = d.body_len
            if mime:
                txn.record.orig_mime_types.append(mime)
            return
        txn = self._responding
        self._responding = None
        d.state = "head"
        if txn is None:
            return
        txn.record.response_body_len = d.body_len
        if mime:
            txn.record.resp_mime_types.append(mime)
        self._ntlm_outcome(ts, txn.record.status_code)
        self._write(txn)

    def _ntlm_outcome(self, ts: float, status: int) -> None:
        if status == 0:
            return
        # A 401/407 after an AUTHENTICATE is the server saying no; anything else final is a yes.
        self._ntlm.outcome(ts, status not in (401, 407), status)

    def _write(self, txn: _Txn) -> None:
        if txn.written:
            return
        txn.written = True
        if txn.record.version == "0.9" and not txn.record.status_msg:
            txn.record.status_msg = "<empty>"
        self._emit(sensor_pb2.Record(http=txn.record))


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> HttpSession:
    return HttpSession(ctx, emit, count_error)


def session_factory(
    upgrades: Mapping[str, UpgradeFactory] | None = None, tag_sqli: bool = False
) -> SessionFactory:
    """HTTP sessions that hand a connection to ``upgrades[token]`` when the server answers 101 to an
    upgrade to ``token`` (lower case, e.g. "websocket"), and with ``tag_sqli`` tag requests whose target
    reads like an SQL injection (:mod:`sensor.protocols.http.sqli`)."""

    def new(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
        return HttpSession(ctx, emit, count_error, upgrades, tag_sqli)

    return new
