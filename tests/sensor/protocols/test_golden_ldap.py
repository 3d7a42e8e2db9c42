"""Golden: ldap.log / ldap_search.log rows against Zeek's baselines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement


@pytest.mark.parametrize("log", ["ldap", "ldap_search"])
def test_ldap_agrees_with_zeek(corpus: Path, log: str) -> None:
    assert_agreement(corpus, golden.spec(corpus, log))
