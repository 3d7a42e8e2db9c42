"""Golden: our dhcp.log rows (one per exchange, across connections) against Zeek's btest baselines."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.protocols import dhcp
from sensor.protocols.dhcp.zeek import to_zeek
from tests.sensor.protocols._pcap_replay import by_port, compare, have_tshark, replay
from tests.sensor.protocols.test_golden_dns import baselines
from tests.sensor.zeek_baseline import read_zeek_log

# Zeek's btests for the flood capture redefine its per-row limits; the table takes the same knobs.
LIMITS = {"dhcp-prevent-large-msgtypes": {"max_msg_types": 8}, "dhcp-prevent-large-uids": {"max_uids": 5}}


def test_dhcp_agrees_with_zeek(corpus: Path) -> None:
    if not have_tshark():
        pytest.skip("tshark is needed to extract payloads until the sensor flow table lands")
    total = agreeing = 0
    problems: list[str] = []
    for pcap, log in baselines(corpus, "dhcp.log"):
        limits = next((v for k, v in LIMITS.items() if k in str(log)), {})
        factory = dhcp.DhcpSessionFactory(dhcp.TransactionTable(**limits))
        result = replay(pcap, factory, by_port(dhcp.TRANSPORTS, dhcp.PORTS))
        # Zeek writes exchanges from a timer; order both by first message time.
        records = sorted((r.dhcp for r in result.records), key=lambda d: (d.time.seconds, d.time.nanos))
        rows = [to_zeek(r) for r in records]
        expected = read_zeek_log(log)
        cmp = compare(expected, rows)
        total += cmp.rows
        agreeing += cmp.agreeing_rows
        problems += [f"{pcap.name}: {d}" for d in cmp.disagreements]
        # uids are Zeek's own connection ids; the number of connections per exchange must still match.
        assert [len(e["uids"].split(",")) for e in expected] == [len(r["uids"]) for r in rows]
        assert result.errors == [], f"{pcap.name}: {result.errors}"
    assert total >= 100
    assert agreeing / total >= 0.98, "\n".join(problems)
