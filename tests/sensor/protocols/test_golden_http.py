"""Golden: http.log rows against Zeek's btest baselines (http/methods.pcap; the DVWA capture whose btest
loads the SQL-injection policy script, so its rows carry the HTTP::URI_SQLI tag)."""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement


def test_http_agrees_with_zeek(corpus: Path) -> None:
    result = assert_agreement(corpus, golden.spec(corpus, "http"), min_rows=52)
    assert (result.agreeing, result.rows) == (52, 52)
