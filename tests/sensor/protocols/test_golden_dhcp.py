"""Golden: dhcp.log rows (one per exchange, across connections) against Zeek's btest baselines.

Zeek's btests for the flood capture redefine its per-row limits; the cases carry the same knobs.
"""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement, assert_no_parse_errors


def test_dhcp_agrees_with_zeek(corpus: Path) -> None:
    spec = golden.spec(corpus, "dhcp")
    assert_agreement(corpus, spec, min_rows=100)
    assert_no_parse_errors(corpus, spec)
