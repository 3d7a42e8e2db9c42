"""Kerberos golden test: kerberos.log rows (KDC exchanges and GSS-API "AP" rows) against Zeek's baselines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sensor.protocols._pcap_replay import have_tshark
from tests.sensor.protocols.test_golden_common import agreement

P = "scripts.base.protocols"
CASES = [
    ("zeek/krb/kinit.pcap", f"zeek/krb/kinit.pcap.baseline/{P}.krb.kinit/kerberos.log"),
    ("zeek/krb/auth.pcap", f"zeek/krb/auth.pcap.baseline/{P}.krb.tgs/kerberos.log"),
    ("zeek/krb/kerberos_tso.pcapng",
     f"zeek/krb/kerberos_tso.pcapng.baseline/{P}.tcp.krb-tcp-tso/kerberos.log"),
    ("zeek/krb/smb_gssapi.pcap", f"zeek/krb/smb_gssapi.pcap.baseline/{P}.krb.smb_gssapi/kerberos.log"),
    ("zeek/dce-rpc/kerberos445_auth.pcapng",
     f"zeek/dce-rpc/kerberos445_auth.pcapng.baseline/{P}.dce-rpc.spnego-gssapi-kerberos/kerberos.log.445"),
    ("zeek/ldap/aduser1.pcap", f"zeek/ldap/aduser1.pcap.baseline/{P}.ldap.aduser1/krb.kerberos.log"),
]  # fmt: skip

pytestmark = pytest.mark.skipif(not have_tshark(), reason="tshark is needed to replay captures")


def test_kerberos_agrees_with_zeek(corpus: Path) -> None:
    total, agree, problems = agreement(corpus, "kerberos", CASES, frozenset({"zeek/ldap/aduser1.pcap"}))
    print(f"kerberos: {agree}/{total} rows agree", *problems, sep="\n  ")
    assert total > 0
    assert agree / total >= 0.98, "\n".join(problems)
