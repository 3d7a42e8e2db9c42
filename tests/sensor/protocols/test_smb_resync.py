"""SMB after a capture gap: the analyzer finds the next NetBIOS session message that starts an SMB header
and carries on, instead of going silent for the rest of the connection.

The gap is cut into a real capture (PsExec over SMB2, sbousseaden/PCAP-ATTACK) with editcap; what must
still be reported is counted with tshark on the uncut capture (commands in the comments).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sensor.logwriter import pipeline_records
from sensor.protocols.base import ConnContext
from sensor.protocols.smb import FACTORY
from tests.conftest import CORPUS
from tests.sensor.protocols.test_smb import tree_connect, tree_connect_response
from vigil.config import SensorConfig
from vigil.sensor.v1 import sensor_pb2

PSEXEC = CORPUS / "wild/sbousseaden__PCAP-ATTACK/LM_psexec_smb_dcerpc_epm_svcctl.pcapng"


def smb_records(capture: Path, metrics: CollectorRegistry) -> list[sensor_pb2.Record]:
    kinds = ("smb_session_setup", "smb_tree_connect", "smb_file")
    records = pipeline_records(SensorConfig(), [capture], seed=1, metrics_registry=metrics)
    return [r for r in records if r.WhichOneof("kind") in kinds]


def resyncs(metrics: CollectorRegistry) -> float:
    found = metrics.get_sample_value(
        "vigil_sensor_parse_errors_total", {"protocol": "smb", "reason": "resync"}
    )
    return found or 0.0


def test_records_after_a_gap_inside_a_large_write_are_still_reported(tmp_path: Path) -> None:
    if not PSEXEC.is_file() or shutil.which("editcap") is None:
        pytest.skip("needs the wild corpus and editcap")
    # Frame 13 carries the NetBIOS header and the first 1,460 bytes of a 65,536-byte WRITE of PSEXESVC.exe
    # (frames 13-57); without it the client's stream resumes inside the file's bytes.
    cut = tmp_path / "psexec-gap.pcapng"
    subprocess.run(["editcap", str(PSEXEC), str(cut), "13"], check=True, capture_output=True, timeout=60)
    lost = subprocess.run(
        ["tshark", "-r", str(cut), "-Y", "tcp.analysis.lost_segment && tcp.port == 445", "-T", "fields",
         "-e", "frame.number"], capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert lost == ["13"]

    metrics = CollectorRegistry()
    records = smb_records(cut, metrics)
    trees = [r.smb_tree_connect.path for r in records if r.HasField("smb_tree_connect")]
    opens = [
        r.smb_file.name for r in records if r.HasField("smb_file") and r.smb_file.action == "SMB::FILE_OPEN"
    ]
    # tshark -r LM_psexec_smb_dcerpc_epm_svcctl.pcapng -Y 'smb2.cmd==3 && smb2.flags.response==0'
    #   -T fields -e smb2.tree   -> \\172.16.66.36\ADMIN$ (frame 7), \\172.16.66.36\IPC$ (frame 146)
    assert trees == ["\\\\172.16.66.36\\ADMIN$", "\\\\172.16.66.36\\IPC$"]
    # tshark -r ... -Y 'smb2.cmd==5 && smb2.flags.response==0' -T fields -e frame.number -e smb2.filename
    #   -> 11 PSEXESVC.exe, 148 PSEXESVC, 177 ...-stdin, 183 ...-stdout, 189 ...-stderr; every response
    #   (12, 149, 178, 184, 190) has smb2.nt_status 0. All but the first are pipes of the IPC$ tree (its
    #   TREE_CONNECT response, frame 148, has smb2.share_type 2, PIPE), which make no smb_files.log row.
    assert opens == ["PSEXESVC.exe"]
    assert resyncs(metrics) == 1
    # Nothing lost but the cut bytes: the same SMB records as from the whole capture, except that the
    # first write to PSEXESVC.exe is now seen at the second WRITE request (frame 57 on): both its row and
    # the row repeated when the file's bytes first flow.
    whole = smb_records(PSEXEC, CollectorRegistry())
    assert [untimed(r) for r in records] == [untimed(r) for r in whole]
    changed = [
        (a.smb_file.action, b.smb_file.time.ToNanoseconds() > a.smb_file.time.ToNanoseconds())
        for a, b in zip(whole, records, strict=True)
        if a.SerializeToString() != b.SerializeToString()
    ]
    assert changed == [("SMB::FILE_WRITE", True), ("SMB::FILE_WRITE", True)]


def untimed(record: sensor_pb2.Record) -> bytes:
    copy = sensor_pb2.Record()
    copy.CopyFrom(record)
    getattr(copy, str(copy.WhichOneof("kind"))).ClearField("time")
    return copy.SerializeToString()


def _session() -> tuple[object, list[sensor_pb2.Record], list[str]]:
    out: list[sensor_pb2.Record] = []
    errors: list[str] = []
    ctx = ConnContext("C1", "10.0.0.1", 5000, "10.0.0.2", 445, "tcp")
    return FACTORY(ctx, out.append, lambda _p, r: errors.append(r)), out, errors


def nbss(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def test_resync_finds_a_header_split_across_chunks_and_skips_lookalikes() -> None:
    session, out, errors = _session()
    request = nbss(tree_connect(7, "\\\\srv\\data"))
    session.data(True, 1.0, nbss(tree_connect(5, "\\\\srv\\a"))[:30])  # type: ignore[attr-defined]
    session.gap(True, 1.1, 500)  # type: ignore[attr-defined]
    # After the gap: bytes that are no NetBIOS + SMB header (a bad type, a too-long length, a wrong magic),
    # then the real request, handed over in pieces that cut its header in two.
    junk = b"\x00\x00\x00\x10\xfeSNB" + b"\x85\x00\x00\x00" + b"\x00\x7f\xff\xff\xfeSMB" + b"\xfeSMB" * 3
    stream = junk + request
    for at in range(0, len(stream), 7):
        session.data(True, 1.2, stream[at : at + 7])  # type: ignore[attr-defined]
    session.data(False, 1.3, nbss(tree_connect_response(7, tree=1, share_type=1)))  # type: ignore[attr-defined]
    trees = [r.smb_tree_connect.path for r in out if r.HasField("smb_tree_connect")]
    assert trees == ["\\\\srv\\data"]
    assert errors.count("resync") == 1


def test_a_direction_that_never_resyncs_buffers_nothing() -> None:
    session, _out, errors = _session()
    session.gap(True, 1.0, 100)  # type: ignore[attr-defined]
    for _ in range(2000):
        session.data(True, 1.1, b"\x00\x00\x01" * 400)  # type: ignore[attr-defined]
    assert errors.count("resync") == 0
    assert len(session._carry[True]) < 8  # type: ignore[attr-defined]


def test_an_acknowledged_hole_is_reported_at_once() -> None:
    from sensor.reassembly import StreamReassembler

    got: list[tuple[str, int]] = []
    stream = StreamReassembler(
        lambda _ts, data: got.append(("data", len(data))), lambda _ts, n: got.append(("gap", n))
    )
    stream.syn(999)
    stream.segment(1.0, 1000, b"a" * 10)
    stream.segment(1.1, 1020, b"b" * 5)  # bytes 1010-1019 never captured
    # The peer acknowledges past the hole (into it): those bytes will not come.
    stream.acked(1.2, 1015)
    assert got == [("data", 10), ("gap", 10), ("data", 5)]
    assert not stream.waiting
    stream.segment(1.3, 1040, b"c")  # bytes 1025-1039 missing
    stream.acked(1.4, 1020)  # an acknowledgement behind the stream changes nothing
    stream.acked(1.4, 1025)  # nor one of exactly what was delivered
    assert stream.waiting
    stream.acked(1.5, 1030)  # one inside the hole shows it is real
    assert got[-2:] == [("gap", 15), ("data", 1)]
