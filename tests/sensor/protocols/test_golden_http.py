"""Golden: our http.log rows against Zeek's btest baseline for http/methods.pcap."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.protocols import http
from sensor.protocols.http.zeek import to_zeek
from tests.sensor.protocols._pcap_replay import compare, have_tshark, replay
from tests.sensor.protocols.test_golden_dns import baselines
from tests.sensor.zeek_baseline import read_zeek_log

# File-analysis ids and names: Vigil does not extract files.
SKIP = frozenset({"orig_fuids", "resp_fuids", "orig_filenames", "resp_filenames"})


def _select(transport: str, _orig_port: int, resp_port: int, payload: bytes) -> bool:
    return transport == "tcp" and (resp_port in http.PORTS or http.looks_like(payload))


def test_http_agrees_with_zeek(corpus: Path) -> None:
    if not have_tshark():
        pytest.skip("tshark is needed to extract payloads until the sensor flow table lands")
    total = agreeing = 0
    problems: list[str] = []
    for pcap, log in baselines(corpus, "http.log"):
        if "spicy." in str(log):
            continue  # a Spicy test that feeds UDP/53 payload into the HTTP analyzer by script, not traffic
        result = replay(pcap, http.FACTORY, _select)
        recs = sorted((r.http for r in result.records if r.WhichOneof("kind") == "http"),
                      key=lambda h: (h.time.seconds, h.time.nanos))  # fmt: skip
        cmp = compare(read_zeek_log(log), [to_zeek(h) for h in recs], SKIP)
        total += cmp.rows
        agreeing += cmp.agreeing_rows
        problems += [f"{pcap.name}: {d}" for d in cmp.disagreements]
    assert total >= 49
    assert agreeing / total >= 0.98, "\n".join(problems)
