"""Bidirectional flow table with Zeek conn.log semantics, fed whole decoded blocks.

Per block:
  1. canonical keys (lower endpoint first) and a 64-bit key hash, computed over all packets at once;
  2. one stable sort by hash groups the packets of each connection (time order kept inside a group);
     groups are split where a connection was idle past its timeout;
  3. one Python step per group finds or creates the connection and decides its originator;
  4. counters, byte spans and the "first data / first ack" markers are numpy reductions per group;
  5. only TCP control packets (SYN/FIN/RST) and each direction's first data, first bare ACK and
     first retransmission run through Zeek's endpoint state machine in Python, in packet order —
     a handful per connection, not one per packet;
  6. packets of connections with an analyzer session that still wants data are handed to Python.

Connections leave the table after the idle timeout of their transport, ``close_linger_s`` after
they closed, or — for an unanswered TCP attempt (S0: a SYN, nothing from the responder) — after
``attempt_timeout_s``. Like the other timeouts it is checked at block boundaries (``expire``) and
when the connection's next packet arrives, not between two packets of one block.

TCP payload sizes follow Zeek: the sequence-number span each endpoint covered (including data acked
by the peer but never captured), minus the SYN and FIN octets. ``missed_bytes`` is that span minus
the bytes actually seen. Connections over 4 GiB per direction wrap (the 32-bit span is not unwrapped).
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from sensor.capture import PacketBlock
from sensor.decode import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TH_ACK,
    TH_FIN,
    TH_RST,
    TH_SYN,
    DecodedBlock,
)
from sensor.emitter import addr_bytes
from sensor.messages import MessageClock, record_messages
from sensor.protocols.base import ConnContext, ParseError, Session
from sensor.reassembly import M32, StreamReassembler, seq_diff
from sensor.registry import Analyzer, Registry
from sensor.weird import Weird, WeirdLog
from vigil.config import SensorConfig
from vigil.sensor.v1 import sensor_pb2

Arr = npt.NDArray[Any]

# Zeek TCP endpoint states.
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
TOO_LARGE_SEQ_DELTA = 1048576
MAX_HISTORY = 256

# History bits, per direction (Zeek's CheckHistory masks): a letter is logged once per direction.
H_SYN, H_SYNACK, H_ACK, H_DATA, H_FIN, H_RST, H_RXMIT, H_MULTI, H_FINRST, H_GAP = (1 << i for i in range(10))
_BIT_OF = {
    "S": H_SYN,
    "H": H_SYNACK,
    "A": H_ACK,
    "D": H_DATA,
    "F": H_FIN,
    "R": H_RST,
    "T": H_RXMIT,
    "Q": H_MULTI,
    "I": H_FINRST,
    "G": H_GAP,
}

# Zeek's scaled history entries ('T' retransmissions, 'W' zero windows): the letter is logged again at each
# power of ten of the count, so a history shows how often without growing one letter per event.
_SCALED_THRESHOLDS = np.array([10**k for k in range(10)], dtype=np.int64)
_SCALED_COUNTS = frozenset(_SCALED_THRESHOLDS.tolist())

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Sort key of a queued history letter (position, letter): the position alone.
_position = itemgetter(0)

# Payload packets of a connection without a port analyzer that the payload heuristics look at.
HEURISTIC_TRIES = 4

# A packet payload handed to analyzers, and a (protocol, reason) error counter.
ErrorCounter = Callable[[str, str], None]


def _mix(x: Arr) -> Arr:
    x = x ^ (x >> np.uint64(31))
    x = x * np.uint64(0x7FB5D329728EA185)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x81DADEF4BC2DD44D)
    out: Arr = x ^ (x >> np.uint64(33))
    return out


class Endpoint:
    """One side of a connection: Zeek's TCP endpoint state plus counters."""

    __slots__ = (
        "did_close",
        "fin_cnt",
        "hist_fin",
        "hist_rst",
        "hist_syn",
        "ip_bytes",
        "max_ack",
        "max_end",
        "payload",
        "pkts",
        "prev_state",
        "reasm",
        "rxmits",
        "seen_bytes",
        "size_base",
        "start",
        "state",
        "zero_windows",
    )

    def __init__(self) -> None:
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.start: int | None = None
        self.max_end = 0  # highest relative sequence number sent (one past)
        self.max_ack = 0  # highest relative sequence number the peer acknowledged
        self.fin_cnt = 0
        self.did_close = False
        self.hist_syn = -1
        self.hist_fin = -1
        self.hist_rst = -1
        self.pkts = 0
        self.ip_bytes = 0
        self.payload = 0  # non-TCP payload bytes
        self.seen_bytes = 0  # TCP payload bytes actually captured (new, not retransmitted)
        self.rxmits = 0  # retransmitted data packets (history 'T' at the 1st, 10th, 100th, ...)
        self.zero_windows = 0  # zero-window advertisements (history 'W', scaled the same way)
        self.size_base = 0  # bytes already reported by earlier partial records
        self.reasm: StreamReassembler | None = None

    def set_state(self, state: int) -> None:
        self.prev_state = self.state
        self.state = state

    def tcp_size(self) -> int:
        if self.prev_state == SYN_SENT and self.state == RESET:
            return 0
        size = max(self.max_end, self.max_ack)
        if size > 0:
            size -= 1  # the SYN octet (assumed for partial connections, as Zeek does)
        if self.fin_cnt and size > 0:
            size -= 1
        return size


class Conn:
    """A connection in the table (Zeek's ``connection``)."""

    __slots__ = (
        "a_is_orig",
        "clock",
        "closed_at",
        "family",
        "guessed",
        "heuristic_tries",
        "hist",
        "hist_seen_o",
        "hist_seen_r",
        "icmp_code",
        "inner_vlan",
        "key",
        "last",
        "macs",
        "o_addr",
        "o_port",
        "orig",
        "pending",
        "proto",
        "r_addr",
        "r_port",
        "rec_start",
        "resp",
        "service",
        "session",
        "start",
        "tclass",
        "uid",
        "unconfirmed",
        "vlan",
    )

    def __init__(self, key: tuple[int, ...], uid: str, proto: int, ts: float) -> None:
        self.key = key
        self.uid = uid
        self.proto = proto
        self.start = ts
        self.rec_start = ts
        self.last = ts
        self.orig = Endpoint()
        self.resp = Endpoint()
        self.hist: list[str] = []
        self.hist_seen_o = 0
        self.hist_seen_r = 0
        # (position in the block, letter); a position may be fractional to follow the packet's other letters.
        self.pending: list[tuple[float, str]] = []
        self.closed_at: float | None = None
        self.service: list[str] = []
        # The analyzer whose session must confirm its protocol before the service is named (see
        # Session.confirmed); "" once named or when the session needs no confirmation.
        self.unconfirmed = ""
        self.session: Session | None = None
        self.heuristic_tries = 0
        self.guessed = False
        self.a_is_orig = True
        self.family = 4
        self.o_addr = (0, 0)
        self.r_addr = (0, 0)
        self.o_port = 0
        self.r_port = 0
        self.macs = (0, 0, False)
        self.vlan = 0
        self.inner_vlan = 0
        self.tclass = 0
        self.icmp_code = 0
        self.clock = MessageClock()

    # -- history -------------------------------------------------------------------------------
    def check_history(self, is_orig: bool, letter: str, pos: int) -> bool:
        """Queue ``letter`` (upper case) for this direction unless already logged; True if new."""
        bit = _BIT_OF[letter]
        if is_orig:
            if self.hist_seen_o & bit:
                return False
            self.hist_seen_o |= bit
            self.pending.append((pos, letter))
        else:
            if self.hist_seen_r & bit:
                return False
            self.hist_seen_r |= bit
            self.pending.append((pos, letter.lower()))
        return True

    def add_history(self, is_orig: bool, letter: str, pos: float) -> None:
        self.pending.append((pos, letter if is_orig else letter.lower()))

    def commit_history(self) -> None:
        pending = self.pending
        if pending:
            if len(pending) > 1:
                # By position only (stable): two letters of one packet keep the order they were queued in.
                pending.sort(key=_position)
            # Repeated SYN/FIN/RST letters are unbounded in Zeek; a cap keeps a flood on one 5-tuple
            # from growing one connection's history without limit.
            room = MAX_HISTORY - len(self.hist)
            if room > 0:
                self.hist.extend([letter for _, letter in pending[:room]])
            self.pending = []

    def zero_window(self, is_orig: bool, pos: int) -> None:
        """A zero-window advertisement, judged on the states before its packet (as Zeek's update_window,
        which runs before the state machine): not after the sender reset, nor once the peer has closed
        (no window matters then). Its 'W' follows the packet's other history letter."""
        ep, peer = (self.orig, self.resp) if is_orig else (self.resp, self.orig)
        if peer.state == CLOSED or ep.state == RESET:
            return
        ep.zero_windows += 1
        if ep.zero_windows in _SCALED_COUNTS:
            self.add_history(is_orig, "W", pos + 0.5)

    # -- Zeek TCP state machine, one packet --------------------------------------------------------
    def tcp_packet(
        self, is_orig: bool, flags: int, seq: int, ack: int, plen: int, ts: float, pos: int
    ) -> None:
        ep, peer = (self.orig, self.resp) if is_orig else (self.resp, self.orig)
        syn, fin, rst, ackf = flags & TH_SYN, flags & TH_FIN, flags & TH_RST, flags & TH_ACK
        seg_len = plen + (1 if syn else 0) + (1 if fin else 0)
        if rst:
            seg_len -= plen
        # init_endpoint
        if ep.state == INACTIVE:
            ep.start = seq if syn else (seq - 1) & M32
            ep.max_end = seq_diff(seq + seg_len, ep.start) if syn else 1
        elif (
            syn
            and (ep.start is None or seq != ep.start)
            and ep.state != CLOSED
            and (ep.state != RESET or ep.prev_state == INACTIVE)
        ):
            # A SYN with a new sequence number restarts this endpoint's numbering (Zeek's init_endpoint).
            ep.start = seq
            ep.max_end = seg_len
        assert ep.start is not None
        rel_seq = seq_diff(seq, ep.start)
        # update_history
        bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if bits > 1:
            self.check_history(is_orig, "I" if fin and rst else "Q", pos)
        elif bits == 1:
            if syn:
                code = "H" if ackf else "S"
                if not self.check_history(is_orig, code, pos) and rel_seq != ep.hist_syn:
                    self.add_history(is_orig, code, pos)
                ep.hist_syn = rel_seq
            if fin:
                if not self.check_history(is_orig, "F", pos) and rel_seq + plen != ep.hist_fin:
                    self.add_history(is_orig, "F", pos)
                ep.hist_fin = rel_seq + plen
            if rst:
                if not self.check_history(is_orig, "R", pos) and rel_seq != ep.hist_rst:
                    self.add_history(is_orig, "R", pos)
                ep.hist_rst = rel_seq
        elif plen:
            self.check_history(is_orig, "D", pos)
        elif ackf:
            self.check_history(is_orig, "A", pos)
        if fin:
            ep.fin_cnt += 1
        if ackf:
            if peer.state == INACTIVE:
                # Number the peer's sequence space as if its SYN had been seen.
                if peer.start is None:
                    peer.start = (ack - 1) & M32
                    peer.max_end = 0
            elif not rst and peer.start is not None:
                rel_ack = seq_diff(ack, peer.start)
                if (
                    rel_ack > 0
                    and rel_ack > peer.max_ack
                    and not (ack == 0 and rel_ack > TOO_LARGE_SEQ_DELTA)
                ):
                    peer.max_ack = rel_ack
        # update_last_seq
        rel_end = rel_seq + seg_len
        delta = rel_end - ep.max_end
        if (syn or rst) and (delta > TOO_LARGE_SEQ_DELTA or delta < -TOO_LARGE_SEQ_DELTA):
            pass
        elif fin and ep.max_end == 1:
            ep.max_end = rel_end
        elif ep.state == RESET:
            pass
        elif delta > 0:
            ep.max_end = rel_end
        self._update_state(ep, peer, is_orig, flags, plen, ts, pos)

    def _update_state(
        self, ep: Endpoint, peer: Endpoint, is_orig: bool, flags: int, plen: int, ts: float, pos: int
    ) -> None:
        syn, fin, rst, ackf = flags & TH_SYN, flags & TH_FIN, flags & TH_RST, flags & TH_ACK
        do_close = False
        st = ep.state
        if st == INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(SYN_ACK_SENT if ackf else SYN_SENT)
                else:
                    if not ackf and peer.state == SYN_ACK_SENT:
                        # SYN / SYN-ACK reversal: the SYN-ACK sender was really the responder.
                        self.flip(pos)
                        peer.set_state(ESTABLISHED)
                    if peer.state == SYN_SENT:
                        peer.set_state(ESTABLISHED)
                    ep.set_state(ESTABLISHED)
            if fin:
                ep.set_state(CLOSED)
                do_close = True
            if rst:
                ep.set_state(RESET)
                do_close = True
            if ep.state == INACTIVE:
                if not is_orig and plen == 0 and self.orig.state == SYN_SENT:
                    pass  # an early bare ACK of a SYN does not make a partial connection
                elif ackf and peer.state == ESTABLISHED:
                    ep.set_state(ESTABLISHED)
                else:
                    ep.set_state(PARTIAL)
        elif st in (SYN_SENT, SYN_ACK_SENT):
            if fin:
                ep.set_state(CLOSED)
                do_close = True
            if rst:
                ep.set_state(RESET)
                do_close = True
        elif st in (ESTABLISHED, PARTIAL):
            if syn and st == PARTIAL and peer.state == INACTIVE and not ackf:
                ep.set_state(SYN_SENT)
            if fin and not rst:
                ep.set_state(CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    peer.set_state(CLOSED)  # peer's FIN then RST was a normal close after all
                do_close = True
            if rst:
                ep.set_state(RESET)
                do_close = True
        elif st == CLOSED and rst and peer.state != CLOSED:
            ep.set_state(RESET)
            if not ep.did_close:
                do_close = True
        if do_close and not ep.did_close:
            ep.did_close = True
            if ep.state == RESET or peer.did_close or peer.state == INACTIVE:
                self.closed_at = ts

    def end_time(self) -> float:
        """When the connection ended, for its duration: at the second FIN of an orderly close (as Zeek
        ends it; the ACK after it still counts in packets and bytes), else at its last packet."""
        closed = self.closed_at
        if closed is not None and self.orig.state == CLOSED and self.resp.state == CLOSED:
            return min(self.last, max(closed, self.rec_start))
        return self.last

    def flip(self, pos: int) -> None:
        self.orig, self.resp = self.resp, self.orig
        self.o_addr, self.r_addr = self.r_addr, self.o_addr
        self.o_port, self.r_port = self.r_port, self.o_port
        self.a_is_orig = not self.a_is_orig
        self.hist_seen_o, self.hist_seen_r = self.hist_seen_r, self.hist_seen_o
        self.macs = (self.macs[1], self.macs[0], self.macs[2])
        self.pending.append((pos, "^"))

    # -- Zeek's conn_state -------------------------------------------------------------------------
    def conn_state(self) -> str:
        os_, rs = self.orig.state, self.resp.state
        if self.proto == PROTO_TCP:
            o_inactive = os_ in (INACTIVE, PARTIAL)
            r_inactive = rs in (INACTIVE, PARTIAL)
            if rs == RESET:
                if os_ in (SYN_SENT, SYN_ACK_SENT) or (
                    os_ == RESET and self.orig.tcp_size() == 0 and self.resp.tcp_size() == 0
                ):
                    return "REJ"
                return "RSTRH" if o_inactive else "RSTR"
            if os_ == RESET:
                return "RSTOS0" if r_inactive else "RSTO"
            if rs == CLOSED and os_ == CLOSED:
                return "SF"
            if os_ == CLOSED:
                return "SH" if r_inactive else "S2"
            if rs == CLOSED:
                return "SHR" if o_inactive else "S3"
            if os_ == SYN_SENT and rs == INACTIVE:
                return "S0"
            if os_ == ESTABLISHED and rs == ESTABLISHED:
                return "S1"
            return "OTH"
        if self.proto == PROTO_UDP:
            if self.orig.pkts:
                return "SF" if self.resp.pkts else "S0"
            return "SHR" if self.resp.pkts else "OTH"
        return "OTH"


def _clean_event(c: Conn, io: bool, flags: int, seq: int, ack: int, plen: int, ts: float, pos: int) -> bool:
    """The control packets of a clean connection, without the general state machine.

    Handles exactly three shapes, each only from the states where Conn.tcp_packet's outcome reduces
    to the few assignments below: the first SYN of a fresh originator, the responder's first SYN-ACK
    answering it, and the first FIN of an established side. ``flags`` is masked to SYN/FIN/RST/ACK.
    Returns False (nothing changed) for anything else, which then takes the general path.
    """
    if flags == TH_SYN:
        ep = c.orig
        if not io or ep.state != INACTIVE or c.resp.state != INACTIVE or c.hist_seen_o & H_SYN:
            return False
        ep.start = seq
        ep.max_end = plen + 1
        ep.hist_syn = 0
        c.hist_seen_o |= H_SYN
        c.pending.append((pos, "S"))
        ep.prev_state = INACTIVE
        ep.state = SYN_SENT
        return True
    if flags == TH_SYN | TH_ACK:
        ep, peer = c.resp, c.orig
        if (
            io
            or ep.state != INACTIVE
            or peer.state != SYN_SENT
            or peer.start is None
            or c.hist_seen_r & H_SYNACK
        ):
            return False
        ep.start = seq
        ep.max_end = plen + 1
        ep.hist_syn = 0
        c.hist_seen_r |= H_SYNACK
        c.pending.append((pos, "h"))
        rel_ack = seq_diff(ack, peer.start)
        if rel_ack > 0 and rel_ack > peer.max_ack and not (ack == 0 and rel_ack > TOO_LARGE_SEQ_DELTA):
            peer.max_ack = rel_ack
        peer.prev_state = SYN_SENT
        peer.state = ESTABLISHED
        ep.prev_state = INACTIVE
        ep.state = ESTABLISHED
        return True
    if flags == TH_FIN | TH_ACK:
        ep, peer = (c.orig, c.resp) if io else (c.resp, c.orig)
        if (
            ep.state != ESTABLISHED
            or peer.state not in (ESTABLISHED, CLOSED)
            or ep.did_close
            or ep.start is None
            or peer.start is None
            or (c.hist_seen_o if io else c.hist_seen_r) & H_FIN
        ):
            return False
        rel_seq = seq_diff(seq, ep.start)
        c.check_history(io, "F", pos)
        ep.hist_fin = rel_seq + plen
        ep.fin_cnt += 1
        rel_ack = seq_diff(ack, peer.start)
        if rel_ack > 0 and rel_ack > peer.max_ack and not (ack == 0 and rel_ack > TOO_LARGE_SEQ_DELTA):
            peer.max_ack = rel_ack
        rel_end = rel_seq + plen + 1
        if ep.max_end == 1 or rel_end > ep.max_end:
            ep.max_end = rel_end
        ep.prev_state = ESTABLISHED
        ep.state = CLOSED
        ep.did_close = True
        if peer.did_close:
            c.closed_at = ts
        return True
    return False


def _stream_for(session: Session, is_orig: bool) -> StreamReassembler:
    def deliver(ts: float, payload: bytes) -> None:
        if not session.done:
            session.data(is_orig, ts, payload)

    def gap(ts: float, length: int) -> None:
        if not session.done:
            session.gap(is_orig, ts, length)

    # Optional bulk skipping (see sensor.protocols.base.Session): only sessions that implement both.
    skip_hint = getattr(session, "skip_hint", None)
    report = getattr(session, "skipped", None)
    if skip_hint is None or report is None:
        return StreamReassembler(deliver, gap)

    def hint() -> int:
        return 0 if session.done else int(skip_hint(is_orig))

    def skipped(ts: float, length: int) -> None:
        if not session.done:
            report(is_orig, ts, length)

    return StreamReassembler(deliver, gap, hint=hint, skipped=skipped)


def _is_group_addr(family: int, hi: int, lo: int) -> bool:
    if family == 4:
        v4 = lo & 0xFFFFFFFF
        return v4 == 0xFFFFFFFF or (v4 >> 28) == 0xE
    return (hi >> 56) == 0xFF


# Byte -> base62 character; the slight bias toward the first few characters does not matter for
# an identifier that only has to be unique.
_UID_TABLE = bytes((_B62 * 5)[:256], "ascii")


def _new_uid(rng: random.Random) -> str:
    return "C" + rng.randbytes(17).translate(_UID_TABLE).decode("ascii")


# Hosts recur across connections far more than they change: each analyzer session's context needs
# both endpoints as text, and a cache hit costs a third of formatting them again.
@lru_cache(maxsize=1 << 16)
def _addr_text(family: int, hi: int, lo: int) -> str:
    if family == 4:
        return socket.inet_ntop(socket.AF_INET, (lo & 0xFFFFFFFF).to_bytes(4, "big"))
    return socket.inet_ntop(socket.AF_INET6, ((hi << 64) | lo).to_bytes(16, "big"))


@lru_cache(maxsize=1 << 16)
def _mac_text(mac: int) -> str:
    return mac.to_bytes(6, "big").hex(":")


Emitter = Callable[[Conn, bool], sensor_pb2.Record]


def _holds(table: dict[tuple[int, ...], Conn], conn: Conn) -> bool:
    """Whether ``table`` has this very connection under its key (not a successor on the same 5-tuple)."""
    return table.get(conn.key) is conn


class FlowTable:
    """Connections keyed by canonical 5-tuple; see the module docstring for the per-block plan."""

    def __init__(
        self,
        config: SensorConfig,
        registry: Registry | None = None,
        emit_flow: Emitter | None = None,
        error_counter: ErrorCounter | None = None,
        seed: int | None = None,
    ) -> None:
        from sensor.emitter import flow_record

        self.config = config
        self.registry = registry or Registry()
        self.emit_flow: Emitter = emit_flow or flow_record
        self.count_error: ErrorCounter = error_counter or (lambda proto, reason: None)
        # Set by the pipeline when weird.log is written: each counted parse error also becomes a weird of
        # its connection (sampled there).
        self.weirds: WeirdLog | None = None
        self.rng = random.Random(seed)
        self.conns: dict[tuple[int, ...], Conn] = {}
        # Per timeout class (tcp, udp, other): connections in least-recently-seen order.
        self._lru: tuple[dict[tuple[int, ...], Conn], ...] = ({}, {}, {})
        self._timeouts = (config.idle_timeout_tcp_s, config.idle_timeout_udp_s, config.idle_timeout_other_s)
        self._closing: dict[tuple[int, ...], Conn] = {}
        # Unanswered TCP attempts (S0), least recently seen first: emitted after the short attempt
        # timeout rather than the TCP idle timeout, so scans show up within seconds.
        self._attempts: dict[tuple[int, ...], Conn] = {}
        self._attempt_timeout = config.attempt_timeout_s
        # Clean SYN / SYN-ACK / FIN packets skip the general state machine (_clean_event); a switch so
        # tests can compare both paths.
        self._fast_paths = True
        self._out: list[sensor_pb2.Record] = []
        self.tcp_server_ports = self.registry.server_ports("tcp")
        self.udp_server_ports = self.registry.server_ports("udp")
        self._want_heuristic = {
            "tcp": self.registry.has_heuristics("tcp"),
            "udp": self.registry.has_heuristics("udp"),
        }
        self.flows_emitted = 0
        self._last_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self.conns)

    # ------------------------------------------------------------------------------------------
    def _emit_record(self, record: sensor_pb2.Record) -> None:
        """What sessions emit through: resolves the current output list at call time, because
        process/expire/flush each start a new list and a session may emit in any of them."""
        self._out.append(record)

    def process(self, block: PacketBlock, dec: DecodedBlock) -> list[sensor_pb2.Record]:
        """Account every decoded packet of ``block`` and return the records that became final."""
        self._out = []
        idx = np.flatnonzero(dec.reason == 0)
        if idx.size == 0:
            return self._out
        ts = block.ts[idx]
        proto = dec.proto[idx]
        s_hi, s_lo, d_hi, d_lo = dec.src_hi[idx], dec.src_lo[idx], dec.dst_hi[idx], dec.dst_lo[idx]
        sp, dp = dec.sport[idx], dec.dport[idx]
        swap = (s_hi > d_hi) | ((s_hi == d_hi) & ((s_lo > d_lo) | ((s_lo == d_lo) & (sp > dp))))
        a_hi = np.where(swap, d_hi, s_hi)
        a_lo = np.where(swap, d_lo, s_lo)
        b_hi = np.where(swap, s_hi, d_hi)
        b_lo = np.where(swap, s_lo, d_lo)
        ports = (np.where(swap, dp, sp) << 24) | (np.where(swap, sp, dp) << 8) | proto
        ports_u = ports.astype(np.uint64)
        h = _mix(a_hi ^ _mix(a_lo ^ _mix(b_hi ^ _mix(b_lo ^ _mix(ports_u)))))
        order = np.argsort(h, kind="stable")
        hs = h[order]
        brk = hs[1:] != hs[:-1]
        cols = (a_hi, a_lo, b_hi, b_lo, ports)
        g_start = np.flatnonzero(np.concatenate(([True], brk)))
        g_id = np.cumsum(np.concatenate(([True], brk))) - 1
        first_of = order[g_start][g_id]
        if any(bool(np.any(c[order] != c[first_of])) for c in cols):
            # A 64-bit hash collision inside one block: fall back to an exact sort.
            order = np.lexsort((np.arange(idx.size), *cols[::-1]))
            brk = np.zeros(idx.size - 1, dtype=np.bool_)
            for c in cols:
                cs = c[order]
                brk |= cs[1:] != cs[:-1]
        # Split a connection where it was idle past its timeout inside this block.
        tss = ts[order]
        prs = proto[order]
        timeout = np.where(
            prs == PROTO_TCP,
            self._timeouts[0],
            np.where(prs == PROTO_UDP, self._timeouts[1], self._timeouts[2]),
        )
        idle = (tss[1:] - tss[:-1]) > timeout[1:]
        new_seg = np.concatenate(([True], brk | idle))
        starts = np.flatnonzero(new_seg)
        seg_of = np.cumsum(new_seg) - 1
        first_of_key = np.concatenate(([True], brk))[starts]
        fp = order[starts]  # first packet (block-local valid index) of each segment

        sw = swap[order]
        from_a = ~sw
        flags_s = dec.tcp_flags[idx][order]
        plen_s = dec.payload_len[idx][order]
        iplen_s = dec.ip_len[idx][order]

        # ---- 3. find or create each segment's connection (Python, once per segment)
        conns = self.conns
        lru = self._lru
        attempts = self._attempts
        seg_conn: list[Conn] = []
        seg_aorig: list[bool] = []
        ended: list[Conn] = []
        created: list[int] = []  # segments whose connection starts at their first packet
        key_rows = zip(
            a_hi[fp].tolist(),
            a_lo[fp].tolist(),
            b_hi[fp].tolist(),
            b_lo[fp].tolist(),
            ports[fp].tolist(),
            strict=True,
        )
        fp_from_a = from_a[starts].tolist()
        fp_flags = flags_s[starts].tolist()
        fi = idx[fp]
        # Per-segment first-packet details, only read when a segment starts a new connection.
        info_cols = (dec.family, dec.vlan, dec.inner_vlan, dec.has_mac, dec.src_mac, dec.dst_mac)
        fam_l, vlan_l, ivlan_l, hasmac_l, smac_l, dmac_l, icode_l = (
            col[fi].tolist() for col in (*info_cols, dec.icmp_code)
        )
        timeouts = self._timeouts
        linger = self.config.close_linger_s
        attempt_timeout = self._attempt_timeout
        closing = self._closing
        first_rows = zip(key_rows, tss[starts].tolist(), first_of_key.tolist(), strict=True)
        for s, (key, t0, first) in enumerate(first_rows):
            conn = conns.get(key)
            if conn is not None:
                tcls = conn.tclass
                if (
                    not first
                    or t0 - conn.last > timeouts[tcls]
                    or (conn.closed_at is not None and t0 > conn.closed_at + linger)
                    or (key in attempts and t0 - conn.last > attempt_timeout)
                ):
                    ended.append(conn)
                    del conns[key]
                    lru[tcls].pop(key, None)
                    closing.pop(key, None)
                    attempts.pop(key, None)
                    conn = None
                else:
                    d = lru[tcls]
                    del d[key]
                    d[key] = conn
            if conn is None:
                info = (fam_l[s], vlan_l[s], ivlan_l[s], hasmac_l[s], smac_l[s], dmac_l[s], icode_l[s])
                conn = self._create(key, t0, fp_from_a[s], fp_flags[s], info)
                conns[key] = conn
                lru[conn.tclass][key] = conn
                created.append(s)
            seg_conn.append(conn)
            seg_aorig.append(conn.a_is_orig)

        tcp_s = prs == PROTO_TCP
        # ---- 3b. a SYN on a 5-tuple whose connection is over starts a new connection (see _reuse_splits)
        syn_only = tcp_s & ((flags_s & (TH_SYN | TH_ACK)) == TH_SYN)
        syn_only[starts[created]] = False  # a connection's own first SYN
        if syn_only.any():
            seq_s, ack_s = dec.seq[idx][order], dec.ack[idx][order]
            cand = np.flatnonzero(syn_only)
            splits = self._reuse_splits(
                cand, starts, seg_of, seg_conn, set(created), flags_s, seq_s, ack_s, from_a
            )
            if splits:
                key_cols = (a_hi, a_lo, b_hi, b_lo, ports)
                starts, seg_of = self._split_segments(
                    splits,
                    starts,
                    new_seg,
                    seg_conn,
                    seg_aorig,
                    ended,
                    idx,
                    order,
                    dec,
                    tss,
                    flags_s,
                    from_a,
                    key_cols,
                )

        is_orig = from_a == np.array(seg_aorig, dtype=np.bool_)[seg_of]
        # ---- 5. TCP: state machine on the packets that can change it (may flip roles in place)
        seg_is_tcp = tcp_s[starts]
        if tcp_s.any():
            self._tcp_block(dec, idx, order, starts, seg_of, seg_conn, is_orig, tcp_s, flags_s, plen_s, tss)
        n = idx.size
        data_o = np.flatnonzero(is_orig & (plen_s > 0))
        if data_o.size:
            record_messages(seg_of[data_o], tss[data_o], [c.clock for c in seg_conn])
        pos = np.arange(n)
        io64 = is_orig.astype(np.int64)
        orig_pkts = np.add.reduceat(io64, starts)
        seg_len = np.diff(np.append(starts, n))
        ipb_o = np.add.reduceat(iplen_s * io64, starts)
        ipb_t = np.add.reduceat(iplen_s, starts)
        pay_o = np.add.reduceat(plen_s * io64, starts)
        pay_t = np.add.reduceat(plen_s, starts)
        last_ts = np.maximum.reduceat(tss, starts)
        big = n + 1
        first_o = np.minimum.reduceat(np.where(is_orig, pos, big), starts)
        first_r = np.minimum.reduceat(np.where(is_orig, big, pos), starts)

        # ---- 4. merge per-segment aggregates (Python, once per segment)
        op_l, sl_l = orig_pkts.tolist(), seg_len.tolist()
        ipo_l, ipt_l, pyo_l, pyt_l = ipb_o.tolist(), ipb_t.tolist(), pay_o.tolist(), pay_t.tolist()
        last_l, fo_l, fr_l, tcp_l = last_ts.tolist(), first_o.tolist(), first_r.tolist(), seg_is_tcp.tolist()
        active = self.config.active_timeout_s
        closing = self._closing
        for conn, o, sl, ipo, ipt, pyo, pyt, last, fo, fr, is_tcp in zip(
            seg_conn, op_l, sl_l, ipo_l, ipt_l, pyo_l, pyt_l, last_l, fo_l, fr_l, tcp_l, strict=True
        ):
            r = sl - o
            orig, resp = conn.orig, conn.resp
            orig.pkts += o
            resp.pkts += r
            orig.ip_bytes += ipo
            resp.ip_bytes += ipt - ipo
            orig.payload += pyo
            resp.payload += pyt - pyo
            conn.last = max(conn.last, last)
            if not is_tcp and conn.proto == PROTO_UDP:
                if o:
                    conn.check_history(True, "D", fo)
                if r:
                    conn.check_history(False, "D", fr)
            if conn.pending:
                conn.commit_history()
            # By identity: a connection ended inside this block shares its key with its successor.
            if conn.closed_at is not None and _holds(conns, conn) and conn.key not in closing:
                closing[conn.key] = conn
            if is_tcp:
                ckey = conn.key
                if resp.pkts == 0 and orig.state == SYN_SENT and resp.state == INACTIVE:
                    # Still an attempt: (re)queue at the young end, keeping the dict ordered by last packet.
                    if _holds(conns, conn):
                        attempts.pop(ckey, None)
                        attempts[ckey] = conn
                elif _holds(attempts, conn):
                    del attempts[ckey]
            if conn.last - conn.rec_start >= active and conn.closed_at is None:
                self._emit(conn, partial=True)
                self._reset_counters(conn)
        # ---- 6. analyzers: only packets of connections whose session still wants data
        wants = [
            s
            for s, conn in enumerate(seg_conn)
            if conn.heuristic_tries > 0 or (conn.session is not None and not conn.session.done)
        ]
        if wants:
            self._feed_sessions(block, dec, idx, order, starts, seg_of, seg_conn, wants, is_orig, prs)
        for conn in ended:
            self._finish(conn)
        return self._out

    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _reuse_splits(
        cand: Arr,
        starts: Arr,
        seg_of: Arr,
        seg_conn: list[Conn],
        created: set[int],
        flags_s: Arr,
        seq_s: Arr,
        ack_s: Arr,
        from_a: Arr,
    ) -> list[int]:
        """Positions (in block order) of SYNs that end their connection and start a new one on the same
        5-tuple, by Zeek's rule for connection reuse: a SYN without ACK, on a connection where either side
        already sent FIN or RST, or whose sequence number is not the originator's initial one (nor the
        one a SYN-ACK seen first acknowledged). A retransmitted SYN stays in its connection.

        Only segments holding such a candidate are walked, and only their SYN/FIN/RST packets, in order."""
        splits: list[int] = []
        n = flags_s.size
        nseg = starts.size
        ctl = TH_SYN | TH_FIN | TH_RST
        for s in np.unique(seg_of[cand]).tolist():
            c = seg_conn[s]
            lo = int(starts[s])
            hi = int(starts[s + 1]) if s + 1 < nseg else n
            orig_a = c.a_is_orig
            if s in created:
                closed, orig_isn, acked_isn = False, None, None
            else:
                closed = c.orig.did_close or c.resp.did_close
                orig_isn = c.orig.start
                acked_isn = (
                    c.resp.start if c.orig.state == SYN_ACK_SENT and c.resp.state == INACTIVE else None
                )
            at = lo + np.flatnonzero(flags_s[lo:hi] & ctl)
            for p, fl, sq, ak, fa in zip(at.tolist(), flags_s[at].tolist(), seq_s[at].tolist(),
                                         ack_s[at].tolist(), from_a[at].tolist(), strict=True):  # fmt: skip
                if fl & (TH_SYN | TH_ACK) == TH_SYN:
                    if (p != lo or s not in created) and (closed or sq not in (orig_isn, acked_isn)):
                        splits.append(p)
                        closed, orig_a, orig_isn, acked_isn = bool(fl & (TH_FIN | TH_RST)), fa, sq, None
                        continue
                    if orig_isn is None and fa == orig_a:
                        orig_isn = sq
                elif fl & TH_SYN and orig_isn is None:
                    # A SYN-ACK seen before any SYN: it numbers the side that sent the SYN.
                    if fa == orig_a:
                        orig_isn, acked_isn = sq, (ak - 1) & M32
                    else:
                        orig_isn = (ak - 1) & M32
                if fl & (TH_FIN | TH_RST):
                    closed = True
        return splits

    def _split_segments(
        self,
        splits: list[int],
        starts: Arr,
        new_seg: Arr,
        seg_conn: list[Conn],
        seg_aorig: list[bool],
        ended: list[Conn],
        idx: Arr,
        order: Arr,
        dec: DecodedBlock,
        tss: Arr,
        flags_s: Arr,
        from_a: Arr,
        key_cols: tuple[Arr, ...],
    ) -> tuple[Arr, Arr]:
        """Start a new connection at each split position: the one before it ends (finished with the block's
        other ended connections), the new one takes the key. ``seg_conn`` and ``seg_aorig`` are rebuilt in
        place for the new segments; returns the new ``starts`` and ``seg_of``."""
        old_index = {pos: i for i, pos in enumerate(starts.tolist())}
        seg_of = np.cumsum(new_seg) - 1
        current: dict[int, Conn] = {}  # segment -> its connection before the next split
        at_split: dict[int, Conn] = {}
        for p in splits:
            s = int(seg_of[p])
            prev = current.get(s, seg_conn[s])
            key = tuple(int(col[order[p]]) for col in key_cols)
            i = int(idx[order[p]])
            info = (int(dec.family[i]), int(dec.vlan[i]), int(dec.inner_vlan[i]), bool(dec.has_mac[i]),
                    int(dec.src_mac[i]), int(dec.dst_mac[i]), int(dec.icmp_code[i]))  # fmt: skip
            conn = self._create(key, float(tss[p]), bool(from_a[p]), int(flags_s[p]), info)
            if self.conns.get(key) is prev:
                self._remove(prev)
                ended.append(prev)
                self.conns[key] = conn
                self._lru[conn.tclass][key] = conn
            else:
                # A later segment of this block already replaced ``prev`` (an idle split): this one ends too.
                ended.append(conn)
            current[s] = conn
            at_split[p] = conn
        new_seg = new_seg.copy()
        new_seg[splits] = True
        new_starts = np.flatnonzero(new_seg)
        rebuilt: list[Conn] = []
        for pos in new_starts.tolist():
            started = at_split.get(pos)
            rebuilt.append(started if started is not None else seg_conn[old_index[pos]])
        seg_conn[:] = rebuilt
        seg_aorig[:] = [c.a_is_orig for c in rebuilt]
        return new_starts, np.cumsum(new_seg) - 1

    def _create(
        self,
        key: tuple[int, ...],
        ts: float,
        from_a: bool,
        flags: int,
        info: tuple[int, int, int, bool, int, int, int],
    ) -> Conn:
        """A new connection from its first packet: decide who is the originator (Zeek's rules)."""
        a_hi, a_lo, b_hi, b_lo, ports = key
        proto = ports & 0xFF
        a_port = ports >> 24
        b_port = (ports >> 8) & 0xFFFF
        conn = Conn(key, _new_uid(self.rng), proto, ts)
        conn.tclass = 0 if proto == PROTO_TCP else 1 if proto == PROTO_UDP else 2
        family, vlan, inner_vlan, has_mac, src_mac, dst_mac, icmp_code = info
        conn.family = family
        conn.vlan = vlan
        conn.inner_vlan = inner_vlan
        if from_a:
            src, sport, dst, dport = (a_hi, a_lo), a_port, (b_hi, b_lo), b_port
        else:
            src, sport, dst, dport = (b_hi, b_lo), b_port, (a_hi, a_lo), a_port
        flip = False
        guessed = True
        if proto == PROTO_TCP:
            if flags & TH_SYN and not flags & TH_ACK:
                guessed = False
            elif sport in self.tcp_server_ports:
                # Zeek's guess for a connection whose SYN we missed: a likely server port is the
                # responder; with both plausible, flip only non-SYN-ACKs toward the lower port.
                flip = (not flags & TH_SYN and sport < dport) if dport in self.tcp_server_ports else True
        elif proto == PROTO_UDP:
            # Zeek never flips toward a broadcast or multicast destination: that is not a client.
            flip = (
                sport in self.udp_server_ports
                and dport not in self.udp_server_ports
                and not _is_group_addr(conn.family, *dst)
            )
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            conn.icmp_code = icmp_code
        conn.guessed = guessed
        orig_is_src = not flip
        conn.a_is_orig = from_a == orig_is_src
        if orig_is_src:
            conn.o_addr, conn.o_port, conn.r_addr, conn.r_port = src, sport, dst, dport
        else:
            conn.o_addr, conn.o_port, conn.r_addr, conn.r_port = dst, dport, src, sport
        if has_mac:
            conn.macs = (src_mac, dst_mac, True) if orig_is_src else (dst_mac, src_mac, True)
        if flip:
            conn.pending.append((-1, "^"))
        if proto in (PROTO_TCP, PROTO_UDP):
            self._attach_session(conn)
        return conn

    def _context(self, conn: Conn) -> ConnContext:
        o_mac, r_mac, with_macs = conn.macs
        # Positional: a frozen dataclass's keyword call costs a third more, once per session.
        return ConnContext(
            conn.uid,
            _addr_text(conn.family, *conn.o_addr),
            conn.o_port,
            _addr_text(conn.family, *conn.r_addr),
            conn.r_port,
            "tcp" if conn.proto == PROTO_TCP else "udp",
            _mac_text(o_mac) if with_macs else "",
            _mac_text(r_mac) if with_macs else "",
        )

    def _emitter_for(self, conn: Conn) -> Callable[[sensor_pb2.Record], None]:
        """An emit function that stamps the connection's endpoints on each application record.

        DHCP sessions emit records about other exchanges too; a record that already names its endpoints
        keeps them. The endpoints are captured now (a later flip must not change them) and written
        field by field, so sessions that never emit cost no protobuf work."""
        o_mac, r_mac, with_macs = conn.macs
        o_ip = addr_bytes(conn.family, *conn.o_addr)
        r_ip = addr_bytes(conn.family, *conn.r_addr)
        o_port, r_port = conn.o_port, conn.r_port
        o_mac_b = o_mac.to_bytes(6, "big") if with_macs else b""
        r_mac_b = r_mac.to_bytes(6, "big") if with_macs else b""
        out = self._emit_record

        def emit(record: sensor_pb2.Record) -> None:
            if not record.HasField("orig"):
                ep = record.orig
                ep.ip = o_ip
                ep.port = o_port
                ep.mac = o_mac_b
                ep = record.resp
                if record.HasField("resp"):
                    ep.Clear()  # replaced whole, as CopyFrom would
                ep.ip = r_ip
                ep.port = r_port
                ep.mac = r_mac_b
            out(record)

        return emit

    def _errors_of(self, conn: Conn) -> ErrorCounter:
        """The error counter a session of ``conn`` reports through: the shared one, or, when weird.log is
        written, one that also knows the connection."""
        if self.weirds is None:
            return self.count_error

        def count(protocol: str, reason: str) -> None:
            self._conn_error(conn, protocol, reason)

        return count

    def _conn_error(self, conn: Conn, protocol: str, reason: str) -> None:
        """A parse error on ``conn``: counted, and a weird of the connection when weird.log is written."""
        self.count_error(protocol, reason)
        weirds = self.weirds
        if weirds is None or not protocol:
            return
        name = f"{protocol.upper()}_{reason}"
        if not weirds.sampler.take(name, 1, conn.last):
            return
        weirds.add(
            Weird(
                conn.last,
                name,
                protocol.upper(),
                conn.uid,
                _addr_text(conn.family, *conn.o_addr),
                conn.o_port,
                _addr_text(conn.family, *conn.r_addr),
                conn.r_port,
            )
        )

    def _attach_session(self, conn: Conn) -> None:
        if self._claim_announced(conn, conn.start):
            return
        transport = "tcp" if conn.proto == PROTO_TCP else "udp"
        analyzer = self.registry.match_ports(transport, conn.r_port, conn.o_port)
        if analyzer is not None:
            self._start_session(conn, analyzer)
            if self._want_heuristic[transport]:
                # The port is a guess: if its analyzer rejects the first payload, the heuristics decide.
                conn.heuristic_tries = -1
        elif self._want_heuristic[transport]:
            conn.heuristic_tries = HEURISTIC_TRIES

    def _claim_announced(self, conn: Conn, ts: float) -> bool:
        """Start the analyzer another session announced for this connection (an FTP data channel: the
        client's next connection to the address and port of a PASV answer), whatever its port.

        Asked when the connection is created and again at its first packets handed to analyzers, in
        capture order: the announcement may sit in the same block as the connection's SYN, and blocks
        create their connections before any session reads the block's payload. The second ask reaches
        connections the payload heuristics watch (no port analyzer, a registry with TCP heuristics, as
        the default one); one a port analyzer took at creation keeps it.
        """
        expected = self.registry.expected
        if not expected or conn.proto != PROTO_TCP:
            return False
        announced = expected.claim(
            "tcp",
            _addr_text(conn.family, *conn.o_addr),
            _addr_text(conn.family, *conn.r_addr),
            conn.r_port,
            ts,
        )
        if announced is None:
            return False
        self._start_session(conn, announced)
        return True

    def _start_session(self, conn: Conn, analyzer: Analyzer) -> None:
        try:
            conn.session = analyzer.factory(
                self._context(conn), self._emitter_for(conn), self._errors_of(conn)
            )
        except ParseError as exc:
            self._conn_error(conn, exc.protocol, exc.reason)
            return
        conn.heuristic_tries = 0
        if hasattr(conn.session, "confirmed"):
            conn.unconfirmed = analyzer.name
        elif analyzer.name not in conn.service:
            conn.service.append(analyzer.name)

    # ------------------------------------------------------------------------------------------
    def _tcp_block(
        self,
        dec: DecodedBlock,
        idx: Arr,
        order: Arr,
        starts: Arr,
        seg_of: Arr,
        seg_conn: list[Conn],
        is_orig: Arr,
        tcp_s: Arr,
        flags_s: Arr,
        plen_s: Arr,
        tss: Arr,
    ) -> None:
        n = order.size
        seq_s = dec.seq[idx][order]
        ack_s = dec.ack[idx][order]
        ctl = tcp_s & ((flags_s & (TH_SYN | TH_FIN | TH_RST)) != 0)
        plain = tcp_s & ~ctl
        # First data packet and first bare packet of each (segment, direction).
        code = (seg_of * 2 + is_orig) * 2 + (plen_s > 0)
        cand = np.flatnonzero(plain)
        _, firsts = np.unique(code[cand], return_index=True)
        # Sorted, distinct positions of both kinds (a mask instead of union1d's sort).
        is_ev = ctl.copy()
        is_ev[cand[firsts]] = True
        # Zero-window advertisements (not on a RST) are events too, for history 'W'; those that are nothing
        # else only have their letter considered. Rare: the set lookups below cost nothing otherwise.
        zero_win = tcp_s & (dec.window[idx][order] == 0) & ((flags_s & TH_RST) == 0)
        zero_win_at: set[int] = set()
        only_zero_win: set[int] = set()
        if zero_win.any():
            zero_win_at = set(np.flatnonzero(zero_win).tolist())
            only_zero_win = set(np.flatnonzero(zero_win & ~is_ev).tolist())
            is_ev |= zero_win
        ev = np.flatnonzero(is_ev)
        # Snapshot the pre-block byte-coverage per endpoint for the vectorised span pass below.
        nseg = starts.size
        prev_o = np.zeros(nseg, dtype=np.int64)
        prev_r = np.zeros(nseg, dtype=np.int64)
        seg_tcp = tcp_s[starts]
        tcp_segs = np.flatnonzero(seg_tcp)
        tcp_conns = [seg_conn[s] for s in tcp_segs.tolist()]
        # Filled from Python lists in one assignment each: item-by-item numpy stores cost ~10x more.
        prev_o[tcp_segs] = [c.orig.max_end if c.orig.start is not None else 0 for c in tcp_conns]
        prev_r[tcp_segs] = [c.resp.max_end if c.resp.start is not None else 0 for c in tcp_conns]
        ev_seg = seg_of[ev].tolist()
        ev_io = is_orig[ev].tolist()
        ev_fl = flags_s[ev].tolist()
        ev_seq = seq_s[ev].tolist()
        ev_ack = ack_s[ev].tolist()
        ev_pl = plen_s[ev].tolist()
        ev_ts = tss[ev].tolist()
        ev_pos = ev.tolist()
        flips_before = [c.a_is_orig for c in seg_conn]
        ctl_bits = TH_SYN | TH_FIN | TH_RST
        fast_mask = ctl_bits | TH_ACK
        fast_paths = self._fast_paths
        for s, io_a, fl, sq, ak, pl, t, p in zip(
            ev_seg, ev_io, ev_fl, ev_seq, ev_ack, ev_pl, ev_ts, ev_pos, strict=True
        ):
            c = seg_conn[s]
            # A flip inside this block changes which side is the originator for later packets.
            io = io_a if c.a_is_orig == flips_before[s] else not io_a
            if zero_win_at and p in zero_win_at:
                c.zero_window(io, p)
                if p in only_zero_win:
                    continue
            if not fl & ctl_bits:
                ep, peer = (c.orig, c.resp) if io else (c.resp, c.orig)
                if INACTIVE not in (ep.state, peer.state):
                    # Neither side's state can change on a plain packet now; only its history letter
                    # is new (check_history, inlined: this runs for most connections). Sequence spans
                    # come from the vectorised pass below.
                    if pl:
                        bit, letter = H_DATA, "D"
                    elif fl & TH_ACK:
                        bit, letter = H_ACK, "A"
                    else:
                        continue
                    if io:
                        if not c.hist_seen_o & bit:
                            c.hist_seen_o |= bit
                            c.pending.append((p, letter))
                    elif not c.hist_seen_r & bit:
                        c.hist_seen_r |= bit
                        c.pending.append((p, letter.lower()))
                    continue
            elif fast_paths and _clean_event(c, io, fl & fast_mask, sq, ak, pl, t, p):
                continue
            c.tcp_packet(io, fl, sq, ak, pl, t, p)
        if any(c.a_is_orig != f for c, f in zip(seg_conn, flips_before, strict=True)):
            for s, c in enumerate(seg_conn):
                if c.a_is_orig != flips_before[s]:
                    lo = starts[s]
                    hi = starts[s + 1] if s + 1 < nseg else n
                    is_orig[lo:hi] = ~is_orig[lo:hi]
                    prev_o[s], prev_r[s] = prev_r[s], prev_o[s]
        # ---- vectorised sequence-span pass over every TCP packet
        start_o = np.full(nseg, -1, dtype=np.int64)
        start_r = np.full(nseg, -1, dtype=np.int64)
        start_o[tcp_segs] = [-1 if c.orig.start is None else c.orig.start for c in tcp_conns]
        start_r[tcp_segs] = [-1 if c.resp.start is None else c.resp.start for c in tcp_conns]
        my_start = np.where(is_orig, start_o[seg_of], start_r[seg_of])
        peer_start = np.where(is_orig, start_r[seg_of], start_o[seg_of])
        rst = (flags_s & TH_RST) != 0
        syn1 = ((flags_s & TH_SYN) != 0).astype(np.int64)
        half = 1 << 31
        d_start = (seq_s + syn1 - my_start) & M32
        d_ok = tcp_s & (my_start >= 0) & (d_start < half) & ~rst
        d_end = d_start + plen_s
        # Highest sequence sent (plain packets only: control packets went through the state machine).
        end_plain = np.where(plain & d_ok, d_end, 0)
        rel_ack = (ack_s - peer_start) & M32
        ack_ok = tcp_s & ((flags_s & TH_ACK) != 0) & ~rst & (peer_start >= 0) & (rel_ack < half)
        ack_v = np.where(ack_ok, rel_ack, 0)
        # Segmented running maximum per (segment, direction): sort by that group, offset each group
        # far above the previous one so one global maximum.accumulate never leaks across groups.
        grp = seg_of * 2 + (~is_orig)
        o2 = np.argsort(grp, kind="stable")
        g2 = grp[o2]
        gb = np.concatenate(([True], g2[1:] != g2[:-1]))
        gstart = np.flatnonzero(gb)
        gid = np.cumsum(gb) - 1
        shift = np.int64(1) << 34
        base = gid * shift
        de2 = np.where(d_ok, d_end, 0)[o2]
        init = np.where(g2 % 2 == 0, prev_o[g2 // 2], prev_r[g2 // 2])
        run = np.maximum.accumulate(np.maximum(de2, 0) + base)
        prev = np.empty_like(run)
        prev[0] = 0
        prev[1:] = run[:-1]
        prev = np.where(gb, base + init, np.maximum(prev, base + init)) - base
        ds2 = d_start[o2]
        pl2 = plen_s[o2]
        dok2 = d_ok[o2] & (pl2 > 0)
        new_bytes = np.where(dok2, np.clip(de2 - np.maximum(prev, ds2), 0, pl2), 0)
        rxmit = dok2 & (de2 <= prev)
        seen = np.add.reduceat(new_bytes, gstart)
        max_end = np.maximum.reduceat(np.where(plain[o2], de2, 0), gstart)
        max_ack_peer = np.maximum.reduceat(ack_v[o2], gstart)
        rx_count = np.add.reduceat(rxmit.astype(np.int64), gstart)
        # Only TCP segments' groups carry spans (UDP packets are in the same arrays, with d_ok False).
        g_first = g2[gstart]
        keep = seg_tcp[g_first // 2]
        if rx_count[keep].any():
            self._retransmit_history(seg_conn, rxmit, o2, g2, gstart, gid, keep)
        g_first = g_first[keep]
        for seg, go, sb, me, ma, rx in zip(
            (g_first // 2).tolist(),
            (g_first % 2 == 0).tolist(),
            seen[keep].tolist(),
            max_end[keep].tolist(),
            max_ack_peer[keep].tolist(),
            rx_count[keep].tolist(),
            strict=True,
        ):
            c = seg_conn[seg]
            ep, peer = (c.orig, c.resp) if go else (c.resp, c.orig)
            ep.seen_bytes += sb
            if ep.state != RESET and me > ep.max_end:
                ep.max_end = me
            peer.max_ack = max(peer.max_ack, ma)
            ep.rxmits += rx
        del end_plain

    @staticmethod
    def _retransmit_history(
        seg_conn: list[Conn], rxmit: Arr, o2: Arr, g2: Arr, gstart: Arr, gid: Arr, keep: Arr
    ) -> None:
        """Zeek logs 'T' on a direction's 1st, 10th, 100th, ... retransmission (a scaled history entry),
        counting across blocks; the letter sits at that packet's position. Run before the counters move."""
        tcp_groups = np.flatnonzero(keep)
        prior = np.zeros(len(gstart), dtype=np.int64)
        prior[tcp_groups] = [
            (c.orig if g % 2 == 0 else c.resp).rxmits
            for c, g in ((seg_conn[g // 2], g) for g in g2[gstart[tcp_groups]].tolist())
        ]
        # Running count of retransmissions inside each (connection, direction) group, plus earlier blocks'.
        cum = np.cumsum(rxmit.astype(np.int64))
        before_group = np.concatenate(([0], cum[:-1]))[gstart]
        total = cum - before_group[gid] + prior[gid]
        hit = rxmit & keep[gid] & np.isin(total, _SCALED_THRESHOLDS)
        for i in np.flatnonzero(hit).tolist():
            g = int(g2[i])
            seg_conn[g // 2].add_history(g % 2 == 0, "T", int(o2[i]))

    # ------------------------------------------------------------------------------------------
    def _feed_sessions(
        self,
        block: PacketBlock,
        dec: DecodedBlock,
        idx: Arr,
        order: Arr,
        starts: Arr,
        seg_of: Arr,
        seg_conn: list[Conn],
        wants: list[int],
        is_orig: Arr,
        prs: Arr,
    ) -> None:
        # One gather for every wanted packet of the block, then a plain loop: per-connection numpy
        # calls cost more than the packets they select.
        seg_mask = np.zeros(len(seg_conn), dtype=np.bool_)
        seg_mask[wants] = True
        sel = seg_mask[seg_of]
        pk_all = idx[order]
        cap_all = dec.payload_cap[pk_all]
        # Bare TCP ACKs carry nothing for a stream; SYNs fix the stream origin.
        sel &= (cap_all > 0) | ((prs == PROTO_TCP) & ((dec.tcp_flags[pk_all] & TH_SYN) != 0))
        where = np.flatnonzero(sel)
        if where.size == 0:
            return
        # Hand payloads over in capture order across connections, not connection by connection:
        # analyzers that pair messages across 5-tuples (DHCP broadcast then unicast) need time order.
        where = where[np.argsort(pk_all[where], kind="stable")]
        pk = pk_all[where]
        off_a = dec.payload_off[pk]
        data = block.data
        no_stream = TH_SYN | TH_RST
        for seg, io, start, end, flags, seq, ack, ts in zip(
            seg_of[where].tolist(),
            is_orig[where].tolist(),
            off_a.tolist(),
            (off_a + cap_all[where]).tolist(),
            dec.tcp_flags[pk].tolist(),
            dec.seq[pk].tolist(),
            dec.ack[pk].tolist(),
            block.ts[pk].tolist(),
            strict=True,
        ):
            conn = seg_conn[seg]
            session = conn.session
            # Not read by any analyzer yet: maybe announced by a packet earlier in this block.
            if (
                session is None
                and conn.heuristic_tries == HEURISTIC_TRIES
                and self._claim_announced(conn, ts)
            ):
                session = conn.session
            if session is None:
                if conn.heuristic_tries <= 0 or start == end:
                    continue
                payload = data[start:end]
                conn.heuristic_tries -= 1
                transport = "tcp" if conn.proto == PROTO_TCP else "udp"
                analyzer = self.registry.match_payload(transport, payload, io)
                if analyzer is None:
                    continue
                self._start_session(conn, analyzer)
                session = conn.session
                if session is None:
                    continue
            elif session.done:
                continue
            else:
                payload = data[start:end]
            try:
                if conn.proto == PROTO_UDP:
                    if payload:
                        session.data(io, ts, payload)
                else:
                    # The peer's bytes stuck behind a hole this packet acknowledges go first, so a
                    # request lost to the hole's neighbourhood still precedes its answer.
                    waiting = (conn.resp if io else conn.orig).reasm
                    if waiting is not None and waiting.waiting and flags & TH_ACK:
                        waiting.acked(ts, ack)
                    reasm = (conn.orig if io else conn.resp).reasm
                    if reasm is not None and not flags & no_stream:
                        reasm.segment(ts, seq, payload)
                    else:
                        self._tcp_deliver(conn, session, io, flags, seq, ts, payload)
            except ParseError as exc:
                self._conn_error(conn, exc.protocol, exc.reason)
            except Exception:  # an analyzer bug must not stop the sensor; count and detach it
                self._conn_error(conn, session.protocol, "exception")
                conn.session = None
                conn.heuristic_tries = 0
            if conn.heuristic_tries < 0 and start != end:
                self._check_port_guess(conn, io, flags, seq, ts, payload)

    def _check_port_guess(
        self, conn: Conn, io: bool, flags: int, seq: int, ts: float, payload: bytes
    ) -> None:
        """After the first payload of a port-matched connection: if its analyzer rejected it (OpenVPN
        on 443/tcp is no TLS), the payload heuristics get the connection, from this payload on."""
        conn.heuristic_tries = 0
        session = conn.session
        if session is None or not getattr(session, "rejected", False):
            return
        transport = "tcp" if conn.proto == PROTO_TCP else "udp"
        analyzer = self.registry.match_payload(transport, payload, io)
        if analyzer is None:
            return
        guess = self.registry.match_ports(transport, conn.r_port, conn.o_port)
        if guess is not None and guess.name in conn.service:
            conn.service.remove(guess.name)
        conn.orig.reasm = conn.resp.reasm = None
        self._start_session(conn, analyzer)
        session = conn.session
        if session is None:
            return
        try:
            if conn.proto == PROTO_UDP:
                session.data(io, ts, payload)
            else:
                self._tcp_deliver(conn, session, io, flags, seq, ts, payload)
        except ParseError as exc:
            self._conn_error(conn, exc.protocol, exc.reason)
        except Exception:  # see _feed_sessions
            self._conn_error(conn, session.protocol, "exception")
            conn.session = None

    def _tcp_deliver(
        self, conn: Conn, session: Session, io: bool, flags: int, seq: int, ts: float, payload: bytes
    ) -> None:
        ep = conn.orig if io else conn.resp
        if ep.reasm is None:
            ep.reasm = _stream_for(session, io)
        if flags & TH_SYN:
            ep.reasm.syn(seq)
            seq = (seq + 1) & M32
        if flags & TH_RST:
            return
        ep.reasm.segment(ts, seq, payload)

    # ------------------------------------------------------------------------------------------
    def _reset_counters(self, conn: Conn) -> None:
        for ep in (conn.orig, conn.resp):
            ep.pkts = ep.ip_bytes = ep.payload = 0
            ep.size_base = ep.tcp_size()
            ep.seen_bytes = 0
        conn.clock.reset()
        conn.rec_start = conn.last

    def _emit(self, conn: Conn, partial: bool) -> None:
        if conn.unconfirmed and getattr(conn.session, "confirmed", False):
            conn.service.append(conn.unconfirmed)
            conn.unconfirmed = ""
        self._out.append(self.emit_flow(conn, partial))
        self.flows_emitted += 1

    def _finish(self, conn: Conn) -> None:
        if conn.session is not None:
            for ep in (conn.orig, conn.resp):
                if ep.reasm is not None:
                    ep.reasm.close(conn.last)
            try:
                conn.session.finish(conn.last)
            except ParseError as exc:
                self._conn_error(conn, exc.protocol, exc.reason)
            except Exception:
                self._conn_error(conn, conn.session.protocol, "exception")
            # A protocol that turned into another inside the connection (LDAP StartTLS) names it too.
            for name in getattr(conn.session, "inner_services", ()):
                if name not in conn.service:
                    conn.service.append(name)
        conn.commit_history()
        self._emit(conn, partial=False)

    def _remove(self, conn: Conn) -> None:
        self.conns.pop(conn.key, None)
        self._lru[conn.tclass].pop(conn.key, None)
        self._closing.pop(conn.key, None)
        self._attempts.pop(conn.key, None)

    def expire(self, now: float) -> list[sensor_pb2.Record]:
        """Emit connections that are idle, closed past the linger time or over the active timeout at
        event time ``now``."""
        self._out = []
        linger = self.config.close_linger_s
        done: list[Conn] = []
        for conn in self._closing.values():
            assert conn.closed_at is not None
            if now > conn.closed_at + linger:
                done.append(conn)
        for tcls, d in enumerate(self._lru):
            limit = now - self._timeouts[tcls]
            for conn in d.values():
                if conn.last >= limit:
                    break
                done.append(conn)
        limit = now - self._attempt_timeout
        for conn in self._attempts.values():
            if conn.last >= limit:
                break
            done.append(conn)
        seen: set[int] = set()
        for conn in done:
            if id(conn) in seen:
                continue
            seen.add(id(conn))
            self._remove(conn)
            self._finish(conn)
        active = self.config.active_timeout_s
        # Connections that keep sending are cut when their packets are merged; this sweep only matters
        # when the active timeout is shorter than an idle timeout (a quiet flow would otherwise wait
        # for the idle timeout). It walks the whole table, so it runs a few times per active timeout.
        if active < max(self._timeouts) and now - self._last_sweep >= active / 4:
            self._last_sweep = now
            for conn in list(self.conns.values()):
                if now - conn.rec_start >= active and conn.closed_at is None and conn.last > conn.rec_start:
                    self._emit(conn, partial=True)
                    self._reset_counters(conn)
        return self._out

    def flush(self) -> list[sensor_pb2.Record]:
        """End of input: every connection is final."""
        self._out = []
        for conn in list(self.conns.values()):
            self._remove(conn)
            self._finish(conn)
        return self._out
