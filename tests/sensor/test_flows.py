"""Flow table semantics against Zeek's conn.log rules, on captures built byte by byte."""

from __future__ import annotations

import ipaddress
import random

import pytest
from prometheus_client import CollectorRegistry

from sensor.capture import PacketBlock
from sensor.pipeline import SensorPipeline
from tests.sensor.packets import MAC_A, MAC_B, TcpConv, ether, icmp, ipv4, ipv6, udp
from vigil.config import SensorConfig
from vigil.flow.v1 import flow_pb2


def run(
    frames: list[tuple[float, bytes]], config: SensorConfig | None = None, blocks: int = 1
) -> list[flow_pb2.Flow]:
    pipe = SensorPipeline(config or SensorConfig(), metrics_registry=CollectorRegistry(), seed=1)
    records = []
    step = max(1, -(-len(frames) // blocks))
    for i in range(0, len(frames), step):
        records += pipe.feed(PacketBlock.from_packets(frames[i : i + step]))
    records += pipe.flush()
    return [r.flow for r in records if r.WhichOneof("kind") == "flow"]


def state(flow: flow_pb2.Flow) -> str:
    return flow_pb2.ConnState.Name(flow.conn_state).removeprefix("CONN_STATE_")


def ip(flow_ep: flow_pb2.Endpoint) -> str:
    return str(ipaddress.ip_address(flow_ep.ip))


@pytest.mark.parametrize("blocks", [1, 3, 11])
def test_tcp_handshake_data_fin_is_sf(blocks: int) -> None:
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"GET / HTTP/1.0\r\n\r\n")
    c.pkt(False, "A")
    c.pkt(False, "PA", b"HTTP/1.0 200 OK\r\n\r\nhello")
    c.pkt(True, "A")
    c.close()
    (f,) = run(c.frames, blocks=blocks)
    assert state(f) == "SF"
    assert f.history == "ShADadFf"
    assert (f.orig_bytes, f.resp_bytes) == (18, 24)
    assert (f.orig_pkts, f.resp_pkts) == (6, 4)
    assert ip(f.orig) == "10.0.0.1" and f.orig.port == 40000 and f.resp.port == 80
    assert f.orig.mac == MAC_A and f.resp.mac == MAC_B
    assert f.missed_bytes == 0
    assert not f.direction_guessed and not f.partial
    assert f.uid.startswith("C") and len(f.uid) == 18
    assert f.community_id.startswith("1:")
    # ip_bytes count IP length, not the Ethernet padding of short frames.
    assert f.orig_ip_bytes == 6 * 40 + 18


def test_syn_only_is_s0() -> None:
    c = TcpConv()
    c.pkt(True, "S")
    (f,) = run(c.frames)
    assert (state(f), f.history) == ("S0", "S")
    assert f.orig_bytes == 0 and f.resp_pkts == 0


def test_syn_rst_is_rej() -> None:
    c = TcpConv()
    c.pkt(True, "S")
    c.pkt(False, "RA", seq=0)
    (f,) = run(c.frames)
    assert (state(f), f.history) == ("REJ", "Sr")


def test_midstream_is_oth_with_guessed_direction() -> None:
    c = TcpConv(sport=443)
    # The first packet seen comes from the server port: Zeek flips so the server is the responder.
    c.pkt(False, "PA", b"x" * 100)
    c.pkt(True, "PA", b"y" * 50)
    c.pkt(False, "A")
    (f,) = run(c.frames)
    assert state(f) == "OTH"
    assert f.direction_guessed
    assert f.resp.port == 443 and f.orig.port == 40000
    assert f.history == "^dDa"
    assert (f.orig_bytes, f.resp_bytes) == (50, 100)


def test_established_not_closed_is_s1_and_rst_variants() -> None:
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"abc")
    (f,) = run(c.frames)
    assert (state(f), f.history) == ("S1", "ShAD")
    c.pkt(False, "R")
    (f,) = run(c.frames)
    assert state(f) == "RSTR"
    c2 = TcpConv()
    c2.handshake()
    c2.pkt(True, "R")
    (f,) = run(c2.frames)
    assert state(f) == "RSTO"


def test_missed_bytes_from_acked_gap() -> None:
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"a" * 100)
    c.cseq += 200  # 200 bytes sent but not captured
    c.pkt(True, "PA", b"b" * 100)
    c.pkt(False, "A")  # acks all 400
    c.close()
    (f,) = run(c.frames)
    assert f.orig_bytes == 400
    assert f.missed_bytes == 200


def test_retransmission_history_letter() -> None:
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"a" * 10)
    c.pkt(True, "PA", b"a" * 10, seq=c.cseq - 10)
    c.pkt(False, "A")
    c.close()
    (f,) = run(c.frames)
    assert f.history == "ShADTaFf"
    assert f.orig_bytes == 10


@pytest.mark.parametrize("blocks", [1, 4, 19])
def test_retransmissions_are_logged_on_a_log_scale(blocks: int) -> None:
    """Zeek's scaled history entry: 'T' at a direction's 1st, 10th, 100th, ... retransmission, counted
    across blocks."""
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"a" * 10)
    for _ in range(12):
        c.pkt(True, "PA", b"a" * 10, seq=c.cseq - 10)
    c.pkt(False, "A")
    c.close()
    (f,) = run(c.frames, blocks=blocks)
    assert f.history == "ShADTTaFf"
    assert f.orig_bytes == 10


@pytest.mark.parametrize("blocks", [1, 4, 19])
def test_zero_windows_are_logged_on_a_log_scale(blocks: int) -> None:
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"a" * 10)
    for _ in range(10):
        c.pkt(False, "A", window=0)  # the server's buffer is full
    c.pkt(False, "A")
    c.pkt(True, "FA")
    # After the client has closed, a zero window no longer matters (Zeek ignores it).
    c.pkt(False, "A", window=0)
    c.pkt(False, "FA")
    c.pkt(True, "A")
    (f,) = run(c.frames, blocks=blocks)
    assert f.history == "ShADawwFf"


def test_udp_flow_bytes_and_states() -> None:
    frames = [
        (10.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.53", 17, udp(5555, 53, b"q" * 30)))),
        (10.1, ether(MAC_B, MAC_A, ipv4("10.0.0.53", "10.0.0.1", 17, udp(53, 5555, b"r" * 70)))),
        (11.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.9", 17, udp(6000, 7000, b"z" * 5)))),
    ]
    flows = sorted(run(frames), key=lambda f: f.resp.port)
    dns, lone = flows
    assert (state(dns), dns.history, dns.orig_bytes, dns.resp_bytes) == ("SF", "Dd", 30, 70)
    assert (dns.orig_ip_bytes, dns.resp_ip_bytes) == (58, 98)
    assert dns.transport == flow_pb2.TRANSPORT_UDP
    assert (state(lone), lone.history, lone.orig_bytes) == ("S0", "D", 5)


def test_udp_reply_first_is_flipped_to_server_port() -> None:
    frames = [(10.0, ether(MAC_B, MAC_A, ipv4("10.0.0.53", "10.0.0.1", 17, udp(53, 5555, b"r" * 70))))]
    (f,) = run(frames)
    assert (state(f), f.history, f.resp.port) == ("SHR", "^d", 53)


def test_vlan_and_qinq() -> None:
    frames = [
        (1.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"a")), vlans=(100,))),
        (2.0, ether(MAC_A, MAC_B, ipv4("10.0.0.3", "10.0.0.4", 17, udp(1, 2, b"a")), vlans=(200, 30))),
    ]
    flows = sorted(run(frames), key=lambda f: f.vlan)
    assert [(f.vlan, f.inner_vlan) for f in flows] == [(100, 0), (200, 30)]
    assert all(f.orig_bytes == 1 for f in flows)


def test_ipv6_tcp_and_extension_header() -> None:
    c = TcpConv(client="2001:db8::1", server="2001:db8::2", v6=True)
    c.handshake()
    c.pkt(True, "PA", b"hello")
    c.close()
    hop_by_hop = bytes([17, 0]) + b"\x00" * 6  # next header UDP, length 0 (8 bytes)
    pkt = ipv6("2001:db8::5", "2001:db8::6", 17, udp(1000, 2000, b"abc"), ext=hop_by_hop, ext_nh=0)
    frames = [*c.frames, (2000.0, ether(MAC_A, MAC_B, pkt, ethertype=0x86DD))]
    tcp_flow, udp_flow = sorted(run(frames), key=lambda f: f.ip_proto)
    assert (state(tcp_flow), tcp_flow.history, tcp_flow.orig_bytes) == ("SF", "ShADFf", 5)
    assert ip(tcp_flow.orig) == "2001:db8::1" and len(tcp_flow.orig.ip) == 16
    assert (udp_flow.ip_proto, udp_flow.orig.port, udp_flow.resp.port, udp_flow.orig_bytes) == (
        17,
        1000,
        2000,
        3,
    )


def test_icmp_echo_pairs_into_one_flow() -> None:
    frames = [
        (1.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0, b"p" * 56)))),
        (1.1, ether(MAC_B, MAC_A, ipv4("10.0.0.2", "10.0.0.1", 1, icmp(0, 0, b"p" * 56)))),
        (2.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0, b"p" * 56)))),
        (2.1, ether(MAC_B, MAC_A, ipv4("10.0.0.2", "10.0.0.1", 1, icmp(0, 0, b"p" * 56)))),
    ]
    (f,) = run(frames)
    assert f.transport == flow_pb2.TRANSPORT_ICMP
    assert (f.orig.port, f.resp.port) == (8, 0)
    assert (f.orig_pkts, f.resp_pkts, f.orig_bytes, f.resp_bytes) == (2, 2, 112, 112)
    assert state(f) == "OTH"


def test_active_timeout_emits_partial_records_under_one_uid() -> None:
    cfg = SensorConfig(active_timeout_s=10.0)
    frames = [
        (100.0 + i * 2.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x" * 10))))
        for i in range(15)
    ]
    flows = run(frames, cfg, blocks=15)
    assert len(flows) >= 2
    assert len({f.uid for f in flows}) == 1
    assert [f.partial for f in flows[:-1]] == [True] * (len(flows) - 1) and not flows[-1].partial
    assert sum(f.orig_pkts for f in flows) == 15
    assert sum(f.orig_bytes for f in flows) == 150


@pytest.mark.parametrize("blocks", [1, 2])
def test_idle_timeout_splits_connections(blocks: int) -> None:
    cfg = SensorConfig(idle_timeout_udp_s=60.0)
    frames = [
        (100.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x")))),
        (130.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x")))),
        (300.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x")))),
    ]
    flows = run(frames, cfg, blocks=blocks)
    assert [f.orig_pkts for f in flows] == [2, 1]
    assert flows[0].uid != flows[1].uid


def test_closed_connection_is_emitted_after_linger_in_event_time() -> None:
    c = TcpConv()
    c.handshake()
    c.close()
    pipe = SensorPipeline(SensorConfig(close_linger_s=1.0), metrics_registry=CollectorRegistry(), seed=1)
    assert [r for r in pipe.feed(PacketBlock.from_packets(c.frames)) if r.HasField("flow")] == []
    late = ether(MAC_A, MAC_B, ipv4("10.9.9.9", "10.9.9.8", 17, udp(1, 2, b"x")))
    out = pipe.feed(PacketBlock.from_packets([(c.ts + 5.0, late)]))
    assert [state(r.flow) for r in out] == ["SF"]
    assert len(pipe.table) == 1


def test_metrics_count_packets_flows_and_decode_errors() -> None:
    reg = CollectorRegistry()
    pipe = SensorPipeline(SensorConfig(), metrics_registry=reg, seed=1)
    good = ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x")))
    arp = MAC_B + MAC_A + b"\x08\x06" + b"\x00" * 46
    truncated = good[:20]
    pipe.feed(PacketBlock.from_packets([(1.0, good), (1.1, arp), (1.2, truncated)]))
    pipe.flush()
    assert reg.get_sample_value("vigil_sensor_packets_total") == 3
    assert reg.get_sample_value("vigil_sensor_flows_total") == 1
    assert reg.get_sample_value("vigil_sensor_decode_errors_total", {"reason": "non_ip"}) == 1
    assert reg.get_sample_value("vigil_sensor_decode_errors_total", {"reason": "truncated_ip"}) == 1
    assert reg.get_sample_value("vigil_sensor_active_flows") == 0


def test_uids_are_seedable() -> None:
    c = TcpConv()
    c.pkt(True, "S")
    assert run(c.frames)[0].uid == run(c.frames)[0].uid


def test_unanswered_attempt_is_emitted_after_attempt_timeout() -> None:
    cfg = SensorConfig(attempt_timeout_s=30.0)
    pipe = SensorPipeline(cfg, metrics_registry=CollectorRegistry(), seed=1)
    scan = TcpConv(cport=40001, sport=22)
    scan.pkt(True, "S")
    # An answered handshake that then goes quiet: not an attempt, it waits for the TCP idle timeout.
    answered = TcpConv(cport=40002, sport=80)
    answered.handshake()
    assert pipe.feed(PacketBlock.from_packets(sorted(scan.frames + answered.frames))) == []
    assert pipe.expire(scan.ts + 29.0) == []
    out = [r.flow for r in pipe.expire(scan.ts + 31.0) if r.HasField("flow")]
    assert [(state(f), f.history, f.resp.port) for f in out] == [("S0", "S", 22)]
    assert len(pipe.table) == 1
    rest = [r.flow for r in pipe.expire(scan.ts + cfg.idle_timeout_tcp_s + 1.0) if r.HasField("flow")]
    assert [(state(f), f.resp.port) for f in rest] == [("S1", 80)]


def test_attempt_retried_after_attempt_timeout_is_a_new_connection() -> None:
    c = TcpConv(sport=22)
    c.pkt(True, "S")
    c.pkt(True, "S", seq=c.cseq - 1, dt=45.0)  # the client's SYN retransmission, after the timeout
    flows = run(c.frames, SensorConfig(attempt_timeout_s=30.0), blocks=2)
    assert [(state(f), f.history) for f in flows] == [("S0", "S"), ("S0", "S")]
    assert flows[0].uid != flows[1].uid


def test_attempt_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SensorConfig(attempt_timeout_s=0)


def _records(frames: list[tuple[float, bytes]], fast: bool, blocks: int) -> list[bytes]:
    pipe = SensorPipeline(SensorConfig(), metrics_registry=CollectorRegistry(), seed=1)
    pipe.table._fast_paths = fast
    out = []
    step = max(1, -(-len(frames) // blocks))
    for i in range(0, len(frames), step):
        out += pipe.feed(PacketBlock.from_packets(frames[i : i + step]))
    out += pipe.flush()
    return [r.SerializeToString(deterministic=True) for r in out]


@pytest.mark.parametrize("seed", range(40))
def test_clean_connection_fast_path_matches_the_state_machine(seed: int) -> None:
    # Clean sessions (where the SYN / SYN-ACK / FIN shortcuts apply) mixed with odd flag sequences on
    # the same 5-tuple (where they must decline): records are identical with and without them.
    rng = random.Random(seed)
    c = TcpConv()
    if rng.random() < 0.8:
        c.handshake()
    else:
        c.pkt(True, "S")
    for _ in range(rng.randrange(0, 6)):
        c.pkt(rng.random() < 0.5, rng.choice(["PA", "A", "FA", "PA"]), b"y" * rng.choice((0, 20, 300)))
    if rng.random() < 0.6:
        c.close()
    for _ in range(rng.randrange(0, 4)):
        c.pkt(
            rng.random() < 0.5, rng.choice(["RA", "FA", "SA", "S", "A"]), seq=c.cseq + rng.choice((0, 1, -1))
        )
    blocks = rng.choice((1, 2, 3))
    assert _records(c.frames, True, blocks) == _records(c.frames, False, blocks)


# -- a 5-tuple used again (Zeek's connection reuse: a new SYN on a closed connection, or one whose
# sequence number is not the connection's) -------------------------------------------------------------


@pytest.mark.parametrize("blocks", [1, 2, 4])
def test_syn_retried_after_a_reset_is_a_new_connection(blocks: int) -> None:
    c = TcpConv(sport=6969)
    c.pkt(True, "S")
    c.pkt(False, "RA", seq=0)
    c.pkt(True, "S", seq=c.cseq - 1, dt=0.5)  # the same SYN again, half a second later
    c.pkt(False, "RA", seq=0)
    flows = run(c.frames, blocks=blocks)
    assert [(state(f), f.history, f.orig_pkts, f.resp_pkts) for f in flows] == [("REJ", "Sr", 1, 1)] * 2
    assert flows[0].uid != flows[1].uid


@pytest.mark.parametrize("blocks", [1, 3, 7])
def test_new_handshake_after_a_close_is_a_new_connection_with_its_own_bytes(blocks: int) -> None:
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"x" * 100)
    c.pkt(False, "PA", b"y" * 40)
    c.close()
    c.cseq, c.sseq = 900_000, 70_000  # the port comes back with new initial sequence numbers
    c.handshake()
    c.pkt(True, "PA", b"z" * 7)
    c.pkt(False, "A")
    c.close()
    flows = run(c.frames, blocks=blocks)
    assert [(state(f), f.orig_bytes, f.resp_bytes, f.missed_bytes) for f in flows] == [
        ("SF", 100, 40, 0),
        ("SF", 7, 0, 0),
    ]
    assert flows[0].uid != flows[1].uid and flows[1].history == "ShADaFf"


@pytest.mark.parametrize("blocks", [1, 2, 5])
def test_syn_with_a_far_sequence_number_on_an_open_connection_starts_a_new_one(blocks: int) -> None:
    c = TcpConv()
    c.handshake()
    c.pkt(True, "PA", b"x" * 50)
    c.pkt(False, "A")
    # Neither FIN nor RST was captured; the client's next connection from the same port.
    c.cseq, c.sseq = (1000 + 3_000_000_000) & 0xFFFFFFFF, 123_456
    c.handshake()
    c.pkt(True, "PA", b"z" * 20)
    c.close()
    flows = run(c.frames, blocks=blocks)
    assert [(state(f), f.orig_bytes, f.resp_bytes) for f in flows] == [("S1", 50, 0), ("SF", 20, 0)]


@pytest.mark.parametrize("blocks", [1, 3])
def test_retransmitted_syn_stays_one_connection(blocks: int) -> None:
    c = TcpConv()
    c.pkt(True, "S")
    c.pkt(True, "S", seq=c.cseq - 1, dt=1.0)
    c.pkt(False, "SA")
    c.pkt(True, "A")
    c.pkt(True, "PA", b"q" * 3)
    c.close()
    flows = run(c.frames, blocks=blocks)
    assert [(state(f), f.orig_pkts, f.orig_bytes) for f in flows] == [("SF", 6, 3)]


def test_connect_scan_retries_after_reset_are_separate_connections() -> None:
    """nmap -sT from a Windows host (markofu/pcaps): connect() retries a refused port with the same SYN
    after each RST, up to three times; Zeek writes each retry as its own REJ row (TCP_Analyzer::IsReuse:
    a SYN on a closed connection starts a new one)."""
    from pathlib import Path

    from sensor.logwriter import pipeline_records
    from tests.conftest import CORPUS

    capture = CORPUS / "wild/markofu__pcaps/TCP_CONNECT_SCAN.pcap"
    if not capture.is_file():
        pytest.skip(f"wild corpus not found at {capture.parent}")
    # tshark -r TCP_CONNECT_SCAN.pcap -T fields -e tcp.stream | sort -u | wc -l        -> 2012 5-tuples
    # tshark -r TCP_CONNECT_SCAN.pcap -Y tcp -T fields -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport
    #   -e tcp.flags: per 5-tuple, SYNs (no ACK) that follow a RST or FIN on it     -> 2749
    #   (and 386 SYNs repeated before any answer, retransmissions inside one connection)
    records = pipeline_records(SensorConfig(), [Path(capture)], seed=1)
    flows = [r.flow for r in records if r.HasField("flow")]
    assert len(flows) == 2012 + 2749
    assert len({f.uid for f in flows}) == len(flows)
    by_state: dict[str, int] = {}
    for f in flows:
        by_state[state(f)] = by_state.get(state(f), 0) + 1
    # Split the same way, the tshark rows above give 23 connections whose responder sent nothing (S0: the
    # scan's last SYNs, retries among them) and 4,738 answered: 22 after a handshake (RSTO), the rest REJ.
    assert by_state == {"REJ": 4716, "RSTO": 22, "S0": 23}
