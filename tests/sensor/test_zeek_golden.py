"""Golden comparison with Zeek's own conn.log baselines (shared corpus; skipped when absent).

Zeek's btest baselines sit beside the captures: ``<capture>.baseline/<test>/conn.log``. Rows are
matched by 5-tuple (uids are random); every matched row must agree on conn_state, history, packets,
IP bytes, payload bytes (where Zeek logs them) and missed bytes. Some baselines come from tests that
read a different capture than the directory suggests, so a few Zeek rows may have no counterpart.
"""

from __future__ import annotations

import collections
import ipaddress
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sensor.capture import read_capture
from sensor.pipeline import SensorPipeline
from tests.sensor.zeek_baseline import read_zeek_log
from vigil.config import SensorConfig
from vigil.flow.v1 import flow_pb2

PROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp"}
FIELDS = (
    "conn_state",
    "history",
    "orig_bytes",
    "resp_bytes",
    "orig_pkts",
    "resp_pkts",
    "orig_ip_bytes",
    "resp_ip_bytes",
    "missed_bytes",
)


def _ours(capture: Path) -> dict[tuple[str, ...], list[dict[str, str]]]:
    pipe = SensorPipeline(SensorConfig(), metrics_registry=CollectorRegistry(), seed=1)
    records = []
    for block in read_capture(capture):
        records += pipe.feed(block)
    records += pipe.flush()
    out: dict[tuple[str, ...], list[dict[str, str]]] = collections.defaultdict(list)
    for r in records:
        if not r.HasField("flow"):
            continue
        f = r.flow
        key = (
            str(ipaddress.ip_address(f.orig.ip)),
            str(f.orig.port),
            str(ipaddress.ip_address(f.resp.ip)),
            str(f.resp.port),
            PROTO.get(f.ip_proto, "?"),
        )
        out[key].append(
            {
                "conn_state": flow_pb2.ConnState.Name(f.conn_state).removeprefix("CONN_STATE_"),
                "history": f.history or "-",
                "orig_bytes": str(f.orig_bytes),
                "resp_bytes": str(f.resp_bytes),
                "orig_pkts": str(f.orig_pkts),
                "resp_pkts": str(f.resp_pkts),
                "orig_ip_bytes": str(f.orig_ip_bytes),
                "resp_ip_bytes": str(f.resp_ip_bytes),
                "missed_bytes": str(f.missed_bytes),
            }
        )
    return out


def test_conn_log_agreement(corpus: Path) -> None:
    logs = sorted((corpus / "zeek").rglob("conn.log"))
    if not logs:
        pytest.skip("no Zeek conn.log baselines in the corpus")
    rows = matched = 0
    disagreements: list[str] = []
    for log in logs:
        baseline_dir = log.parent.parent
        capture = baseline_dir.parent / baseline_dir.name.removesuffix(".baseline")
        zeek_rows = read_zeek_log(log)
        if not capture.exists() or not zeek_rows or "id.orig_p" not in zeek_rows[0]:
            continue  # trimmed baselines without the 5-tuple cannot be matched row by row
        ours = _ours(capture)
        seen: collections.Counter[tuple[str, ...]] = collections.Counter()
        for z in zeek_rows:
            key = (z["id.orig_h"], z["id.orig_p"], z["id.resp_h"], z["id.resp_p"], z["proto"])
            rows += 1
            candidates = ours.get(key, [])
            if seen[key] >= len(candidates):
                continue
            mine = candidates[seen[key]]
            seen[key] += 1
            matched += 1
            for name in FIELDS:
                if z[name] == "-" and name in ("orig_bytes", "resp_bytes"):
                    continue  # Zeek leaves sizes unset on single-packet connections
                if z[name] != mine[name]:
                    disagreements.append(f"{capture.name} {key} {name}: zeek={z[name]} ours={mine[name]}")
    print(f"zeek conn.log rows={rows} matched={matched} field disagreements={len(disagreements)}")
    assert rows > 0
    assert matched >= 0.9 * rows
    assert disagreements == []
