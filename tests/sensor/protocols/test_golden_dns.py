"""Golden: dns.log rows of the real sensor against Zeek's own btest baselines for the same captures."""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement, assert_no_parse_errors


def test_dns_agrees_with_zeek(corpus: Path) -> None:
    spec = golden.spec(corpus, "dns")
    assert_agreement(corpus, spec, min_rows=7)
    assert_no_parse_errors(corpus, spec)
