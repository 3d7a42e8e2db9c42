"""SMB golden tests: smb_mapping.log rows against Zeek's baselines, negotiated dialects against tshark."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement

SMB_DIALECT_TARGET = 0.98


def test_smb_mapping_agrees_with_zeek(corpus: Path) -> None:
    assert_agreement(corpus, golden.spec(corpus, "smb_mapping"))


def test_smb_files_agrees_with_zeek(corpus: Path) -> None:
    assert_agreement(corpus, golden.spec(corpus, "smb_files"))


@pytest.mark.skipif(not golden.have_tshark(), reason="tshark is the reference for SMB dialects")
def test_smb_dialects_agree_with_tshark(corpus: Path) -> None:
    result = golden.compare_dialects(corpus)
    listing = [f"{d.capture}: {d.detail}" for d in result.disagreements]
    print(f"smb dialects: {result.agreeing}/{result.rows} agree", *listing, sep="\n  ")
    assert result.rows > 0
    assert result.agreement >= SMB_DIALECT_TARGET, "\n".join(listing)


def test_smbv1_is_recognised(corpus: Path) -> None:
    records = golden.run(corpus / "ndpi/smbv1.pcap").records
    negotiations = [r.smb_negotiate for r in records if r.WhichOneof("kind") == "smb_negotiate"]
    counts = [r.smb_command_counts for r in records if r.WhichOneof("kind") == "smb_command_counts"]
    assert any(n.smb1_offered for n in negotiations) or any(c.version == 1 for c in counts)
