"""Golden: ftp.log rows against Zeek's baselines (the FTP brute force: 30 sessions of USER bro, PASS
refused with 530, QUIT; Zeek writes each as one "login-only session" row with its last command)."""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement, assert_no_parse_errors


def test_ftp_agrees_with_zeek(corpus: Path) -> None:
    result = assert_agreement(corpus, golden.spec(corpus, "ftp"), min_rows=30)
    assert result.our_rows == result.reference_rows == 30


def test_ftp_baselines_parse_cleanly(corpus: Path) -> None:
    assert_no_parse_errors(corpus, golden.spec(corpus, "ftp"))


def test_the_brute_force_shows_as_failed_logons(corpus: Path) -> None:
    """What the models read from the same capture: every session a refused logon as user "bro"."""
    spec = golden.spec(corpus, "ftp")
    (case,) = spec.cases
    records = golden.run(corpus / case.capture, None, case.verified_checksums).records
    rows = [r.ftp for r in records if r.WhichOneof("kind") == "ftp"]
    assert len(rows) == 30
    assert {(r.user, r.logon_success, r.failed_logons_count, r.password_seen) for r in rows} == {
        ("bro", False, 1, True)
    }
