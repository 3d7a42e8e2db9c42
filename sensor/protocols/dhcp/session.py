"""DHCP: one DhcpRecord per exchange, aggregated across the UDP 'connections' the exchange uses.

A lease exchange rarely stays on one 5-tuple: DISCOVER goes 0.0.0.0:68 -> 255.255.255.255:67, the OFFER
comes back unicast or broadcast, later REQUESTs may be unicast. The flow table gives each 5-tuple its own
session, so sessions share a :class:`TransactionTable` keyed by (transaction id, client MAC). An exchange is
written once, when the first of these happens:

* every connection that carried it has finished (the flow table times idle UDP out, so the exchange is over);
* it is older than ``watch_time`` seconds of event time (checked whenever any DHCP message arrives);
* it carries ``max_msg_types`` messages or ``max_uids`` connections (a flood must not grow one row forever);
* the table is full and it is the oldest entry.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field

from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError, set_time
from sensor.protocols.dhcp import parser
from vigil.flow.v1 import dhcp_pb2
from vigil.sensor.v1 import sensor_pb2

PROTOCOL = "dhcp"
_UNSPECIFIED = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff")


def _packed(ip: str) -> bytes:
    try:
        return ipaddress.ip_address(ip).packed
    except ValueError:
        return b""


@dataclass(slots=True)
class _Event:
    ts: float
    seq: int
    msg: parser.DhcpMessage
    src: bytes
    dst: bytes


@dataclass(slots=True)
class _Exchange:
    first_ts: float
    last_ts: float
    emit: Emit
    trans_id: int
    uids: list[str] = field(default_factory=list)
    live: set[str] = field(default_factory=set)
    # Messages are kept and folded in time order only when the row is written: the flow table feeds
    # sessions connection by connection, so a broadcast OFFER can arrive before the DISCOVER it answers.
    events: list[_Event] = field(default_factory=list)


class TransactionTable:
    """Open DHCP exchanges, shared by every DHCP session of one sensor pipeline."""

    def __init__(
        self, watch_time: float = 30.0, max_entries: int = 10_000, max_msg_types: int = 50, max_uids: int = 10
    ) -> None:
        self.watch_time = watch_time
        self.max_entries = max_entries
        self.max_msg_types = max_msg_types
        self.max_uids = max_uids
        # Insertion order is creation order, so the oldest exchange is always first.
        self._open: OrderedDict[tuple[int, bytes], _Exchange] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def add(self, ctx: ConnContext, emit: Emit, ts: float, is_orig: bool, msg: parser.DhcpMessage) -> None:
        self.expire(ts)
        key = (msg.xid, msg.chaddr)
        ex = self._open.get(key)
        if ex is None:
            if len(self._open) >= self.max_entries:
                self._write(next(iter(self._open)))
            ex = _Exchange(first_ts=ts, last_ts=ts, emit=emit, trans_id=msg.xid)
            self._open[key] = ex
        ex.first_ts = min(ex.first_ts, ts)
        ex.last_ts = max(ex.last_ts, ts)
        ex.emit = emit
        if ctx.uid not in ex.uids:
            ex.uids.append(ctx.uid)
        ex.live.add(ctx.uid)
        src, dst = (ctx.orig_ip, ctx.resp_ip) if is_orig else (ctx.resp_ip, ctx.orig_ip)
        ex.events.append(_Event(ts, len(ex.events), msg, _packed(src), _packed(dst)))
        if len(ex.events) >= self.max_msg_types or len(ex.uids) >= self.max_uids:
            self._write(key)

    def connection_finished(self, uid: str, ts: float) -> None:
        for key in [k for k, ex in self._open.items() if uid in ex.live]:
            ex = self._open[key]
            ex.live.discard(uid)
            if not ex.live:
                self._write(key)
        self.expire(ts)

    def expire(self, now: float) -> None:
        while self._open:
            key, ex = next(iter(self._open.items()))
            if now - ex.first_ts < self.watch_time:
                return
            self._write(key)

    def flush(self) -> None:
        """Write every open exchange (sensor shutdown)."""
        while self._open:
            self._write(next(iter(self._open)))

    def _write(self, key: tuple[int, bytes]) -> None:
        ex = self._open.pop(key)
        rec = dhcp_pb2.DhcpRecord(trans_id=ex.trans_id)
        set_time(rec.time, ex.first_ts)
        for event in sorted(ex.events, key=lambda e: (e.ts, e.seq)):
            _merge(rec, event.msg, event.src, event.dst)
        rec.uids.extend(ex.uids)
        rec.duration.FromNanoseconds(round((ex.last_ts - ex.first_ts) * 1e9))
        ex.emit(sensor_pb2.Record(dhcp=rec))


def _merge(rec: dhcp_pb2.DhcpRecord, msg: parser.DhcpMessage, src: bytes, dst: bytes) -> None:
    """Fold one message into the exchange's record (later values win, as in Zeek's dhcp.log)."""
    rec.msg_types.append(msg.msg_type_name)
    if msg.chaddr and not rec.mac:
        rec.mac = msg.chaddr
    if msg.op == parser.OP_REQUEST:
        # A client that sources a message from a real address tells us who it is.
        if src and src not in _UNSPECIFIED:
            rec.client_addr = src
        if msg.host_name:
            rec.host_name = msg.host_name
        if msg.client_fqdn:
            rec.client_fqdn = msg.client_fqdn
        if msg.requested_addr:
            rec.requested_addr = msg.requested_addr
        if msg.message:
            rec.client_message = msg.message
        if msg.vendor_class:
            rec.vendor_class = msg.vendor_class
        if msg.param_request_list:
            del rec.param_request_list[:]
            rec.param_request_list.extend(msg.param_request_list)
        return
    # Server side. A unicast reply is addressed to the client; keep the client's own word over ours.
    if dst and dst not in _UNSPECIFIED and not rec.client_addr:
        rec.client_addr = dst
    if msg.domain:
        rec.domain = msg.domain
    if msg.message:
        rec.server_message = msg.message
    if msg.yiaddr not in _UNSPECIFIED:
        # Only the server actually handing out a lease counts as "the" server.
        server = msg.server_id or src
        if server and server not in _UNSPECIFIED:
            rec.server_addr = server
        if msg.lease_time is not None:
            rec.lease_time.FromSeconds(msg.lease_time)
        if msg.msg_type == 5:  # ACK
            rec.assigned_addr = msg.yiaddr


class DhcpSession:
    protocol = PROTOCOL

    def __init__(
        self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter, table: TransactionTable
    ) -> None:
        self._ctx = ctx
        self._emit = emit
        self._count_error = count_error
        self._table = table

    @property
    def done(self) -> bool:
        return False

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        try:
            msg = parser.parse_message(payload)
            self._table.add(self._ctx, self._emit, ts, is_orig, msg)
        except ParseError as exc:
            self._count_error(PROTOCOL, exc.reason)
        # A sensor must survive any input: an analyzer bug becomes a counted error, never a crash.
        except Exception:
            self._count_error(PROTOCOL, "internal_error")

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        """UDP has no gaps."""

    def finish(self, ts: float) -> None:
        try:
            self._table.connection_finished(self._ctx.uid, ts)
        except Exception:  # see data()
            self._count_error(PROTOCOL, "internal_error")


class DhcpSessionFactory:
    """A SessionFactory bound to one transaction table (one per sensor pipeline; tests make their own)."""

    def __init__(self, table: TransactionTable | None = None) -> None:
        self.table = table if table is not None else TransactionTable()

    def __call__(self, ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> DhcpSession:
        return DhcpSession(ctx, emit, count_error, self.table)
