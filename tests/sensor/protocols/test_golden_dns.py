"""Golden: our dns.log rows against Zeek's own btest baselines for the same captures."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.protocols import dns
from sensor.protocols.dns.zeek import to_zeek
from tests.sensor.protocols._pcap_replay import by_port, compare, have_tshark, replay
from tests.sensor.zeek_baseline import read_zeek_log

# Z is not in DnsRecord (contract gap reported); the writer adds the connection columns.
SKIP = frozenset({"Z"})


def baselines(corpus: Path, log_name: str) -> list[tuple[Path, Path]]:
    out = []
    for log in sorted(corpus.rglob(log_name)):
        baseline_dir = next(p for p in log.parents if p.name.endswith(".baseline"))
        out.append((baseline_dir.with_name(baseline_dir.name.removesuffix(".baseline")), log))
    return out


def test_dns_agrees_with_zeek(corpus: Path) -> None:
    if not have_tshark():
        pytest.skip("tshark is needed to extract payloads until the sensor flow table lands")
    total = agreeing = 0
    problems: list[str] = []
    for pcap, log in baselines(corpus, "dns.log"):
        result = replay(pcap, dns.FACTORY, by_port(dns.TRANSPORTS, dns.PORTS))
        rows = [to_zeek(r.dns) for r in result.records]
        cmp = compare(read_zeek_log(log), rows, SKIP)
        total += cmp.rows
        agreeing += cmp.agreeing_rows
        problems += [f"{pcap.name}: {d}" for d in cmp.disagreements]
        assert result.errors == [], f"{pcap.name}: {result.errors}"
    assert total >= 7, "expected the zeek dns baselines in the corpus"
    assert agreeing / total >= 0.98, "\n".join(problems)
