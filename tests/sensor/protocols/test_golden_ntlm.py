"""Golden: ntlm.log rows from LDAP and DCE-RPC carriers against Zeek's baselines."""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement


def test_ntlm_agrees_with_zeek(corpus: Path) -> None:
    assert_agreement(corpus, golden.spec(corpus, "ntlm"))
