"""Golden: websocket.log rows (the opening handshake of each WebSocket) against Zeek's baselines: the
wstunnel captures, TLS and SSH tunnelled through WebSocket frames."""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement, assert_no_parse_errors


def test_websocket_log_agrees_with_zeek(corpus: Path) -> None:
    spec = golden.spec(corpus, "websocket")
    # wstunnel-https (1 row) and the four btests that ran on wstunnel-ssh (2 rows each; they differ in
    # how Zeek was told to analyze the frames, not in the handshake it logged).
    result = assert_agreement(corpus, spec, min_rows=9)
    assert (result.agreeing, result.rows) == (9, 9)
    assert_no_parse_errors(corpus, spec)
