"""Offline reading of captures into log files: ``vigil sensor read CAPTURE --format zeek-json|jsonl``.

``zeek-json`` writes one ``<log>.log`` per Zeek log type, one JSON object per line, with the field
names and value conventions of Zeek's JSON writer (``LogAscii::use_json=T`` with epoch timestamps):
``ts`` as epoch seconds, the connection id flattened to ``id.orig_h`` ... ``id.resp_p``, unset fields
left out, sets and vectors as arrays, intervals as float seconds. Tools that read Zeek's JSON logs
(RITA, Slips, SIEM parsers) can then read Vigil's.

``jsonl`` writes the protobuf records themselves (proto3 JSON mapping) to ``records.jsonl``: exactly
what the sensor publishes over NATS, one record per line.

The row mapping (:class:`ZeekRows`) is the one the golden tests compare with Zeek's own logs, so what
the tests measure is what users get.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import CollectorRegistry

from sensor.analyzers import default_registry
from sensor.capture import CaptureError, read_capture
from sensor.pipeline import SensorPipeline
from sensor.protocols.base import FLIP_ROLES
from sensor.protocols.dce_rpc import zeek as dce_rpc_zeek
from sensor.protocols.dhcp import zeek as dhcp_zeek
from sensor.protocols.dns import zeek as dns_zeek
from sensor.protocols.ftp import zeek as ftp_zeek
from sensor.protocols.http import zeek as http_zeek
from sensor.protocols.kerberos import zeek as krb_zeek
from sensor.protocols.ldap import zeek as ldap_zeek
from sensor.protocols.ntlm import zeek as ntlm_zeek
from sensor.protocols.rdp import zeek as rdp_zeek
from sensor.protocols.smb import zeek as smb_zeek
from sensor.protocols.smtp import zeek as smtp_zeek
from sensor.protocols.tls import zeek as tls_zeek
from sensor.protocols.websocket import zeek as websocket_zeek
from sensor.registry import Registry
from sensor.sources.pcap import capture_problems
from vigil.config import SensorConfig, VigilConfig
from vigil.exitcodes import Exit
from vigil.flow.v1 import flow_pb2
from vigil.sensor.v1 import sensor_pb2

FORMATS = ("zeek-json", "jsonl")
# Exit codes of read_to_logs beyond 0: a capture could not be opened / was truncated or corrupt.

# Record kind -> (Zeek log name, row mapper). SmbNegotiate, SmbSessionSetup and SmbCommandCounts
# have no log in Zeek's base scripts (smb1/smb2 negotiation is not logged; smb_cmd.log is a policy
# script with a per-command row we do not keep), so they appear only in the jsonl output. A mapper
# returns None for a record Zeek's default configuration would not log (dce_rpc.log's ignored operations).
_APP_LOGS: dict[str, tuple[str, Callable[[Any], dict[str, Any] | None]]] = {
    "dns": ("dns", dns_zeek.to_zeek),
    "http": ("http", http_zeek.to_zeek),
    "tls": ("ssl", tls_zeek.to_zeek),
    "smb_tree_connect": ("smb_mapping", smb_zeek.mapping_to_zeek),
    "smb_file": ("smb_files", smb_zeek.file_to_zeek),
    "ntlm": ("ntlm", ntlm_zeek.to_zeek),
    "ldap": ("ldap", ldap_zeek.message_to_zeek),
    "ldap_search": ("ldap_search", ldap_zeek.search_to_zeek),
    "kerberos": ("kerberos", krb_zeek.to_zeek),
    "rdp": ("rdp", rdp_zeek.to_zeek),
    "dce_rpc": ("dce_rpc", dce_rpc_zeek.to_zeek),
    "websocket": ("websocket", websocket_zeek.to_zeek),
    "smtp": ("smtp", smtp_zeek.to_zeek),
    "ftp": ("ftp", ftp_zeek.to_zeek),
}
ZEEK_LOGS = ("conn", "dhcp", *sorted({log for log, _ in _APP_LOGS.values()}))

# Zeek's conn.log ``proto`` is its transport_proto enum: ICMPv6 is "icmp" too, anything else unknown.
_PROTO_NAME = {
    flow_pb2.TRANSPORT_TCP: "tcp",
    flow_pb2.TRANSPORT_UDP: "udp",
    flow_pb2.TRANSPORT_ICMP: "icmp",
    flow_pb2.TRANSPORT_ICMPV6: "icmp",
}
# Logs whose Zeek record carries the connection's transport after id.* (dns.log only, of ours).
_LOGS_WITH_PROTO = frozenset({"dns"})

# Application records waiting for their connection's flow record (see ZeekRows). A session's records
# are emitted before its connection's final flow, so this holds the rows of live connections only;
# the cap protects against a pathological capture, not normal traffic.
MAX_PENDING_ROWS = 1_000_000

Row = dict[str, Any]


def epoch(ts: Timestamp) -> float:
    # Zeek's JSON writer prints times with microsecond precision.
    return round(ts.seconds + ts.nanos / 1e9, 6)


def seconds(d: Duration) -> float:
    return round(d.seconds + d.nanos / 1e9, 6)


def _ip(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def conn_id(flow: flow_pb2.Flow) -> Row:
    """Zeek's ``conn_id`` flattened the way its JSON writer does (ICMP: type and code as ports)."""
    return {
        "id.orig_h": _ip(flow.orig.ip),
        "id.orig_p": flow.orig.port,
        "id.resp_h": _ip(flow.resp.ip),
        "id.resp_p": flow.resp.port,
    }


def conn_row(flow: flow_pb2.Flow) -> Row:
    """A conn.log row. ``local_orig``/``local_resp`` and ``tunnel_parents`` are left out: the sensor
    is not told the local networks and does not decapsulate tunnels, and unset is Zeek's "unknown"."""
    row: Row = {"ts": epoch(flow.start_time), "uid": flow.uid, **conn_id(flow)}
    row["proto"] = _PROTO_NAME.get(flow.transport, "unknown_transport")
    if flow.service:
        row["service"] = ",".join(flow.service)
    duration = seconds(flow.duration)
    if duration > 0:
        # Zeek sets duration and the payload sizes only for connections that lasted (its set_conn).
        row["duration"] = duration
        row["orig_bytes"] = flow.orig_bytes
        row["resp_bytes"] = flow.resp_bytes
    if flow.conn_state != flow_pb2.CONN_STATE_UNSPECIFIED:
        row["conn_state"] = flow_pb2.ConnState.Name(flow.conn_state).removeprefix("CONN_STATE_")
    row["missed_bytes"] = flow.missed_bytes
    if flow.history:
        row["history"] = flow.history
    row["orig_pkts"] = flow.orig_pkts
    row["orig_ip_bytes"] = flow.orig_ip_bytes
    row["resp_pkts"] = flow.resp_pkts
    row["resp_ip_bytes"] = flow.resp_ip_bytes
    row["ip_proto"] = flow.ip_proto
    # Field names of Zeek's policy/protocols/conn/mac-logging and vlan-logging scripts.
    if flow.orig.mac:
        row["orig_l2_addr"] = _mac(flow.orig.mac)
    if flow.resp.mac:
        row["resp_l2_addr"] = _mac(flow.resp.mac)
    if flow.vlan:
        row["vlan"] = flow.vlan
    if flow.inner_vlan:
        row["inner_vlan"] = flow.inner_vlan
    if flow.community_id:
        # policy/protocols/conn/community-id-logging
        row["community_id"] = flow.community_id
    return row


def _clean(row: Row) -> Row:
    # Zeek's writer leaves unset fields out; zeek.py mappers already do, this guards against None.
    # Every float in these logs is a time or an interval, which Zeek knows to the microsecond.
    return {
        k: round(v, 6) if isinstance(v, float) else v
        for k, v in row.items()
        if v is not None and k != FLIP_ROLES
    }


class ZeekRows:
    """Turns sensor records into (log name, Zeek row) pairs, in the order they become complete.

    Application records carry only the connection's uid; Zeek's rows also carry its ``id.*`` (and for
    dns.log the transport). Those come from the flow record, which the flow table emits after the
    session's records (it finishes the session first), or, for a long connection cut by the active
    timeout, before some of them. So rows wait here until their uid's first flow record arrives, and a
    uid's endpoints are kept until its final (non-partial) flow record.
    """

    def __init__(
        self,
        max_pending_rows: int = MAX_PENDING_ROWS,
        ldap_search_attributes: bool = False,
        smb_reads_writes: bool = False,
    ) -> None:
        self.max_pending_rows = max_pending_rows
        # Zeek's LDAP::default_log_search_attributes: ldap_search.log rows list the requested attributes.
        self.ldap_search_attributes = ldap_search_attributes
        # SMB::FILE_READ and SMB::FILE_WRITE added to Zeek's SMB::logged_file_actions (smb_files.log).
        self.smb_reads_writes = smb_reads_writes
        self._pending: OrderedDict[str, list[tuple[str, Row]]] = OrderedDict()
        self._pending_rows = 0
        self._conns: dict[str, tuple[Row, str]] = {}
        # Rows written without id.* because their flow never came (or the pending cap was hit).
        self.orphaned_rows = 0

    def add(self, record: sensor_pb2.Record) -> list[tuple[str, Row]]:
        kind = record.WhichOneof("kind")
        if kind == "flow":
            return self._flow(record.flow)
        if kind == "dhcp":
            # One exchange spans several connections (broadcast, then unicast): Zeek's dhcp.log has
            # ``uids`` instead of a connection id.
            row = {"ts": epoch(record.dhcp.time), **dhcp_zeek.to_zeek(record.dhcp)}
            return [("dhcp", _clean(row))]
        spec = _APP_LOGS.get(kind or "")
        if spec is None:
            return []
        log, mapper = spec
        msg = getattr(record, kind or "")
        fields: Row | None
        if kind == "ldap_search":
            fields = ldap_zeek.search_to_zeek(msg, self.ldap_search_attributes)
        elif kind == "smb_file":
            fields = smb_zeek.file_to_zeek(msg, self.smb_reads_writes)
        else:
            fields = mapper(msg)
        if fields is None:
            return []
        row = {"ts": epoch(msg.time), "uid": msg.uid, **fields}
        known = self._conns.get(msg.uid)
        if known is not None:
            return [(log, self._join(log, row, *known))]
        self._pending.setdefault(msg.uid, []).append((log, row))
        self._pending_rows += 1
        out: list[tuple[str, Row]] = []
        while self._pending_rows > self.max_pending_rows and self._pending:
            _uid, rows = self._pending.popitem(last=False)
            self._pending_rows -= len(rows)
            self.orphaned_rows += len(rows)
            out += [(name, _clean(r)) for name, r in rows]
        return out

    def finish(self) -> list[tuple[str, Row]]:
        """End of input: rows whose connection never produced a flow record, without ``id.*``."""
        out = [(log, _clean(r)) for rows in self._pending.values() for log, r in rows]
        self.orphaned_rows += len(out)
        self._pending.clear()
        self._pending_rows = 0
        self._conns.clear()
        return out

    def _flow(self, flow: flow_pb2.Flow) -> list[tuple[str, Row]]:
        ident = conn_id(flow)
        proto = _PROTO_NAME.get(flow.transport, "unknown_transport")
        out = [("conn", conn_row(flow))]
        rows = self._pending.pop(flow.uid, [])
        self._pending_rows -= len(rows)
        out += [(log, self._join(log, row, ident, proto)) for log, row in rows]
        if flow.partial:
            self._conns[flow.uid] = (ident, proto)
        else:
            self._conns.pop(flow.uid, None)
        return out

    @staticmethod
    def _join(log: str, row: Row, ident: Row, proto: str) -> Row:
        # Zeek's column order: ts, uid, id.*, (proto), then the log's own fields.
        if row.pop(FLIP_ROLES, False):
            # The analyzer saw the connection the other way round (dns.log: a response came first).
            ident = {
                "id.orig_h": ident["id.resp_h"],
                "id.orig_p": ident["id.resp_p"],
                "id.resp_h": ident["id.orig_h"],
                "id.resp_p": ident["id.orig_p"],
            }
        head: Row = {"ts": row.pop("ts"), "uid": row.pop("uid"), **ident}
        if log in _LOGS_WITH_PROTO:
            head["proto"] = proto
        head.update(row)
        return _clean(head)


def pipeline_records(
    config: SensorConfig,
    captures: Sequence[Path],
    registry: Registry | None = None,
    seed: int | None = None,
    errors: list[CaptureError] | None = None,
    metrics_registry: CollectorRegistry | None = None,
    pipeline: SensorPipeline | None = None,
) -> Iterator[sensor_pb2.Record]:
    """Every record the sensor makes of ``captures`` (read in order, as one trace), flushed at the end.

    A truncated or corrupt capture keeps everything read before the damage; the error is appended to
    ``errors`` (raised when ``errors`` is None, after the flush) and reading goes on with the next file.
    A capture with nothing decodable in it is appended to ``errors`` too (never raised). ``pipeline``: one
    the caller keeps (for its tallies), instead of a new one from the other arguments.
    """
    pipe = pipeline or SensorPipeline(
        config,
        registry if registry is not None else default_registry(),
        metrics_registry=metrics_registry,
        seed=seed,
    )
    failures: list[CaptureError] = errors if errors is not None else []
    for path in captures:
        tallies = pipe.packets_read, pipe.unsupported_link_packets
        try:
            for block in read_capture(path):
                yield from pipe.feed(block)
        except CaptureError as exc:
            failures.append(exc)
        undecodable = pipe.undecodable_since(*tallies)
        if undecodable is not None and errors is not None:
            # Reported, never raised: a capture of an unknown link type is not damaged, only unreadable here.
            errors.append(CaptureError(str(path), 0, undecodable))
    yield from pipe.flush()
    if errors is None and failures:
        raise failures[0]


def zeek_logs(
    records: Iterable[sensor_pb2.Record], ldap_search_attributes: bool = False, smb_reads_writes: bool = False
) -> dict[str, list[Row]]:
    """All Zeek rows of ``records`` by log name (in memory: for tests and small captures)."""
    rows = ZeekRows(ldap_search_attributes=ldap_search_attributes, smb_reads_writes=smb_reads_writes)
    out: dict[str, list[Row]] = {}
    for rec in records:
        for log, row in rows.add(rec):
            out.setdefault(log, []).append(row)
    for log, row in rows.finish():
        out.setdefault(log, []).append(row)
    return out


def json_line(row: Row) -> str:
    """One row as a line of a Zeek JSON log (no newline): compact separators and raw UTF-8, as Zeek's
    JSON writer emits."""
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


class _LogFiles:
    """``<log>.log`` files in one directory, created when their first row arrives."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.files: dict[str, IO[str]] = {}

    def write(self, log: str, row: Row) -> None:
        fh = self.files.get(log)
        if fh is None:
            fh = self.files[log] = (self.out / f"{log}.log").open("w", encoding="utf-8")
        fh.write(json_line(row) + "\n")

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()


class _OneStream:
    """Every log's rows on one stream (standard output), each naming its log first in ``_path`` as Zeek's
    JSON streaming logs do, so ``jq 'select(._path == "dns")'`` takes one log back out."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh = fh

    def write(self, log: str, row: Row) -> None:
        self.fh.write(json_line({"_path": log, **row}) + "\n")

    def close(self) -> None:
        self.fh.flush()


# The --out that means standard output.
STDOUT = "-"


def read_to_logs(cfg: VigilConfig, captures: Sequence[Path], fmt: str, out: Path) -> int:
    """Read ``captures`` through the sensor and write logs in ``fmt`` into directory ``out`` (``-``:
    standard output, every log on one stream).

    Returns the process exit code: 0, 1 when a capture does not exist, 3 when one is truncated or
    corrupt (everything read before the damage is still written).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    to_stdout = str(out) == STDOUT
    problems = capture_problems(captures)
    problem = None if to_stdout else _out_dir_problem(out)
    if problem:
        problems.append(problem)
    if problems:
        for problem in problems:
            print(f"vigil: {problem}", file=sys.stderr)
        return Exit.ENVIRONMENT
    errors: list[CaptureError] = []
    records = pipeline_records(cfg.sensor, [Path(p) for p in captures], errors=errors)
    orphaned = 0
    if fmt == "jsonl":
        opened = (
            contextlib.nullcontext(sys.stdout)
            if to_stdout
            else (out / "records.jsonl").open("w", encoding="utf-8")
        )
        with opened as fh:
            for rec in records:
                fh.write(json_format.MessageToJson(rec, indent=None) + "\n")
    else:
        files: _LogFiles | _OneStream = _OneStream(sys.stdout) if to_stdout else _LogFiles(out)
        rows = ZeekRows()
        try:
            for rec in records:
                for log, row in rows.add(rec):
                    files.write(log, row)
            for log, row in rows.finish():
                files.write(log, row)
        finally:
            files.close()
        orphaned = rows.orphaned_rows
    if orphaned:
        print(f"vigil: {orphaned} application rows written without their connection id", file=sys.stderr)
    for exc in errors:
        print(f"vigil: {exc.path}: {exc.reason}; logs hold everything that could be read", file=sys.stderr)
    return Exit.INPUT if errors else 0


def _out_dir_problem(out: Path) -> str | None:
    """Make the output directory; why it cannot be one (None when it is ready)."""
    if out.exists() and not out.is_dir():
        return f"--out {out}: exists and is not a directory"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"--out {out}: cannot create: {exc.strerror or exc}"
    if not os.access(out, os.W_OK | os.X_OK):
        return f"--out {out}: not writable by this process"
    return None
