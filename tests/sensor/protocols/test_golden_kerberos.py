"""Golden: kerberos.log rows (KDC exchanges and GSS-API "AP" rows) against Zeek's baselines."""

from __future__ import annotations

from pathlib import Path

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement


def test_kerberos_agrees_with_zeek(corpus: Path) -> None:
    # Two rows Zeek's aduser1 baseline leaves out are proved reference gaps (causes.yaml); every other row
    # agrees, the ticket hashes of the ticket-logging btest (auth.pcap) included.
    result = assert_agreement(corpus, golden.spec(corpus, "kerberos"))
    assert [d.capture for d in result.disagreements] == ["zeek/ldap/aduser1.pcap"] * 2
