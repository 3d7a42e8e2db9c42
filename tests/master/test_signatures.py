"""C2 framework fingerprints: two independent marks, or one that no real site shows."""

from __future__ import annotations

import pytest

from master.signatures import (
    STAGER_MIN_BYTES,
    http_c2_fingerprint,
    is_metasploit_certificate,
    tls_c2_fingerprint,
)
from tests.conftest import CORPUS
from tests.sensor.records import capture_records

IE11_WIN7 = "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko"
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0"


def test_a_profile_path_needs_the_frameworks_user_agent() -> None:
    empire = http_c2_fingerprint("GET", "/news.php", IE11_WIN7, 0, False)
    assert empire is not None and empire.framework == "Empire" and not empire.conclusive
    # A news site's /news.php fetched by a browser is not Empire.
    assert http_c2_fingerprint("GET", "/news.php", CHROME, 0, False) is None
    assert http_c2_fingerprint("GET", "/pixel.gif", CHROME, 0, False) is None
    msie = "Mozilla/5.0 (compatible; MSIE 9.0; Windows NT 6.1; Trident/5.0)"
    cobalt = http_c2_fingerprint("GET", "/pixel.gif", msie, 0, False)
    assert cobalt is not None and cobalt.framework == "Cobalt Strike"
    assert http_c2_fingerprint("POST", "/submit.php?id=123456", msie, 0, False) is not None
    assert http_c2_fingerprint("POST", "/submit.php?id=abc", msie, 0, False) is None


def test_a_stager_needs_its_checksum_and_its_size() -> None:
    # "/3kDz": 51 + 107 + 68 + 122 = 348 = 92 (mod 256), the x86 stager sum.
    stager = http_c2_fingerprint("GET", "/3kDz", CHROME, 211_000, True)
    assert stager is not None and stager.conclusive and "x86" in stager.evidence
    assert http_c2_fingerprint("GET", "/3kDz", CHROME, STAGER_MIN_BYTES - 1, True) is None
    # Same length, other sum (349 = 93 would be x64; 350 is neither).
    assert http_c2_fingerprint("GET", "/3kD{", CHROME, 211_000, True) is None
    assert http_c2_fingerprint("GET", "/3kE0", CHROME, 211_000, True) is None  # 51+107+69+48 = 275 = 19


def test_default_certificates() -> None:
    found = tls_c2_fingerprint("CN=AsyncRAT Server", "CN=AsyncRAT Server")
    assert found is not None and found.framework == "AsyncRAT" and found.conclusive
    empty = "CN=,OU=,O=,L=,ST=,C="
    cobalt = tls_c2_fingerprint(empty, empty)
    assert cobalt is not None and cobalt.framework == "Cobalt Strike"
    assert tls_c2_fingerprint("CN=www.example.com", "CN=R3,O=Let's Encrypt,C=US") is None
    assert tls_c2_fingerprint("", "") is None


# The handler certificate of the Meterpreter session in OTRF's metasploit_logonpasswords capture
# (tshark -d tcp.port==8080,tls: subject and issuer alike).
MSF_CERT = (
    "emailAddress=quantify@prosacco.sons.com,CN=prosacco.sons.com,OU=quantify,O=Prosacco and Sons,ST=MA,C=US"
)


def test_metasploits_generated_certificate_is_known_by_how_its_names_agree() -> None:
    found = tls_c2_fingerprint(MSF_CERT, MSF_CERT)
    assert found is not None and found.framework == "Metasploit" and found.conclusive
    # An organisation with a comma (escaped in RFC 4514) and "and" inside a word ("Brandt" -> "brt").
    org = "emailAddress=back.end@schmidt.brt.bergstrom.biz,CN=schmidt.brt.bergstrom.biz,OU=back.end,"
    comma = org + "O=Schmidt\\, Brandt and Bergstrom,ST=NY,C=US"
    assert is_metasploit_certificate(comma, comma)
    # Any one disagreement and it is some other self-signed certificate.
    for other in (
        MSF_CERT.replace("emailAddress=quantify@", "emailAddress=admin@"),
        MSF_CERT.replace("CN=prosacco.sons.com", "CN=www.prosacco.com"),
        MSF_CERT.replace("C=US", "C=DE"),
        MSF_CERT.replace("ST=MA", "ST=Massachusetts"),
    ):
        assert not is_metasploit_certificate(other, other), other
    assert not is_metasploit_certificate(MSF_CERT, "CN=R3,O=Let's Encrypt,C=US")


def test_no_certificate_in_the_corpora_is_taken_for_metasploits_but_its_own() -> None:
    """Every server certificate the sensor reads in the reference and wild corpora (42 distinct: real
    sites, appliances and C2 servers): only the Meterpreter capture's matches."""
    captures = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".pcap", ".pcapng", ".cap"))
    if not captures:
        pytest.skip("corpus not found")
    subjects: set[tuple[str, str]] = set()
    for path in captures:
        records, _ = capture_records(path)
        subjects |= {
            (r.tls.subject, r.tls.issuer) for r in records if r.WhichOneof("kind") == "tls" and r.tls.subject
        }
    assert len(subjects) >= 40
    assert [s for s, i in subjects if is_metasploit_certificate(s, i)] == [MSF_CERT]
