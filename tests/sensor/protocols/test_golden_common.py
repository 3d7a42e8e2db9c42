"""Shared assertions of the per-protocol golden tests (no tests of its own).

Every golden test runs its captures through the real sensor (SensorPipeline with default_registry())
and the row mapping of ``vigil sensor read --format zeek-json``; what is compared with which Zeek
baseline, and why, is written once in :mod:`tests.sensor.golden` (the report reads the same table).
"""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden, golden_report


def assert_agreement(
    corpus: Path, spec: golden.LogSpec, min_rows: int = 1, floor: float | None = None
) -> golden.Result:
    """Compare one log with Zeek (strictly: direction, set versus unset, every baseline); fail below the
    spec's target, listing every disagreement.

    ``floor``: for a log still below its target, the agreement reached so far, which must not drop; then
    every disagreement must also have a written cause (tests/data/golden/causes.yaml), so none is new.
    """
    result = golden.compare(corpus, spec)
    listing = [f"[{d.kind}] {d.capture} {d.conn}: {d.detail}" for d in result.disagreements]
    print(f"{spec.log}: {result.agreeing}/{result.rows} rows agree", *listing, sep="\n  ")
    assert result.rows >= min_rows, f"expected at least {min_rows} {spec.log} rows in the Zeek baselines"
    causes = golden_report.load_causes()
    # Rows whose written cause is "reference-incomplete" (proved by the frames it cites) count as
    # agreeing for the gate only; they stay listed and in the raw figure.
    gaps = golden_report.reference_gaps(result, causes)
    reached = (result.agreeing + gaps) / result.rows
    if floor is not None:
        unexplained = [d for d in result.disagreements if golden_report.cause_of(d, causes) is None]
        assert not unexplained, "disagreements without a written cause:\n" + "\n".join(map(str, unexplained))
        assert reached >= floor, "\n".join(listing)
    elif spec.target is not None:
        assert reached >= spec.target, "\n".join(listing)
    return result


def assert_no_parse_errors(corpus: Path, spec: golden.LogSpec) -> None:
    """The analyzers counted no malformed input on captures Zeek parsed cleanly."""
    for case in spec.cases:
        errors = golden.run(corpus / case.capture, case.dhcp_limits, case.verified_checksums).parse_errors
        assert errors == {}, f"{case.capture}: {errors}"
