"""Golden: conn.log of the real sensor against Zeek's own conn.log baselines (shared corpus).

Rows are matched by connection (uids are random), direction included, and compared on the columns
:mod:`tests.sensor.golden` names for conn.log, over every conn.log baseline of the corpus (trimmed ones
on the columns they have). Vigil's conn.log must have as many rows as Zeek's, within 1 %; the row
agreement is reported (tests/data/golden/DISAGREEMENTS.md lists each difference with its cause).
"""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement

COUNT_TOLERANCE = 0.01


def test_conn_log_agreement(corpus: Path) -> None:
    result = golden.compare(corpus, golden.spec(corpus, "conn"))
    listing = [f"[{d.kind}] {d.capture} {d.conn}: {d.detail}" for d in result.disagreements]
    print(f"conn: {result.agreeing}/{result.rows} rows agree; rows zeek={result.reference_rows} "
          f"ours={result.our_rows}", *listing, sep="\n  ")  # fmt: skip
    assert result.reference_rows > 0
    ratio = result.our_rows / result.reference_rows
    assert abs(ratio - 1) <= COUNT_TOLERANCE, f"conn.log rows ours/zeek = {ratio:.3f}"


def test_conn_rows_agree_with_zeek_strictly(corpus: Path) -> None:
    """Every column, direction included, at the spec's 98 % target (72/72 since connections closed by a
    FIN from each side end at the second FIN, as Zeek ends them)."""
    assert_agreement(corpus, golden.spec(corpus, "conn"), min_rows=70)
