"""The internal-attack scenario captures (tests/data/scenarios/internal-*.pcap, recorded by
:mod:`tests.lab.scenarios_internal`): the committed captures make the records their scenario needs and the
catalog models that detect them today fire on the acting device; and, as root, the recorder still works
(one short scenario is re-recorded in the lab).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from master.features import ip_text
from master.offline import OfflineMaster
from sensor.logwriter import pipeline_records
from tests.lab.netns import unavailable_reason
from tests.lab.scenarios_internal import ATTACKER_IP, SCENARIO_BY_NAME, TOOLS, Scenario, ptr_sweep, record
from vigil.config import SensorConfig
from vigil.flow.v1 import smb_pb2
from vigil.sensor.v1 import sensor_pb2

SCENARIOS = Path(__file__).resolve().parent.parent / "data" / "scenarios"
WS1, WS2 = "10.231.1.10", "10.231.1.11"

# The models that fire today on each capture alone (no baseline), per acting device. The truth files list
# what each scenario should raise after the benign baseline (there the Raspberry Pi is also a new device).
FIRES_TODAY: dict[str, dict[str, frozenset[str]]] = {
    "internal-recon": {
        ATTACKER_IP: frozenset(
            {
                "Device / Network Scan",
                "Device / Network Range Scan",
                "Device / Suspicious Network Scan Activity",
                "Device / Anomalous Nmap Activity",
                "Device / Attack and Recon Tools",
                "Device / UDP Enumeration",
                "Device / RDP Scan",
                "Device / Suspicious SMB Scanning Activity",
                "Device / Multiple Lateral Movement Model Breaches",
                "Device / Large Number of Model Breaches",
            }
        )
    },
    "internal-smb-brute": {
        ATTACKER_IP: frozenset(
            {"Device / SMB Session Brute Force (Non-Admin)", "Device / SMB Session Brute Force (Admin)"}
        )
    },
    "internal-ldap": {ATTACKER_IP: frozenset({"Device / Unusual LDAP Bind and Search Activity"})},
    "internal-ptr-sweep": {ATTACKER_IP: frozenset({"Device / Reverse DNS Sweep"})},
    "internal-hostname": {WS1: frozenset({"Unusual Activity / Unusual Hostname for IP"})},
    "internal-smbv1": {WS2: frozenset({"Compromise / Suspicious SMB Activity"})},
    "internal-external-scan": {ATTACKER_IP: frozenset({"Device / External Network Scan"})},
    "internal-quiet-recon": {WS2: frozenset({"Unusual Activity / Significant Anomaly"})},
}


def _records(path: Path) -> list[sensor_pb2.Record]:
    return list(pipeline_records(SensorConfig(), [path], seed=1))


def _kinds(records: list[sensor_pb2.Record]) -> Iterator[tuple[str, sensor_pb2.Record]]:
    for r in records:
        yield str(r.WhichOneof("kind")), r


def _by(record: sensor_pb2.Record) -> str | None:
    """The originator's address of an application record (flows carry theirs in ``flow.orig``)."""
    return ip_text(record.orig.ip)


def _ptr_queries(records: list[sensor_pb2.Record]) -> set[str]:
    return {
        r.dns.query
        for kind, r in _kinds(records)
        if kind == "dns" and r.dns.qtype == 12 and r.dns.query.endswith(".2.231.10.in-addr.arpa")
    }


# -- the committed captures (no root needed) -------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FIRES_TODAY))
def test_committed_capture_raises_the_models_that_fire_today(name: str) -> None:
    path = SCENARIOS / f"{name}.pcap"
    assert path.is_file(), f"{path} missing: record it with `python -m tests.lab.scenarios_internal`"
    assert (SCENARIOS / f"{name}.truth.yaml").is_file()
    result = OfflineMaster().process(_records(path))
    fired: dict[str, set[str]] = {}
    for breach in result.breaches:
        fired.setdefault(breach.device.ip, set()).add(breach.model)
    for ip, models in FIRES_TODAY[name].items():
        assert models <= fired.get(ip, set()), f"{name}: {ip} missing {sorted(models - fired.get(ip, set()))}"


def test_committed_captures_hold_the_protocol_records() -> None:
    ntlm: dict[str, list[sensor_pb2.Record]] = {}
    for name in ("internal-smb-brute", "internal-hostname", "internal-smbv1"):
        ntlm[name] = [r for kind, r in _kinds(_records(SCENARIOS / f"{name}.pcap")) if kind == "ntlm"]
    brute = [r.ntlm for r in ntlm["internal-smb-brute"] if _by(r) == ATTACKER_IP]
    assert sum(1 for n in brute if n.username == "alice" and not n.success) >= 15
    assert sum(1 for n in brute if n.username == "Administrator" and not n.success) >= 6
    names = [r.ntlm.hostname for r in ntlm["internal-hostname"] if _by(r) == WS1]
    assert names.count("WS1") >= 6 and names[-1] == "EVIL-LAPTOP"

    smb1 = [
        r.smb_negotiate
        for kind, r in _kinds(_records(SCENARIOS / "internal-smbv1.pcap"))
        if kind == "smb_negotiate" and _by(r) == WS2
    ]
    # Samba answers the NT1 client's dialect list with "NT LANMAN 1.0" (the same dialect as "NT LM 0.12").
    assert len(smb1) >= 2 and all(n.smb1_offered and n.version == smb_pb2.SMB_VERSION_1 for n in smb1)

    ldap = [
        (kind, r) for kind, r in _kinds(_records(SCENARIOS / "internal-ldap.pcap")) if _by(r) == ATTACKER_IP
    ]
    assert sum(1 for kind, r in ldap if kind == "ldap" and r.ldap.opcode == "bind") >= 15
    assert sum(1 for kind, _ in ldap if kind == "ldap_search") >= 10

    recon = _records(SCENARIOS / "internal-recon.pcap")
    agents = {r.http.user_agent for kind, r in _kinds(recon) if kind == "http" and _by(r) == ATTACKER_IP}
    assert any("Nmap Scripting Engine" in a for a in agents)
    half_open = [r.flow for kind, r in _kinds(recon) if kind == "flow" and r.flow.history.startswith("ShR")]
    assert len(half_open) >= 10


# -- re-recording (root) ---------------------------------------------------------------------------
@pytest.mark.lab
@pytest.mark.slow
def test_recorder_captures_a_reverse_dns_sweep(tmp_path: Path) -> None:
    if reason := unavailable_reason(TOOLS):
        pytest.skip(reason)
    base = SCENARIO_BY_NAME["internal-ptr-sweep"]
    quick = Scenario(base.name, functools.partial(ptr_sweep, quick=True), base.allow_smb1)
    # A random lab id (no collision with a recording holding the fixed names); no waiting for a fresh
    # window (254 names are far above the floor of 20 however a window boundary cuts them).
    out = record(quick, tmp_path / "internal-ptr-sweep.pcap", lab_id=None, align=False)
    records = _records(out)
    swept = {
        r.dns.query for kind, r in _kinds(records) if kind == "dns" and _by(r) == ATTACKER_IP
    } & _ptr_queries(records)
    assert len(swept) == 254
    answered = {
        r.dns.query
        for kind, r in _kinds(records)
        if kind == "dns" and _by(r) == ATTACKER_IP and r.dns.qtype == 12 and r.dns.answers
    }
    assert {"20.2.231.10.in-addr.arpa", "21.2.231.10.in-addr.arpa", "22.2.231.10.in-addr.arpa"} <= answered
    # The office hosts' ordinary traffic is in the capture too.
    assert any(kind == "http" and _by(r) in (WS1, WS2) for kind, r in _kinds(records))
    breaches = OfflineMaster().process(records).breaches
    assert any(b.model == "Device / Reverse DNS Sweep" and b.device.ip == ATTACKER_IP for b in breaches)
