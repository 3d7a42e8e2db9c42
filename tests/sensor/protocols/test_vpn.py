"""VPNs on any port: OpenVPN and WireGuard named in conn.log's service only once the server answered the
handshake. Checked against nDPI's own verdicts on its OpenVPN captures, and for silence on every other
capture of the corpus and the lab."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from sensor.analyzers import default_registry
from sensor.capture import PacketBlock
from sensor.pipeline import SensorPipeline
from sensor.protocols.openvpn import parser as openvpn
from tests.sensor import golden
from tests.sensor.packets import MAC_A, MAC_B, ether, ipv4, udp
from vigil.config import SensorConfig
from vigil.flow.v1 import flow_pb2

VPNS = ("openvpn", "wireguard")
# nDPI's flow lines: "  3  UDP 3.111.166.78:51146 <-> 85.134.13.165:1194 [proto: 159/OpenVPN]..."
NDPI_FLOW = re.compile(r"^\s+\d+\s+(TCP|UDP) (\S+) (<->|->) (\S+) \[proto: [\d.]+/([\w.]+)\]", re.M)
# Bidirectional OpenVPN flows nDPI finds that we do not name, and why.
NOT_NAMED = {
    # OpenVPN 2.6 tls-crypt-v2 (opcode V3) whose reset layout carries neither a visible ack nor the
    # plain tls-crypt packet id; the port (1194) still makes it a VPN for the master.
    "openvpn-tlscrypt.pcap": {"UDP ::1:1194"},
    # NordVPN's XOR-obfuscated OpenVPN: no handshake to see; nDPI names it by NordVPN's address list.
    "openvpn_obfuscated.pcapng": {"UDP 149.102.238.108:1214"},
}


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _ours(run: golden.Run) -> set[str]:
    named = set()
    for r in run.records:
        f = r.flow
        if r.WhichOneof("kind") == "flow" and any(v in f.service for v in VPNS):
            proto = "TCP" if f.transport == flow_pb2.TRANSPORT_TCP else "UDP"
            named.add(f"{proto} {ipaddress.ip_address(f.resp.ip)}:{f.resp.port}")
    return named


@pytest.mark.parametrize(
    "name",
    ["openvpn.pcap", "openvpn_nohmac.pcapng", "openvpn_nohmac_tcp.pcapng", "openvpn-tlscrypt.pcap",
     "openvpn_obfuscated.pcapng"],
)  # fmt: skip
def test_openvpn_flows_agree_with_ndpi(corpus: Path, name: str) -> None:
    capture = corpus / "ndpi" / name
    theirs = set()
    for proto, _client, arrow, b, label in NDPI_FLOW.findall((capture.parent / f"{name}.out").read_text()):
        if "VPN" in label and arrow == "<->":  # one-way flows: no answer, nothing to confirm
            host, port = _endpoint(b)
            theirs.add(f"{proto} {host}:{port}")
    ours = _ours(golden.run(capture))
    assert ours <= theirs, f"named but not OpenVPN to nDPI: {ours - theirs}"
    assert theirs - ours == NOT_NAMED.get(name, set())


def test_no_vpn_named_anywhere_else(corpus: Path) -> None:
    """Every other capture of the corpus and of the lab: real DNS, TLS, QUIC, SMB, scans, tunnels."""
    others = [
        p
        for p in sorted(corpus.rglob("*"))
        if p.suffix in (".pcap", ".pcapng", ".cap") and ".baseline" not in str(p) and "openvpn" not in p.name
    ]
    lab = Path(__file__).resolve().parents[2] / "data"
    others += [p for p in sorted(lab.rglob("*.pcap")) if "vpn" not in p.name]
    assert len(others) > 100
    named = {str(p): _ours(golden.run(p)) for p in others}
    assert {k: v for k, v in named.items() if v} == {}


def _wireguard(initiation_sender: bytes, response_receiver: bytes, port: int) -> list[str]:
    init = b"\x01\x00\x00\x00" + initiation_sender + bytes(140)
    resp = b"\x02\x00\x00\x00" + b"\x99\x99\x99\x99" + response_receiver + bytes(80)
    data = b"\x04" + bytes(47)
    out, back = ("10.0.0.5", "198.51.100.7"), ("198.51.100.7", "10.0.0.5")
    frames = [
        (1.0, ether(MAC_A, MAC_B, ipv4(*out, 17, udp(40000, port, init)))),
        (1.1, ether(MAC_B, MAC_A, ipv4(*back, 17, udp(port, 40000, resp)))),
        (1.2, ether(MAC_A, MAC_B, ipv4(*out, 17, udp(40000, port, data)))),
    ]
    pipe = SensorPipeline(SensorConfig(), default_registry(), seed=1)
    records = pipe.feed(PacketBlock.from_packets(frames)) + pipe.flush()
    return [s for r in records if r.WhichOneof("kind") == "flow" for s in r.flow.service]


def test_wireguard_is_named_when_the_response_answers_the_initiation() -> None:
    assert _wireguard(b"\x01\x02\x03\x04", b"\x01\x02\x03\x04", 443) == ["wireguard"]  # any port
    assert _wireguard(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", 443) == []  # someone else's answer


def test_openvpn_resets() -> None:
    sid = bytes.fromhex("1122334455667788")
    client = bytes([7 << 3]) + sid + b"\x00" + b"\x00\x00\x00\x00"  # plain: no ack, message packet id 0
    assert openvpn.client_session_id(client) == sid
    assert openvpn.looks_like_client_reset(client)
    assert openvpn.looks_like_client_reset(len(client).to_bytes(2, "big") + client)  # TCP framing
    server_own = bytes.fromhex("aabbccddeeff0011")
    ack = b"\x01" + b"\x00\x00\x00\x00" + sid  # one acked packet id, then the client's session id
    assert openvpn.acknowledges(bytes([8 << 3]) + server_own + ack + b"\x00\x00\x00\x00", client)
    assert not openvpn.acknowledges(bytes([8 << 3 | 1]) + server_own + ack + b"\x00\x00\x00\x00", client)
    assert not openvpn.acknowledges(bytes([8 << 3]) + server_own + b"\x00" * 17, client)

    # tls-crypt: the ack is encrypted, but both resets are packet id 1 within a few minutes.
    def crypt(opcode: int, session: bytes, clock: int) -> bytes:
        return bytes([opcode << 3]) + session + b"\x00\x00\x00\x01" + clock.to_bytes(4, "big") + bytes(32)

    crypt_c = crypt(7, sid, 1_700_000_000)
    assert openvpn.acknowledges(crypt(8, server_own, 1_700_000_003), crypt_c)
    assert not openvpn.acknowledges(crypt(8, server_own, 1_700_009_000), crypt_c)  # clocks hours apart
    assert not openvpn.looks_like_client_reset(b"\x16\x03\x01\x02\x00\x01" + bytes(40))  # a TLS hello
