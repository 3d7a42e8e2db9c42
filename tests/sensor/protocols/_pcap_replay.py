"""Test-only payload extractor: drives protocol sessions from a capture through tshark.

Stands in for the sensor core's flow table until it lands: tshark decodes, we keep transport
payloads per connection and direction, put TCP back in sequence order (dropping retransmitted bytes and
reporting holes as gaps), and drop packets with bad IP/UDP/TCP checksums the way Zeek does.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sensor.protocols.base import ConnContext, Session, SessionFactory
from vigil.sensor.v1 import sensor_pb2

_FIELDS = (
    "frame.time_epoch",
    "eth.src",
    "eth.dst",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "udp.srcport",
    "udp.dstport",
    "tcp.srcport",
    "tcp.dstport",
    "udp.stream",
    "tcp.stream",
    "tcp.seq_raw",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "ip.checksum.status",
    "udp.checksum.status",
    "tcp.checksum.status",
    "udp.payload",
    "tcp.payload",
)

# (transport, orig_port, resp_port, first payload) -> should this connection get the session?
Selector = Callable[[str, int, int, bytes], bool]


@dataclass(slots=True)
class _Conn:
    ctx: ConnContext
    session: Session | None
    next_seq: dict[bool, int] = field(default_factory=dict)


@dataclass(slots=True)
class Replay:
    records: list[sensor_pb2.Record] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    contexts: dict[str, ConnContext] = field(default_factory=dict)


def have_tshark() -> bool:
    return shutil.which("tshark") is not None


def _uid(key: str) -> str:
    return "C" + hashlib.sha1(key.encode()).hexdigest()[:17]


def replay(pcap: Path, factory: SessionFactory, select: Selector, *, check_checksums: bool = True) -> Replay:
    """Feed every selected connection of ``pcap`` to its own session; collect records and error counts.

    ``check_checksums=False`` is Zeek's ``-C``, for captures taken with checksum offload.
    """
    cmd = ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-E", "occurrence=f",
           "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
           "-o", "tcp.desegment_tcp_streams:FALSE", "-o", "ip.defragment:TRUE"]  # fmt: skip
    for name in _FIELDS:
        cmd += ["-e", name]
    out = subprocess.run(cmd, capture_output=True, check=True, text=True).stdout
    result = Replay()
    conns: dict[str, _Conn] = {}
    last_ts = 0.0

    def emit(rec: sensor_pb2.Record) -> None:
        result.records.append(rec)

    def count(protocol: str, reason: str) -> None:
        result.errors.append((protocol, reason))

    for line in out.splitlines():
        f = dict(zip(_FIELDS, line.split("\t"), strict=False))
        if check_checksums and "0" in (
            f.get("ip.checksum.status"),
            f.get("udp.checksum.status"),
            f.get("tcp.checksum.status"),
        ):
            continue  # 0 is tshark's "Bad"
        ts = float(f["frame.time_epoch"])
        last_ts = ts
        src = f.get("ip.src") or f.get("ipv6.src") or ""
        dst = f.get("ip.dst") or f.get("ipv6.dst") or ""
        if f.get("udp.stream"):
            transport, stream = "udp", f["udp.stream"]
            sport, dport = int(f["udp.srcport"]), int(f["udp.dstport"])
            payload = bytes.fromhex(f.get("udp.payload", "").replace(":", ""))
        elif f.get("tcp.stream"):
            transport, stream = "tcp", f["tcp.stream"]
            sport, dport = int(f["tcp.srcport"]), int(f["tcp.dstport"])
            payload = bytes.fromhex(f.get("tcp.payload", "").replace(":", ""))
        else:
            continue
        key = f"{transport}:{stream}"
        conn = conns.get(key)
        if conn is None:
            # The first packet's sender is the originator, unless it is a TCP SYN-ACK.
            flip = transport == "tcp" and f.get("tcp.flags.syn") == "1" and f.get("tcp.flags.ack") == "1"
            if flip:
                src, dst, sport, dport = dst, src, dport, sport
            ctx = ConnContext(uid=_uid(f"{pcap.name}:{key}"), orig_ip=src, orig_port=sport, resp_ip=dst,
                              resp_port=dport, transport=transport,
                              orig_mac=f.get("eth.dst" if flip else "eth.src", ""),
                              resp_mac=f.get("eth.src" if flip else "eth.dst", ""))  # fmt: skip
            conn = _Conn(ctx, None)
            conns[key] = conn
            result.contexts[ctx.uid] = ctx
        is_orig = (src, sport) == (conn.ctx.orig_ip, conn.ctx.orig_port)
        if transport == "tcp":
            seq = int(f["tcp.seq_raw"])
            if f.get("tcp.flags.syn") == "1":
                conn.next_seq[is_orig] = (seq + 1) & 0xFFFFFFFF
                continue
            expected = conn.next_seq.setdefault(is_orig, seq)
            offset = (seq - expected) & 0xFFFFFFFF
            if offset >= 0x80000000:  # starts before what we already delivered: trim the overlap
                overlap = (expected - seq) & 0xFFFFFFFF
                payload = payload[overlap:]
                seq = expected
                offset = 0
            if not payload:
                continue
            if conn.session is None:
                conn.session = _start(conn, factory, select, payload, emit, count)
            if conn.session is None:
                continue
            if offset:
                conn.session.gap(is_orig, ts, offset)
            conn.next_seq[is_orig] = (seq + len(payload)) & 0xFFFFFFFF
        else:
            if conn.session is None:
                conn.session = _start(conn, factory, select, payload, emit, count)
            if conn.session is None:
                continue
        if not conn.session.done:
            conn.session.data(is_orig, ts, payload)
    for conn in conns.values():
        if conn.session is not None:
            conn.session.finish(last_ts)
    return result


def _start(
    conn: _Conn,
    factory: SessionFactory,
    select: Selector,
    payload: bytes,
    emit: Callable[[sensor_pb2.Record], None],
    count: Callable[[str, str], None],
) -> Session | None:
    ctx = conn.ctx
    if not select(ctx.transport, ctx.orig_port, ctx.resp_port, payload):
        return None
    return factory(ctx, emit, count)


def by_port(transport: tuple[str, ...], ports: tuple[int, ...]) -> Selector:
    def select(t: str, orig_port: int, resp_port: int, payload: bytes) -> bool:
        return t in transport and (orig_port in ports or resp_port in ports)

    return select


# Columns the lead's writer fills from the connection, or that no record of ours carries.
CONN_COLUMNS = frozenset({"ts", "uid", "uids", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"})


def zeek_str(value: object) -> str:
    """Render a zeek.py value the way Zeek's TSV writer does, so rows compare as strings."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list | tuple):
        return ",".join(zeek_str(v) for v in value) if value else "(empty)"
    return str(value) if value != "" else "(empty)"


def _same(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    try:
        # Intervals: Zeek prints microseconds; allow float noise in the last digit.
        return abs(float(expected) - float(actual)) < 2e-6
    except ValueError:
        return False


@dataclass(slots=True)
class Comparison:
    rows: int = 0
    agreeing_rows: int = 0
    disagreements: list[str] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.agreeing_rows / self.rows if self.rows else 1.0


def compare(
    expected: list[dict[str, str]], actual: list[dict[str, object]], skip: frozenset[str] = frozenset()
) -> Comparison:
    """Row-by-row agreement on the columns the baseline has, ignoring connection columns and ``skip``."""
    result = Comparison(rows=max(len(expected), len(actual)))
    for i in range(result.rows):
        if i >= len(expected) or i >= len(actual):
            result.disagreements.append(f"row {i}: {'missing' if i >= len(actual) else 'extra'} row")
            continue
        bad = []
        for column, want in expected[i].items():
            if column in CONN_COLUMNS or column in skip:
                continue
            got = zeek_str(actual[i].get(column))
            if not _same(want, got):
                bad.append(f"{column}: zeek={want!r} ours={got!r}")
        if bad:
            result.disagreements.append(f"row {i}: " + "; ".join(bad))
        else:
            result.agreeing_rows += 1
    return result
