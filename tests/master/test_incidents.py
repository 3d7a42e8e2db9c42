"""The two seed incidents, replayed from lab captures through the real master, each read as one incident whose
summary tells the seed's story with the numbers the captures hold.

* The rogue Raspberry Pi (seed 004): a device nobody knew appears, calls home to a rare host and sends it
  7.5 MB, maps the server LAN with nmap, scans internet addresses, and guesses SMB passwords.
* The vishing intrusion (seed 000): a machine new to the network queries the directory over LDAP, scans with
  nmap, sweeps reverse DNS and brute-forces SMB logons.

Both are composed from the lab's recordings of the Raspberry Pi (10.231.1.12; see
tests/data/scenarios/README.md), each capture moved whole to the seed's hour on the day after a three-day
benign baseline; no packet is changed. The baseline is learned once and forked per story.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from master.offline import OfflineMaster
from tests.lab.compose import BENIGN_DIR, DEFAULT_START, compose_baseline, shift_to
from vigil.alert.v1 import alert_pb2
from vigil.cli.offline import CaptureRecords
from vigil.config import VigilConfig

SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "scenarios"
PI = "10.231.1.12"


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[OfflineMaster, float, Path]:
    work = tmp_path_factory.mktemp("seeds")
    stats = compose_baseline(sorted(BENIGN_DIR.glob("*.pcap")), work / "baseline.pcap", 3, DEFAULT_START, 1)
    cfg = VigilConfig()
    master = OfflineMaster(cfg.master)
    master.process(CaptureRecords(cfg, [work / "baseline.pcap"]))
    return master, stats.day_after(10.0), work


def replay(
    learned: tuple[OfflineMaster, float, Path], story: list[tuple[str, float]]
) -> tuple[list[alert_pb2.ModelBreach], list[alert_pb2.Incident]]:
    """The captures, each moved to start ``hours`` after 10:00 of the attack day, through a fork of the
    learned master; the breaches and the incidents they made."""
    base, day, work = learned
    master = base.fork()
    captures = []
    for name, hours in story:
        out = work / f"{Path(name).stem}-{hours:g}.pcap"
        shift_to(SCENARIOS / name, out, day + hours * 3600)
        captures.append(out)
    cfg = VigilConfig()
    breaches = master.process(CaptureRecords(cfg, captures)).breaches
    ids = {b.breach_id for b in breaches}
    return breaches, [i for i in master.incidents() if ids.intersection(i.breach_ids)]


def the_incident_of(
    device: str, breaches: list[alert_pb2.ModelBreach], found: list[alert_pb2.Incident]
) -> alert_pb2.Incident:
    """The one incident that holds every breach of ``device``."""
    mine = {b.breach_id for b in breaches if b.device.ip == device}
    holding = [i for i in found if mine.intersection(i.breach_ids)]
    assert len(holding) == 1, [(i.incident_id, [d.ip for d in i.devices]) for i in holding]
    assert mine <= set(holding[0].breach_ids)
    return holding[0]


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text!r}"
    return float(found.group(1))


def _observed(breaches: list[alert_pb2.ModelBreach], feature: str) -> float:
    return max(e.observed for b in breaches for e in b.evidence if e.feature == feature)


def test_the_rogue_raspberry_pi_reads_as_one_incident(learned: tuple[OfflineMaster, float, Path]) -> None:
    # The seed's afternoon, compressed: call home and upload, the internal scan half an hour later, the
    # internet scan four hours after that, the SMB password guessing half an hour later still.
    breaches, found = replay(
        learned,
        [
            ("external-pi-c2.pcap", 0.0),
            ("external-pi-upload.pcap", 0.1),
            ("internal-recon.pcap", 0.6),
            ("internal-external-scan.pcap", 4.5),
            ("internal-smb-brute.pcap", 5.0),
        ],
    )
    incident = the_incident_of(PI, breaches, found)
    assert [d.ip for d in incident.devices] == [PI]
    assert list(incident.phases) == [
        "initial access",
        "reconnaissance",
        "credential access",
        "command and control",
        "exfiltration",
    ]
    assert {"T1200", "T1046", "T1110", "T1071.001", "T1048"} <= set(incident.mitre_techniques)
    assert incident.score == 100
    text = incident.summary
    assert text.startswith(
        f"{PI} (new device, Raspberry Pi Trading Ltd) appeared at 10:00 and within a minute"
    )
    # The seed's story in its order, with the capture's numbers.
    steps = [
        "called home to 198.51.100.31 every 5.0 s",
        "downloading binary octet streams",
        "uploaded 7.5 MB to a rare external host (198.51.100.31)",
        "internal hosts",
        "with the fingerprints of a scanning tool (nmap)",
        "4 hours later scanned",
        "failed SMB logons with 2 user names (CORP\\alice, CORP\\Administrator)",
    ]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions), text
    # nmap swept 10.231.2.1-40; smbclient tried 15 wrong passwords for alice and 6 for Administrator.
    assert _number(r"contacted (\d+) internal hosts", text) == 40
    assert _number(r"made (\d+) failed SMB logons", text) == 21
    assert _number(r"scanned (\d+) external host:port targets", text) == _observed(
        breaches, "distinct_failed_external_targets"
    )
    # The timeline holds every breach in event time, each with its device, model, score and explanation.
    times = [e.time.ToNanoseconds() for e in incident.timeline]
    assert times == sorted(times) and len(incident.timeline) == len(incident.breach_ids)
    upload = next(
        e for e in incident.timeline if e.model == "Unusual Activity / Unusual External Data Transfer"
    )
    assert upload.device.ip == PI and upload.score >= 60 and "KiB" in upload.explanation
    assert upload.phase == "exfiltration"


def test_the_vishing_intrusion_reads_as_one_incident(learned: tuple[OfflineMaster, float, Path]) -> None:
    # The seed's order: LDAP reconnaissance, nmap, reverse DNS lookups, then failed logons to move on.
    breaches, found = replay(
        learned,
        [
            ("internal-ldap.pcap", 0.0),
            ("internal-recon.pcap", 0.2),
            ("internal-ptr-sweep.pcap", 0.4),
            ("internal-smb-brute.pcap", 0.6),
        ],
    )
    incident = the_incident_of(PI, breaches, found)
    assert [d.ip for d in incident.devices] == [PI]
    assert list(incident.phases) == ["initial access", "reconnaissance", "credential access"]
    assert {"T1087.002", "T1046", "T1018", "T1110"} <= set(incident.mitre_techniques)
    text = incident.summary
    steps = [
        "appeared at 10:00",
        # 16 ldapsearch binds and 12 subtree searches (the capture's truth).
        "made 16 LDAP binds and 12 LDAP searches, reading",
        "with the fingerprints of a scanning tool (nmap)",
        "reverse-DNS names of internal addresses",
        "made 21 failed SMB logons with 2 user names",
    ]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions), text
    assert _number(r"reading (\d+) directory entries", text) == _observed(
        breaches, "ldap_naming_context_entries"
    )
    assert _number(r"looked up (\d+) reverse-DNS names", text) == _observed(breaches, "distinct_ptr_queries")
    assert _number(r"contacted (\d+) internal hosts", text) >= 30


def test_offline_analysis_prints_incidents_after_breaches(
    learned: tuple[OfflineMaster, float, Path], tmp_path: Path
) -> None:
    """`vigil analyze --json --learn BASELINE CAPTURE`: breach lines, then one line per incident."""
    import io
    import json

    from vigil.cli.offline import analyze_captures

    _, day, work = learned
    capture = tmp_path / "pi-exfil.pcap"
    shift_to(SCENARIOS / "external-pi-upload.pcap", capture, day)
    out = io.StringIO()
    code = analyze_captures(VigilConfig(), [capture], True, out, learn=[work / "baseline.pcap"])
    assert code == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    kinds = [line.get("kind", "breach") for line in lines]
    assert kinds == sorted(kinds, key=lambda k: k == "incident") and "incident" in kinds
    incident = next(line for line in lines if line.get("kind") == "incident")
    assert incident["devices"][0]["ip"] == PI
    assert "uploaded 7.5 MB to a rare external host (198.51.100.31)" in incident["summary"]
    assert {"id": "TA0010", "name": "exfiltration"} in incident["tactics"]
    assert set(incident["breach_ids"]) <= {line["breach_id"] for line in lines if "kind" not in line}
    text = io.StringIO()
    analyze_captures(VigilConfig(), [capture], False, text, learn=[work / "baseline.pcap"])
    printed = text.getvalue()
    assert printed.index("incident inc-") > printed.index("Unusual External Data Transfer")
    assert "phases: initial access -> " in printed
