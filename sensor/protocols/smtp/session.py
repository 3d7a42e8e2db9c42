"""SMTP per-connection state: command and reply lines, mail transactions, AUTH, STARTTLS.

The client side is read as command lines, except inside a message (after the server's 354 answer to
DATA, up to the end-of-data line) and inside BDAT chunks (a byte count); the server side as reply lines,
each final reply answering the oldest command still waiting (PIPELINING sends several at once). From
AUTH to the server's final answer the client's lines are SASL responses: the user name is decoded from
the first, the rest (passwords, digests, tokens) is not kept. After STARTTLS and the server's 220 the
rest of the connection is TLS: it goes to a TLS session of its own, which writes the connection's ssl
record.

Records follow Zeek's smtp.log: a transaction's record is written when the server answers the end of
its message, when a MAIL starts another transaction before the last one sent a message (a refused or
reset transaction), or when the connection ends (then only if a MAIL, RCPT or STARTTLS was seen). With
PIPELINING the next MAIL may come before that answer: the sent message's record waits with its end line
for the answer, so each record holds its own transaction (Zeek's script would write the next MAIL into
the waiting record). A session that authenticated and sent no mail gets a record too
(``transaction_seen`` false), so a password guess shows.
"""

from __future__ import annotations

from collections import deque

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, Session, set_time
from sensor.protocols.lines import (
    Dialogue,
    Reply,
    is_command_verb,
    split_command,
    text,
)
from sensor.protocols.smtp import parser
from vigil.flow.v1 import smtp_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "smtp"
# Commands waiting for their replies; a PIPELINING group is a handful, so more is a flood.
MAX_PENDING = 64
# Consecutive lines that are not SMTP after which a direction is given up (a binary protocol on 25).
MAX_BAD_LINES = 8
# A first reply with one of these codes is the server's greeting (RFC 5321 section 3.1).
GREETING_CODES = frozenset({220, 421, 554})
# SASL responses one AUTH exchange may take (GSSAPI needs a few); past them the server's answer was lost.
MAX_SASL_RESPONSES = 16
# Pseudo-commands waiting for the answer to a message: its end-of-data line, or a BDAT ... LAST chunk.
END_OF_MESSAGE = "."
LAST_CHUNK = "BDAT LAST"


class _Message:
    """A message the client is sending: its size so far and its header block (bounded)."""

    __slots__ = ("_tail", "head", "head_done", "size")

    def __init__(self) -> None:
        self.size = 0
        self.head = bytearray()
        self.head_done = False
        # The DATA command's line ending: a message may end at once with ".\r\n".
        self._tail = b"\r\n"

    def add(self, data: bytes) -> None:
        """Message bytes: counted, and kept while the header block lasts."""
        self.size += len(data)
        if self.head_done:
            return
        self.head += data[: parser.MAX_HEADER_BLOCK + 1 - len(self.head)]
        end = parser.header_block_end(self.head)
        if end >= 0:
            del self.head[end:]
            self.head_done = True
        elif len(self.head) > parser.MAX_HEADER_BLOCK:
            # Keep the whole lines; the headers past them are lost, the size still counts.
            del self.head[self.head.rfind(b"\n") + 1 :]
            self.head_done = True

    def data(self, chunk: bytes) -> int:
        """DATA bytes: how many of ``chunk`` belong to the message and its end line, or -1 when all of
        them do and the end has not come yet."""
        window = self._tail + chunk
        at = window.find(parser.END_OF_DATA)
        if at < 0:
            self.add(chunk)
            self._tail = window[-4:]
            return -1
        inside = at - len(self._tail)
        if inside > 0:
            self.add(chunk[:inside])
        else:
            # The end sequence began in bytes already counted (its CRLF ended the last line).
            self.size = max(self.size + inside, 0)
        return at + len(parser.END_OF_DATA) - len(self._tail)

    def lost(self, length: int) -> None:
        """Bytes of the message the capture missed: counted; an end line can not straddle them."""
        self.size += length
        self.head_done = True
        self._tail = b""


class SmtpSession(Dialogue):
    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        super().__init__(ctx, emit, count_error, PROTOCOL)
        # Commands waiting for their final reply, oldest first; a message's end line carries its record.
        self._pending: deque[tuple[str, smtp_pb2.SmtpRecord | None]] = deque()
        self._greeted = False
        self._helo = ""
        self._messages = 0
        self._last_reply = ""
        # The transaction the client is composing; transaction_seen once it had a MAIL, RCPT or STARTTLS.
        self._rec: smtp_pb2.SmtpRecord | None = None
        # The latest AUTH exchange; it stays on every later record of the session, as helo does.
        self._auth_mechanism = ""
        self._auth_user = ""
        self._auth_success: bool | None = None
        self._auth_failures = 0
        self._auth_open = False
        self._auth_responses = 0
        self._auth_unreported = False
        # The message being sent (across BDAT chunks too); _in_data while DATA's bytes are being read.
        self._message: _Message | None = None
        self._in_data = False
        self._chunk_left = 0

    # -- Session interface -------------------------------------------------------------------------------

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if not self._still_ours(is_orig, ts, payload):
            return
        try:
            if is_orig:
                self._client(ts, payload)
            else:
                self._server(ts, payload)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
            self._give_up(is_orig)
        # A sensor must survive any input: an analyzer bug becomes a counted error, never a crash.
        except Exception:
            self._count_error(PROTOCOL, "internal_error")
            self._give_up(is_orig)

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        if self._tls is not None:
            self._tls.gap(is_orig, ts, length)
        elif is_orig and self._chunk_left and self._message is not None:
            lost = min(length, self._chunk_left)
            self._message.lost(lost)
            self._chunk_left -= lost
            if not self._chunk_left:
                self._chunk_done(ts)
            if length > lost:
                self._lines[True].resync()
        elif is_orig and self._in_data and self._message is not None:
            self._message.lost(length)
        else:
            self._lines[is_orig].resync()

    def finish(self, ts: float) -> None:
        try:
            if self._message is not None:
                # The connection ended inside a message: what was sent of it is still reported.
                self._count_error(PROTOCOL, "unterminated_data")
                self._take_message(ts)
            for _, sent in self._pending:
                if sent is not None:
                    self._write(sent, self._last_reply)
            self._pending.clear()
            rec = self._rec
            if rec is not None and (rec.transaction_seen or self._auth_unreported):
                self._write(rec, self._last_reply)
        except Exception:  # see data()
            self._count_error(PROTOCOL, "internal_error")
        if self._tls is not None:
            self._tls.finish(ts)

    # -- client ------------------------------------------------------------------------------------------

    def _client(self, ts: float, data: bytes) -> None:
        pos = 0
        while pos < len(data) and not self._dead[True] and self._tls is None:
            chunk = data[pos:] if pos else data
            if self._chunk_left and self._message is not None:
                take = min(self._chunk_left, len(chunk))
                self._message.add(chunk[:take])
                self._chunk_left -= take
                pos += take
                if not self._chunk_left:
                    self._chunk_done(ts)
                continue
            if self._in_data and self._message is not None:
                used = self._message.data(chunk)
                if used < 0:
                    return
                pos += used
                self._take_message(ts)
                self._pending.append((END_OF_MESSAGE, self._sent(ts)))
                continue
            reader = self._lines[True]
            for line in reader.feed(chunk):
                self._command(ts, line)
                if self._chunk_left or self._in_data or self._dead[True]:
                    pos += reader.consumed
                    break
            else:
                return

    def _command(self, ts: float, line: bytes) -> None:
        if self._auth_open:
            self._sasl_response(line)
            return
        verb, arg = split_command(line)
        if not is_command_verb(verb):
            self._bad_line(True, "bad_command")
            return
        self._bad[True] = 0
        self._record(ts)
        if len(self._pending) >= MAX_PENDING:
            _, dropped = self._pending.popleft()
            if dropped is not None:
                self._write(dropped, self._last_reply)
            self._count_error(PROTOCOL, "too_many_pending_commands")
        self._pending.append((verb, None))
        if verb in ("HELO", "EHLO"):
            self._helo = arg
            self._record(ts).helo = arg
        elif verb == "MAIL" and arg[:5].upper() == "FROM:":
            if self._record(ts).transaction_seen:
                # The previous transaction sent no message (refused, reset): it is written now, as Zeek does.
                self._write(self._record(ts), self._last_reply)
                self._rec = None
            rec = self._record(ts)
            rec.mailfrom = parser.first_address(arg)
            rec.transaction_seen = True
        elif verb == "RCPT" and arg[:3].upper() == "TO:":
            rec = self._record(ts)
            for addr in parser.addresses(arg):
                if addr not in rec.rcptto and len(rec.rcptto) < parser.MAX_ADDRESSES:
                    rec.rcptto.append(addr)
            rec.transaction_seen = True
        elif verb == "AUTH":
            self._start_auth(arg)
        elif verb == "BDAT":
            self._start_chunk(ts, arg)

    def _start_auth(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        self._auth_mechanism = mechanism.upper()[:64]
        self._auth_user = ""
        self._auth_success = None
        self._auth_open = True
        self._auth_responses = 0
        self._auth_unreported = True
        if initial:
            self._sasl_response(initial.encode("latin-1", "replace"))

    def _sasl_response(self, line: bytes) -> None:
        if self._auth_responses >= MAX_SASL_RESPONSES:
            self._count_error(PROTOCOL, "auth_exchange_too_long")
            self._auth_open = False
            return
        response = text(line).strip()
        if self._auth_responses == 0 and response != "*":
            decoded = parser.decode_sasl(response)
            if decoded is None:
                self._count_error(PROTOCOL, "bad_sasl_response")
            else:
                self._auth_user = parser.auth_user(self._auth_mechanism, decoded)[:256]
        self._auth_responses += 1

    def _start_chunk(self, ts: float, arg: str) -> None:
        size = parser.bdat_size(arg)
        if size is None:
            self._count_error(PROTOCOL, "bad_bdat")
            return
        length, last = size
        if last:
            self._pending[-1] = (LAST_CHUNK, None)
        self._message = self._message or _Message()
        self._chunk_left = length
        if not length:
            self._chunk_done(ts)

    def _chunk_done(self, ts: float) -> None:
        if self._pending and self._pending[-1][0] == LAST_CHUNK:
            self._take_message(ts)
            self._pending[-1] = (LAST_CHUNK, self._sent(ts))

    def _sent(self, ts: float) -> smtp_pb2.SmtpRecord:
        """The client finished its message: the transaction waits for the server's answer, and the next
        one (if any) gets the next record."""
        rec = self._record(ts)
        self._rec = None
        self._messages += 1
        return rec

    def _take_message(self, ts: float) -> None:
        """The message is complete (or the connection ended inside it): its size and headers go into
        the transaction's record."""
        message = self._message
        if message is None:
            return
        self._message = None
        self._in_data = False
        self._chunk_left = 0
        rec = self._record(ts)
        rec.data_bytes += message.size
        headers = parser.parse_headers(bytes(message.head))
        for name in ("date", "from_header", "reply_to", "msg_id", "in_reply_to", "subject", "user_agent",
                     "first_received", "second_received", "x_originating_ip"):  # fmt: skip
            value = getattr(headers, name)
            if value:
                setattr(rec, name, value)
        rec.to.extend(headers.to)
        rec.cc.extend(headers.cc)

    # -- server ------------------------------------------------------------------------------------------

    def _server(self, ts: float, data: bytes) -> None:
        reader = self._lines[False]
        for line in reader.feed(data):
            reply = self._replies.read(line)
            if reply is None:
                self._bad_line(False, "bad_reply")
                if self._dead[False]:
                    return
                continue
            self._bad[False] = 0
            self._reply(ts, reply)
            if self._tls is not None:
                self._to_tls(ts, data[reader.consumed :])
                return

    def _reply(self, ts: float, reply: Reply) -> None:
        self._record(ts)
        if reply.code:
            self._last_reply = f"{reply.code} {reply.text}"
        if reply.more:
            return
        if not self._greeted:
            self._greeted = True
            if reply.code in GREETING_CODES and not self._pending:
                return
        if not self._pending:
            self._count_error(PROTOCOL, "reply_without_command")
            return
        command, sent = self._pending.popleft()
        code = reply.code
        if command == "AUTH":
            if code == 334:
                self._pending.appendleft((command, sent))  # the exchange goes on
                return
            self._auth_open = False
            self._auth_success = code == 235
            if not self._auth_success:
                self._auth_failures += 1
        elif command == "DATA" and code == 354:
            self._message = _Message()
            self._in_data = True
            held = self._lines[True].rest()
            if held:
                self._client(ts, held)
        elif sent is not None:
            self._write(sent, f"{code} {reply.text}")
        elif command == "STARTTLS" and code == 220:
            rec = self._record(ts)
            rec.tls = True
            rec.transaction_seen = True
            self._start_tls()

    def _to_tls(self, ts: float, server_rest: bytes) -> None:
        assert self._tls is not None
        client_rest = self._lines[True].rest()
        if client_rest:
            self._tls.data(True, ts, client_rest)
        if server_rest:
            self._tls.data(False, ts, server_rest)

    # -- records -----------------------------------------------------------------------------------------

    def _record(self, ts: float) -> smtp_pb2.SmtpRecord:
        if self._rec is None:
            self._rec = smtp_pb2.SmtpRecord(
                uid=self._ctx.uid, trans_depth=self._messages + 1, helo=self._helo
            )
            set_time(self._rec.time, ts)
        return self._rec

    def _write(self, rec: smtp_pb2.SmtpRecord, last_reply: str) -> None:
        """A transaction's record goes out, with the session's latest AUTH exchange."""
        rec.last_reply = last_reply
        if self._auth_mechanism:
            rec.auth_mechanism = self._auth_mechanism
            rec.auth_user = self._auth_user
            if self._auth_success is not None:
                rec.auth_success = self._auth_success
        rec.auth_failures_count = self._auth_failures
        self._emit(sensor_pb2.Record(smtp=rec))
        self._auth_unreported = False

    # -- malformed input ---------------------------------------------------------------------------------

    def _bad_line(self, is_orig: bool, reason: str) -> None:
        self._count_error(PROTOCOL, reason)
        self._bad[is_orig] += 1
        if self._bad[is_orig] >= MAX_BAD_LINES:
            self._count_error(PROTOCOL, "not_smtp")
            self._give_up(is_orig)

    def _give_up(self, is_orig: bool) -> None:
        self._dead[is_orig] = True
        self._lines[is_orig].rest()
        if is_orig:
            self._message = None
            self._in_data = False
            self._chunk_left = 0


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Session:
    return SmtpSession(ctx, emit, count_error)
