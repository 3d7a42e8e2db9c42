"""C2 framework fingerprints: two independent marks, or one that no real site shows."""

from __future__ import annotations

from master.signatures import STAGER_MIN_BYTES, http_c2_fingerprint, tls_c2_fingerprint

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
