"""DNS per-connection state: pair queries with replies by transaction id and emit one DnsRecord each."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, set_time
from sensor.protocols.dns import parser
from vigil.flow.v1 import dns_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "dns"
# Outstanding queries per connection. A resolver talking to one server over one socket can have a few
# hundred in flight; beyond that we are being flooded and the oldest are logged as unanswered.
MAX_PENDING = 512
# TCP DNS messages are at most 64 KiB; never buffer more than one message plus its prefix.
MAX_TCP_BUFFER = 65537
# Types Zeek consumes without logging them as answers (key exchange and transaction signatures).
_UNLOGGED_TYPES = frozenset({parser.TYPE_OPT, parser.TYPE_TKEY, parser.TYPE_TSIG})


@dataclass(slots=True)
class _Pending:
    ts: float
    msg: parser.Message


def _add_answers(out: RepeatedCompositeFieldContainer[dns_pb2.DnsAnswer], msg: parser.Message) -> None:
    # add() builds each answer in place inside the record; constructing then extend()ing copies it.
    if msg.opcode == parser.OPCODE_UPDATE and not msg.is_response:
        # RFC 2136 reuses the answer/authority sections for prerequisites and updates.
        for rr in msg.answers:
            value = parser.update_summary(rr, True)
            out.add(name=rr.name, rr_type=rr.rtype, value=value, ttl_seconds=rr.ttl)
        for rr in msg.authority:
            value = parser.update_summary(rr, False)
            out.add(name=rr.name, rr_type=rr.rtype, value=value, ttl_seconds=rr.ttl)
        return
    for rr in msg.answers:
        if rr.rtype in _UNLOGGED_TYPES:
            continue
        out.add(name=rr.name, rr_type=rr.rtype, value=rr.rendered, ttl_seconds=rr.ttl)


def _update_subject(msg: parser.Message) -> str:
    # Zeek names an update by the owner name it changes, not by the zone in the question section.
    for rr in (*msg.answers, *msg.authority):
        return rr.name
    return msg.questions[0].name if msg.questions else ""


class DnsSession:
    """One UDP or TCP connection carrying DNS (also mDNS and LLMNR, which share the wire format)."""

    protocol = PROTOCOL

    def __init__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._tcp = ctx.transport == "tcp"
        self._buffers = {True: bytearray(), False: bytearray()}
        # Directions whose stream lost sync (gap or bad length); TCP framing cannot recover from that.
        self._broken: set[bool] = set()
        self._pending: OrderedDict[int, deque[_Pending]] = OrderedDict()
        self._pending_count = 0
        # Zeek's rule: when the first message on the connection is a response from the originator, the
        # roles are flipped (the query was missed, so the sender is the server).
        self._first_message = True
        self._roles_flipped = False

    @property
    def done(self) -> bool:
        return self._tcp and len(self._broken) == 2

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        try:
            if self._tcp:
                self._tcp_data(is_orig, ts, payload)
            else:
                self._message(is_orig, ts, payload)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
        # A sensor must survive any input: an analyzer bug becomes a counted error, never a crash.
        except Exception:
            self._count_error(PROTOCOL, "internal_error")

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        if self._tcp:
            self._broken.add(is_orig)
            self._buffers[is_orig].clear()

    def finish(self, ts: float) -> None:
        try:
            for queue in self._pending.values():
                for pending in queue:
                    self._emit_record(pending.ts, pending.msg, None, None)
            self._pending.clear()
            self._pending_count = 0
        except Exception:  # see data()
            self._count_error(PROTOCOL, "internal_error")

    def _tcp_data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if is_orig in self._broken:
            return
        buf = self._buffers[is_orig]
        buf += payload
        while len(buf) >= 2:
            length = (buf[0] << 8) | buf[1]
            if length < parser.HEADER_LEN:
                self._broken.add(is_orig)
                buf.clear()
                raise ParseError(PROTOCOL, "tcp_bad_length")
            if len(buf) < 2 + length:
                break
            message = bytes(buf[2 : 2 + length])
            del buf[: 2 + length]
            try:
                self._message(is_orig, ts, message)
            except ParseError as exc:
                # One bad message does not desynchronise the length-prefixed stream.
                self._count_error(PROTOCOL, exc.reason)
        if len(buf) > MAX_TCP_BUFFER:
            self._broken.add(is_orig)
            buf.clear()

    def _message(self, is_orig: bool, ts: float, payload: bytes) -> None:
        msg = parser.parse_message(payload)
        if self._first_message:
            self._first_message = False
            self._roles_flipped = msg.is_response and is_orig
        if not msg.is_response:
            self._add_pending(ts, msg)
            return
        queue = self._pending.get(msg.trans_id)
        if queue:
            pending = queue.popleft()
            self._pending_count -= 1
            if not queue:
                del self._pending[msg.trans_id]
            self._emit_record(pending.ts, pending.msg, msg, ts)
        else:
            self._emit_record(ts, None, msg, ts)

    def _add_pending(self, ts: float, msg: parser.Message) -> None:
        if self._pending_count >= MAX_PENDING:
            oldest_id, queue = next(iter(self._pending.items()))
            old = queue.popleft()
            if not queue:
                del self._pending[oldest_id]
            self._pending_count -= 1
            self._count_error(PROTOCOL, "pending_overflow")
            self._emit_record(old.ts, old.msg, None, None)
        self._pending.setdefault(msg.trans_id, deque()).append(_Pending(ts, msg))
        self._pending_count += 1

    def _emit_record(
        self, ts: float, query: parser.Message | None, reply: parser.Message | None, reply_ts: float | None
    ) -> None:
        # Filled in place inside the envelope: Record(dns=rec) would copy the whole message again.
        record = sensor_pb2.Record()
        rec = record.dns
        rec.uid = self._ctx.uid
        set_time(rec.time, ts)
        rec.roles_flipped = self._roles_flipped
        first = query if query is not None else reply
        assert first is not None
        rec.trans_id = first.trans_id
        rec.opcode = first.opcode
        answers = rec.answers
        if query is not None:
            if query.opcode == parser.OPCODE_UPDATE:
                rec.query = _update_subject(query)
            elif query.questions:
                q = query.questions[0]
                rec.query, rec.qclass, rec.qtype = q.name, q.qclass, q.qtype
            # RD is a property of the question; Zeek leaves it false for replies seen without one.
            rec.recursion_desired = query.recursion_desired
            rec.truncated = query.truncated
            rec.z = query.z
            _add_answers(answers, query)
        if reply is not None:
            if not rec.query and reply.questions:
                # Zeek takes only the name from an unmatched reply's question section.
                rec.query = reply.questions[0].name
            rec.rcode = reply.rcode
            rec.authoritative = reply.authoritative
            rec.recursion_available = reply.recursion_available
            rec.truncated = rec.truncated or reply.truncated
            if reply.opcode != parser.OPCODE_UPDATE:
                # An UPDATE reply echoes the zone and prerequisites; the request already said what changed.
                _add_answers(answers, reply)
            rec.rejected = (
                reply.rcode != 0 and not reply.answers and not reply.authority and not reply.additional
            )
        # Zeek measures the round trip when the first logged answer arrives; it leaves it unset otherwise.
        if query is not None and reply_ts is not None and answers:
            rec.rtt_ms = (reply_ts - ts) * 1000.0
        self._emit(record)


def new_session(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> DnsSession:
    return DnsSession(ctx, emit, count_error)
