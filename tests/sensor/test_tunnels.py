"""VXLAN and Geneve: the sensor analyses the frames a tunnel carries (cloud traffic mirroring), not the
tunnel's outer UDP conversation."""

from __future__ import annotations

import struct
from pathlib import Path

from prometheus_client import CollectorRegistry

from sensor.logwriter import pipeline_records
from sensor.tunnels import geneve_inner, vxlan_inner
from tests.sensor.packets import MAC_A, MAC_B, ether, ipv4, pcap_bytes, tcp, udp
from vigil.config import SensorConfig
from vigil.flow.v1 import flow_pb2

MIRROR, SENSOR = "172.31.0.10", "172.31.0.20"
A, B = "10.1.0.5", "10.1.0.9"


def _vxlan(frame: bytes, vni: int = 42) -> bytes:
    return struct.pack("!B3xI", 0x08, vni << 8) + frame


def _geneve(frame: bytes, options: bytes = b"") -> bytes:
    return struct.pack("!BBH3xx", len(options) // 4, 0, 0x6558) + options + frame


def _outer(payload: bytes, port: int) -> bytes:
    return ether(MAC_A, MAC_B, ipv4(MIRROR, SENSOR, 17, udp(49152, port, payload)))


def _conversation() -> list[bytes]:
    """A complete TCP exchange between A and B, as the mirrored frames."""
    return [
        ether(MAC_A, MAC_B, ipv4(A, B, 6, tcp(40000, 22, 100, 0, "S"))),
        ether(MAC_B, MAC_A, ipv4(B, A, 6, tcp(22, 40000, 500, 101, "SA"))),
        ether(MAC_A, MAC_B, ipv4(A, B, 6, tcp(40000, 22, 101, 501, "A"))),
        ether(MAC_A, MAC_B, ipv4(A, B, 6, tcp(40000, 22, 101, 501, "FA"))),
        ether(MAC_B, MAC_A, ipv4(B, A, 6, tcp(22, 40000, 501, 102, "FA"))),
        ether(MAC_A, MAC_B, ipv4(A, B, 6, tcp(40000, 22, 102, 502, "A"))),
    ]


def _read(
    tmp_path: Path, frames: list[bytes], config: SensorConfig, registry: CollectorRegistry
) -> list[flow_pb2.Flow]:
    path = tmp_path / "t.pcap"
    path.write_bytes(pcap_bytes([(1_700_000_000.0 + i * 0.01, f) for i, f in enumerate(frames)]))
    return [r.flow for r in pipeline_records(config, [path], metrics_registry=registry) if r.HasField("flow")]


def test_headers() -> None:
    frame = ether(MAC_A, MAC_B, ipv4(A, B, 6, tcp(1, 2, 0, 0, "S")))
    assert vxlan_inner(_vxlan(frame)) == frame
    assert vxlan_inner(b"\x00" * 8 + frame) is None  # I flag clear: not a VXLAN header
    assert vxlan_inner(_vxlan(b"short")) is None
    assert geneve_inner(_geneve(frame, options=b"\x01\x02\x03\x04" * 2)) == frame
    assert geneve_inner(b"\x40" + _geneve(frame)[1:]) is None  # version 1
    assert geneve_inner(_geneve(frame)[:2] + b"\x08\x00" + _geneve(frame)[4:]) is None  # carries IPv4


def test_mirrored_traffic_is_analysed_as_the_inner_conversation(tmp_path: Path) -> None:
    frames = [_outer(_vxlan(f), 4789) for f in _conversation()[:3]]
    frames += [_outer(_geneve(f), 6081) for f in _conversation()[3:]]
    registry = CollectorRegistry()
    flows = _read(tmp_path, frames, SensorConfig(), registry)
    assert len(flows) == 1
    flow = flows[0]
    assert (flow.resp.port, flow.history, flow.conn_state) == (22, "ShAFf", flow_pb2.CONN_STATE_SF)
    assert registry.get_sample_value("vigil_sensor_decapsulated_packets_total", {"tunnel": "vxlan"}) == 3
    assert registry.get_sample_value("vigil_sensor_decapsulated_packets_total", {"tunnel": "geneve"}) == 3


def test_decapsulation_off_leaves_the_outer_udp(tmp_path: Path) -> None:
    frames = [_outer(_vxlan(f), 4789) for f in _conversation()]
    flows = _read(tmp_path, frames, SensorConfig(vxlan_ports=[], geneve_ports=[]), CollectorRegistry())
    assert [(f.resp.port, f.orig_pkts) for f in flows] == [(4789, 6)]


def test_inner_segments_are_checksum_verified_like_any_other(tmp_path: Path) -> None:
    """A forged segment inside a tunnel is dropped as it would be outside one."""
    from tests.sensor.test_checksums import with_checksum

    syn = tcp(40000, 22, 100, 0, "S")
    good = ether(MAC_A, MAC_B, ipv4(A, B, 6, with_checksum(A, B, 6, syn)))
    forged = ether(MAC_A, MAC_B, ipv4(A, B, 6, syn))  # checksum left 0: wrong
    on = SensorConfig(verify_l4_checksums="on")
    assert len(_read(tmp_path, [_outer(_vxlan(good), 4789)], on, CollectorRegistry())) == 1
    assert _read(tmp_path, [_outer(_vxlan(forged), 4789)], on, CollectorRegistry()) == []
