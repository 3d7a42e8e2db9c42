"""`vigil sensor read`: Zeek-JSON logs and JSON lines, driven through the CLI on built captures."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.sensor.packets import MAC_A, MAC_B, ether, ipv4, pcap_bytes, tcp, udp
from vigil.cli import main

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "tests" / "data" / "lab-scan.pcap"


def _dns_query() -> bytes:
    # id 0x1234, RD, one question: example.com A IN
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00\x00\x01\x00\x01"


def _dns_reply() -> bytes:
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 300, 4) + bytes([93, 184, 216, 34])
    return struct.pack("!HHHHHH", 0x1234, 0x8180, 1, 1, 0, 0) + _dns_query()[12:] + answer


def _capture(path: Path) -> Path:
    a, b = "10.0.0.1", "10.0.0.53"
    packets = [
        (1000.0, ether(MAC_A, MAC_B, ipv4(a, b, 17, udp(40000, 53, _dns_query())))),
        (1000.25, ether(MAC_B, MAC_A, ipv4(b, a, 17, udp(53, 40000, _dns_reply())))),
        (1001.0, ether(MAC_A, MAC_B, ipv4(a, "10.0.0.80", 6, tcp(40001, 80, 100, 0, "S")))),
        (1001.1, ether(MAC_B, MAC_A, ipv4("10.0.0.80", a, 6, tcp(80, 40001, 500, 101, "RA")))),
    ]
    path.write_bytes(pcap_bytes(packets))
    return path


def _read(out: Path, log: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in (out / f"{log}.log").read_text().splitlines()]


def test_zeek_json_conn_and_dns(tmp_path: Path) -> None:
    pcap = _capture(tmp_path / "t.pcap")
    assert main(["sensor", "read", str(pcap), "--format", "zeek-json", "--out", str(tmp_path / "o")]) == 0
    conns = {c["id.resp_p"]: c for c in _read(tmp_path / "o", "conn")}
    dns_conn = conns[53]
    assert list(dns_conn)[:7] == ["ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"]
    assert dns_conn["ts"] == 1000.0 and isinstance(dns_conn["ts"], float)
    assert (dns_conn["id.orig_h"], dns_conn["id.orig_p"], dns_conn["proto"]) == ("10.0.0.1", 40000, "udp")
    assert dns_conn["service"] == "dns" and dns_conn["duration"] == 0.25
    assert dns_conn["orig_l2_addr"] == "02:00:00:00:00:01" and dns_conn["resp_l2_addr"] == "02:00:00:00:00:02"
    assert str(dns_conn["community_id"]).startswith("1:")
    rej = conns[80]
    assert rej["conn_state"] == "REJ" and rej["proto"] == "tcp" and rej["history"] == "Sr"
    assert "local_orig" not in rej  # unknown to the sensor: unset, as Zeek's writer leaves it out
    [dns] = _read(tmp_path / "o", "dns")
    assert dns["uid"] == dns_conn["uid"] and dns["id.resp_p"] == 53 and dns["proto"] == "udp"
    assert dns["query"] == "example.com" and dns["qtype_name"] == "A" and dns["RD"] is True
    assert dns["answers"] == ["93.184.216.34"] and dns["TTLs"] == [300.0]
    assert dns["rtt"] == 0.25


def test_jsonl_is_the_protobuf_json_mapping(tmp_path: Path) -> None:
    pcap = _capture(tmp_path / "t.pcap")
    assert main(["sensor", "read", str(pcap), "--format", "jsonl", "--out", str(tmp_path / "o")]) == 0
    lines = [json.loads(x) for x in (tmp_path / "o" / "records.jsonl").read_text().splitlines()]
    kinds = sorted(next(iter(r)) for r in lines)
    assert kinds == ["dns", "flow", "flow"]
    flow = next(r["flow"] for r in lines if "flow" in r)
    assert flow["orig"]["ip"] == "CgAAAQ=="  # bytes are base64 in the proto3 JSON mapping


def test_lab_capture(tmp_path: Path) -> None:
    assert main(["sensor", "read", str(LAB), "--out", str(tmp_path)]) == 0
    conns = _read(tmp_path, "conn")
    assert conns and all(isinstance(c["id.orig_p"], int) and isinstance(c["uid"], str) for c in conns)
    for log in (tmp_path).glob("*.log"):
        for row in _read(tmp_path, log.stem):
            assert all(v is not None for v in row.values())
            if log.stem != "dhcp":
                assert "id.orig_h" in row, (log.stem, row)


def test_truncated_capture_keeps_what_was_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _capture(tmp_path / "t.pcap").read_bytes()
    (tmp_path / "cut.pcap").write_bytes(data[:-10])
    assert main(["sensor", "read", str(tmp_path / "cut.pcap"), "--out", str(tmp_path / "o")]) == 3
    assert "truncated" in capsys.readouterr().err
    assert _read(tmp_path / "o", "dns")  # the DNS exchange came before the damage


def test_missing_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sensor", "read", str(tmp_path / "nope.pcap"), "--out", str(tmp_path / "o")]) == 1
    assert "nope.pcap: no such file" in capsys.readouterr().err


def test_application_records_name_their_connection() -> None:
    """Each application record carries its flow's endpoints (the master attributes it at once)."""
    from sensor.logwriter import pipeline_records
    from vigil.config import SensorConfig

    records = list(pipeline_records(SensorConfig(), [Path("tests/data/lab-scan.pcap")], seed=1))
    flows = {r.flow.uid: r.flow for r in records if r.WhichOneof("kind") == "flow"}
    apps = [r for r in records if r.WhichOneof("kind") not in ("flow", "dhcp")]
    assert len(apps) > 10
    for record in apps:
        uid = getattr(record, str(record.WhichOneof("kind"))).uid
        flow = flows[uid]
        assert (record.orig.ip, record.orig.port) == (flow.orig.ip, flow.orig.port)
        assert (record.resp.ip, record.resp.port) == (flow.resp.ip, flow.resp.port)
