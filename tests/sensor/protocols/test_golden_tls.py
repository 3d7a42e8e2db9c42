"""Golden for TLS. The corpus's Zeek ssl.log baselines are TLS after LDAP StartTLS, TLS inside QUIC and
TLS inside WebSocket (the last trimmed of its connection id).
Plain TLS-over-TCP has no Zeek baseline, so JA3, JA3S and SNI are also checked against tshark's own
independent dissection of other captures (and of the QUIC one)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.sensor import golden
from tests.sensor.protocols.test_golden_common import assert_agreement

CAPTURES = (
    "zeek/tls/chrome-34-google.pcap",
    "zeek/tls/ecdhe.pcap",
    "ndpi/tor.pcap",
    "ndpi/malware.pcap",
    "suricata-verify/bug-5713-01/TLSv1-Extracted-MaliciousC2.pcap",
    "zeek/quic/merlinc2_Zeek_example.pcapng",
)


def _tshark(pcap: Path, display_filter: str, fields: list[str]) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(pcap), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, check=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def test_tls_fingerprints_agree_with_tshark(corpus: Path) -> None:
    if not golden.have_tshark():
        pytest.skip("tshark is needed for this comparison")
    checked = 0
    for name in CAPTURES:
        pcap = corpus / name
        result = golden.run(pcap)
        assert not [e for e in result.parse_errors if e[0] == "ssl"], f"{name}: {result.parse_errors}"
        ours = [r.tls for r in result.records if r.WhichOneof("kind") == "tls"]
        hellos = _tshark(
            pcap,
            "tls.handshake.type == 1",
            ["tls.handshake.ja3", "tls.handshake.ja3_full", "tls.handshake.extensions_server_name"],
        )
        assert sorted((h[0], h[1], h[2]) for h in hellos) == sorted((r.ja3, r.ja3_string, r.server_name)
                                                                   for r in ours if r.ja3), name  # fmt: skip
        servers = _tshark(pcap, "tls.handshake.type == 2", ["tls.handshake.ja3s"])
        assert sorted(s[0] for s in servers) == sorted(r.ja3s for r in ours if r.ja3s), name
        checked += len(hellos)
    assert checked >= 10


def test_ssl_log_of_ldap_starttls_quic_and_websocket_agrees_with_zeek(corpus: Path) -> None:
    """Every column Zeek logs, ssl_history included: "CsiI" on the LDAP connection that switched to
    TLS and on the TLS 1.3 session inside WebSocket frames (wstunnel), "Cs" on the QUIC one (only the
    Initial packets' hellos are readable there)."""
    result = assert_agreement(corpus, golden.spec(corpus, "ssl"), min_rows=3)
    assert (result.agreeing, result.rows) == (3, 3)
    # Each as its btest ran Zeek: with checksums verified (-r) or not (-C).
    for capture, verified, service in (
        ("zeek/ldap/ldap-starttls.pcap", True, ["ldap", "ssl"]),
        ("zeek/quic/merlinc2_Zeek_example.pcapng", False, ["quic", "ssl"]),  # Zeek's conn.log: "quic,ssl"
        # Zeek's conn.log: "http,ssl,websocket"
        ("zeek/websocket/wstunnel-https.pcap", True, ["http", "websocket", "ssl"]),
    ):
        run = golden.run(corpus / capture, verified_checksums=verified)
        assert run.parse_errors == {}
        assert [r.flow.service for r in run.records if r.WhichOneof("kind") == "flow"] == [service]
