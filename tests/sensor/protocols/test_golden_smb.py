"""SMB golden tests: smb_mapping.log rows against Zeek's baselines, negotiated dialects against tshark."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sensor.protocols.smb import parser
from tests.sensor.protocols._pcap_replay import have_tshark
from tests.sensor.protocols.test_golden_common import agreement, run

P = "scripts.base.protocols.smb"
MAPPING_CASES = [
    ("zeek/smb/smb2.pcap", f"zeek/smb/smb2.pcap.baseline/{P}.smb2/smb_mapping.log"),
    ("zeek/smb/smb3.pcap", f"zeek/smb/smb3.pcap.baseline/{P}.smb3/smb_mapping.log"),
]
DIALECT_CAPTURES = [
    "zeek/smb/smb2.pcap", "zeek/smb/smb3.pcap", "zeek/smb/smb311.pcap", "zeek/smb/smb1.pcap",
    "zeek/smb/smb3_negotiate_context.pcap", "zeek/smb/SMBGhost.pcap", "zeek/smb/cifs_negotiate_lanman.pcap",
    "zeek/smb/raw_ntlm_in_smb.pcap", "zeek/smb/smb_v2_only_non_zero_reserved1.pcap",
    "suricata-verify/smb1-02/smb1_osx.pcap", "suricata-verify/smb-eicar-file/input.pcap", "ndpi/smbv1.pcap",
    "suricata-verify/smb2-ntlmssp-negotiateflags/input.pcap",
]  # fmt: skip

pytestmark = pytest.mark.skipif(not have_tshark(), reason="tshark is needed to replay captures")


def test_smb_mapping_agrees_with_zeek(corpus: Path) -> None:
    total, agree, problems = agreement(corpus, "smb_mapping", MAPPING_CASES)
    print(f"smb_mapping: {agree}/{total} rows agree", *problems, sep="\n  ")
    assert total > 0
    assert agree / total >= 0.5, "\n".join(problems)


def _tshark_dialects(pcap: Path) -> list[str]:
    """Negotiated dialects per tshark: SMB2 DialectRevision of negotiate responses, SMB1 chosen strings."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-o", "tcp.check_checksum:FALSE", "-T", "fields",
         "-Y", "smb2.cmd == 0 && smb2.flags.response == 1 && smb2.nt_status == 0", "-e", "smb2.dialect"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    names = [parser.dialect_name(int(v, 16)) for v in out.split() if v]
    # SMB1: the response names an index into the dialect list of the request on the same stream.
    out1 = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-T", "fields", "-Y", "smb.cmd == 0x72", "-e", "tcp.stream",
         "-e", "smb.flags.response", "-e", "smb.dialect", "-e", "smb.dialect.index"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    offered: dict[str, list[str]] = {}
    for line in out1.splitlines():
        stream, response, dialects, index = [*line.split("\t"), "", "", "", ""][:4]
        if response in {"0", "False"}:
            offered[stream] = dialects.split(",")
        elif index and stream in offered and int(index) < len(offered[stream]):
            names.append(offered[stream][int(index)])
        elif index:
            # tshark did not decode this stream's request (capture starts mid-stream): unknown name.
            names.append("?")
    return sorted(names)


def test_smb_dialects_agree_with_tshark(corpus: Path) -> None:
    total = agree = 0
    problems: list[str] = []
    for name in DIALECT_CAPTURES:
        pcap = corpus / name
        if not pcap.exists():
            continue
        ours = sorted(
            rec.smb_negotiate.negotiated_dialect
            for rec in run(pcap).records
            if rec.WhichOneof("kind") == "smb_negotiate" and rec.smb_negotiate.negotiated_dialect
        )
        theirs = _tshark_dialects(pcap)
        total += max(len(ours), len(theirs))
        common = sum(min(ours.count(d), theirs.count(d)) for d in set(ours))
        common += min(theirs.count("?"), len(ours) - common)
        agree += common
        if common < max(len(ours), len(theirs)):
            problems.append(f"{name}: ours={ours} tshark={theirs}")
    print(f"smb dialects: {agree}/{total} agree", *problems, sep="\n  ")
    assert total > 0
    assert agree / total >= 0.98, "\n".join(problems)


def test_smbv1_is_recognised(corpus: Path) -> None:
    records = run(corpus / "ndpi/smbv1.pcap").records
    negotiations = [r.smb_negotiate for r in records if r.WhichOneof("kind") == "smb_negotiate"]
    counts = [r.smb_command_counts for r in records if r.WhichOneof("kind") == "smb_command_counts"]
    assert any(n.smb1_offered for n in negotiations) or any(c.version == 1 for c in counts)
