"""Evasion by fragmentation: `nmap -sS -f` cuts every probe's TCP header into 8-byte IP fragments. The
sensor reassembles them, so the scan is still the scan the targets saw."""

from __future__ import annotations

from pathlib import Path

import pytest

from master.offline import OfflineMaster
from sensor.logwriter import pipeline_records
from tests.lab.netns import bridge_capture, lab, tcp_listener, unavailable_reason
from vigil.config import SensorConfig

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True)
def _need_lab() -> None:
    if reason := unavailable_reason(["nmap", "tcpdump"]):
        pytest.skip(reason)


def test_a_fragmented_syn_scan_is_seen_and_breaches(tmp_path: Path) -> None:
    with lab(["attacker"], ["srv1", "srv2"]) as built:
        for name in ("srv1", "srv2"):
            tcp_listener(built.hosts[name], 22)
        built.wait_reachable("attacker", built.hosts["srv1"].ip, 22)
        capture = tmp_path / "frag-scan.pcap"
        attacker = built.hosts["attacker"]
        targets = f"{built.hosts['srv1'].ip[:-3]}.1-30"
        with bridge_capture(built, capture, bridge="br-a"):
            proc = attacker.run(
                "nmap", "-n", "-Pn", "-sS", "-f", "-T4", "--max-retries", "0", "--host-timeout", "30s",
                "-p", "22,80,445", targets, timeout=90,
            )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    records = list(pipeline_records(SensorConfig(), [capture]))
    flows = [r.flow for r in records if r.WhichOneof("kind") == "flow" and r.flow.orig.port > 1023]
    probed = {(bytes(f.resp.ip), f.resp.port) for f in flows if f.history.startswith("S")}
    # Every probe of 30 addresses x 3 ports reached the flow table as a SYN, although none was a packet.
    assert len(probed) >= 80
    open_ports = [f for f in flows if f.history.startswith("Sh")]
    assert len(open_ports) >= 2  # the two listeners answered SYN-ACK
    breaches = OfflineMaster().process(records).breaches
    assert "Device / Network Scan" in {b.model for b in breaches}
    assert {b.device.ip for b in breaches} == {attacker.ip}
