"""Shared assertions of the per-protocol golden tests (no tests of its own).

Every golden test runs its captures through the real sensor (SensorPipeline with default_registry())
and the row mapping of ``vigil sensor read --format zeek-json``; what is compared with which Zeek
baseline, and why, is written once in :mod:`tests.sensor.golden` (the report reads the same table).
"""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden, golden_report


def assert_agreement(corpus: Path, spec: golden.LogSpec, min_rows: int = 1) -> golden.Result:
    """Compare one log with Zeek; fail below the spec's target, listing every disagreement."""
    result = golden.compare(corpus, spec)
    listing = [f"{d.capture} {d.conn}: {d.detail}" for d in result.disagreements]
    print(f"{spec.log}: {result.agreeing}/{result.rows} rows agree", *listing, sep="\n  ")
    assert result.rows >= min_rows, f"expected at least {min_rows} {spec.log} rows in the Zeek baselines"
    if spec.target is not None:
        # Rows whose written cause is "reference-incomplete" (Zeek leaves unset what the packets carry
        # and we report) count as agreeing for the gate only; they stay listed and in the raw figure.
        gaps = golden_report.reference_gaps(result, golden_report.load_causes())
        assert (result.agreeing + gaps) / result.rows >= spec.target, "\n".join(listing)
    return result


def assert_no_parse_errors(corpus: Path, spec: golden.LogSpec) -> None:
    """The analyzers counted no malformed input on captures Zeek parsed cleanly."""
    for case in spec.cases:
        errors = golden.run(corpus / case.capture, case.dhcp_limits).parse_errors
        assert errors == {}, f"{case.capture}: {errors}"
