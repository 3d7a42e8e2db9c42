"""LDAP golden test: our ldap.log / ldap_search.log rows against Zeek's baselines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sensor.protocols._pcap_replay import have_tshark
from tests.sensor.protocols.test_golden_common import agreement

B = "scripts.base.protocols.ldap"
LDAP_CASES = [
    ("zeek/ldap/sasl-ntlm.pcap", f"zeek/ldap/sasl-ntlm.pcap.baseline/{B}.sasl-ntlm/ldap.log"),
    ("zeek/ldap/aduser1.pcap", f"zeek/ldap/aduser1.pcap.baseline/{B}.aduser1/krb.ldap.log"),
    ("zeek/ldap/aduser1-ntlm.pcap", f"zeek/ldap/aduser1-ntlm.pcap.baseline/{B}.aduser1/ntlm.ldap.log"),
    ("zeek/ldap/ctu-sme-11-win7ad-1-ldap-tcp-50041.pcap",
     f"zeek/ldap/ctu-sme-11-win7ad-1-ldap-tcp-50041.pcap.baseline/{B}.spnego-ntlmssp/ldap.log"),
    ("zeek/ldap/krb5-sign-seal-01.pcap",
     f"zeek/ldap/krb5-sign-seal-01.pcap.baseline/{B}.sasl-encrypted/ldap.log"),
    ("zeek/ldap/ldap-add.pcap", f"zeek/ldap/ldap-add.pcap.baseline/{B}.add/ldap.log"),
    ("zeek/ldap/ldap-starttls.pcap", f"zeek/ldap/ldap-starttls.pcap.baseline/{B}.starttls/ldap.log"),
    ("zeek/ldap/ldap-who-am-i.pcap", f"zeek/ldap/ldap-who-am-i.pcap.baseline/{B}.who-am-i/ldap.log"),
    ("zeek/ldap/ldap_invalid_credentials.pcap",
     f"zeek/ldap/ldap_invalid_credentials.pcap.baseline/{B}.invalid_credentials/ldap.log"),
    ("zeek/ldap/missing_krbtgt_ldap_request.pcapng",
     f"zeek/ldap/missing_krbtgt_ldap_request.pcapng.baseline/{B}.sasl-signed-clear-2/ldap.log"),
    ("zeek/ldap/missing_ldap_logs.pcapng",
     f"zeek/ldap/missing_ldap_logs.pcapng.baseline/{B}.sasl-signed-clear/ldap.log"),
    ("zeek/ldap/modify-request.pcapng",
     f"zeek/ldap/modify-request.pcapng.baseline/{B}.modify-request/ldap.log"),
    ("zeek/ldap/simpleauth.pcap", f"zeek/ldap/simpleauth.pcap.baseline/{B}.basic/ldap.log"),
]  # fmt: skip
SEARCH_CASES = [
    ("zeek/ldap/sasl-ntlm.pcap", f"zeek/ldap/sasl-ntlm.pcap.baseline/{B}.sasl-ntlm/ldap_search.log"),
    ("zeek/ldap/aduser1.pcap", f"zeek/ldap/aduser1.pcap.baseline/{B}.aduser1/krb.ldap_search.log"),
    ("zeek/ldap/aduser1-ntlm.pcap", f"zeek/ldap/aduser1-ntlm.pcap.baseline/{B}.aduser1/ntlm.ldap_search.log"),
    ("zeek/ldap/krb5-sign-seal-01.pcap",
     f"zeek/ldap/krb5-sign-seal-01.pcap.baseline/{B}.sasl-encrypted/ldap_search.log"),
    ("zeek/ldap/issue-32.pcapng",
     f"zeek/ldap/issue-32.pcapng.baseline/{B}.search_filter_extended/ldap_search.log"),
    ("zeek/ldap/ldap_escaping_test.pcapng",
     f"zeek/ldap/ldap_escaping_test.pcapng.baseline/{B}.filter_escaping/ldap_search.log.1"),
    ("zeek/ldap/ldap_star_single.pcapng",
     f"zeek/ldap/ldap_star_single.pcapng.baseline/{B}.ldap_substring_search/ldap_search.log"),
    ("zeek/ldap/missing_krbtgt_ldap_request.pcapng",
     f"zeek/ldap/missing_krbtgt_ldap_request.pcapng.baseline/{B}.sasl-signed-clear-2/ldap_search.log"),
    ("zeek/ldap/missing_ldap_logs.pcapng",
     f"zeek/ldap/missing_ldap_logs.pcapng.baseline/{B}.sasl-signed-clear/ldap_search.log"),
    # The "attributes" variant logs the requested attributes, which we always record.
    ("zeek/ldap/simpleauth.pcap", f"zeek/ldap/simpleauth.pcap.baseline/{B}.attributes/ldap_search.log"),
]  # fmt: skip

pytestmark = pytest.mark.skipif(not have_tshark(), reason="tshark is needed to replay captures")


@pytest.mark.parametrize(("log", "cases"), [("ldap", LDAP_CASES), ("ldap_search", SEARCH_CASES)])
def test_ldap_agrees_with_zeek(corpus: Path, log: str, cases: list[tuple[str, str]]) -> None:
    total, agree, problems = agreement(corpus, log, cases)
    print(f"{log}: {agree}/{total} rows agree", *problems, sep="\n  ")
    assert total > 0
    assert agree / total >= 0.98, "\n".join(problems)
