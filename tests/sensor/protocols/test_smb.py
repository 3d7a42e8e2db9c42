"""SMB1/SMB2 parser and session tests with messages built per MS-SMB2 and MS-CIFS."""

from __future__ import annotations

import struct

from sensor.protocols.base import ConnContext
from sensor.protocols.smb import FACTORY, zeek
from sensor.protocols.smb import parser as p
from tests.sensor.protocols.test_ntlm import AUTHENTICATE_BYTES, CHALLENGE_BYTES, NEGOTIATE_BYTES
from vigil.sensor.v1 import sensor_pb2


def smb2_header(
    command: int, mid: int, *, response: bool = False, status: int = 0, tree: int = 0, next_command: int = 0
) -> bytes:
    flags = p.SMB2_FLAG_RESPONSE if response else 0
    return (
        p.SMB2_MAGIC
        + struct.pack("<HHIHHIIQII", 64, 0, status, command, 1, flags, next_command, mid, 0, tree)
        + struct.pack("<Q", 0)
        + b"\x00" * 16
    )


def nbss(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def smb2_frame() -> bytes:
    body = struct.pack("<HHHHI", 36, 3, 1, 0, 0) + b"\x00" * 16 + b"\x00" * 8
    body += struct.pack("<HHH", 0x0202, 0x0300, 0x0311)
    return nbss(smb2_header(0, 0) + body)


def negotiate_response(dialect: int) -> bytes:
    body = struct.pack("<HHH", 65, 1, dialect) + b"\x00" * 58
    return nbss(smb2_header(0, 0, response=True) + body)


def session_setup(mid: int, blob: bytes) -> bytes:
    body = struct.pack("<HBBIIHHQ", 25, 0, 1, 0, 0, 64 + 24, len(blob), 0) + blob
    return nbss(smb2_header(1, mid) + body)


def session_setup_response(mid: int, status: int, blob: bytes = b"") -> bytes:
    body = struct.pack("<HHHH", 9, 0, 64 + 8, len(blob)) + blob
    return nbss(smb2_header(1, mid, response=True, status=status) + body)


def tree_connect(mid: int, path: str) -> bytes:
    raw = path.encode("utf-16-le")
    return smb2_header(3, mid) + struct.pack("<HHHH", 9, 0, 64 + 8, len(raw)) + raw


def tree_connect_response(mid: int, tree: int, share_type: int) -> bytes:
    return smb2_header(3, mid, response=True, tree=tree) + struct.pack("<HBBIII", 16, share_type, 0, 0, 0, 0)


def _session() -> tuple[object, list[sensor_pb2.Record], list[str]]:
    out: list[sensor_pb2.Record] = []
    errors: list[str] = []
    ctx = ConnContext("C1", "10.0.0.1", 5000, "10.0.0.2", 445, "tcp")
    return FACTORY(ctx, out.append, lambda _p, r: errors.append(r)), out, errors


def _kinds(out: list[sensor_pb2.Record], kind: str) -> list[sensor_pb2.Record]:
    return [r for r in out if r.WhichOneof("kind") == kind]


def test_smb2_negotiate_logon_failure_and_tree_connect() -> None:
    session, out, errors = _session()
    client = smb2_frame() + session_setup(1, NEGOTIATE_BYTES)
    for i in range(0, len(client), 5):  # arbitrary chunking
        session.data(True, 1.0, client[i : i + 5])  # type: ignore[attr-defined]
    session.data(False, 1.1, negotiate_response(0x0311))  # type: ignore[attr-defined]
    session.data(False, 1.2, session_setup_response(1, p.STATUS_MORE_PROCESSING_REQUIRED, CHALLENGE_BYTES))  # type: ignore[attr-defined]
    session.data(True, 1.25, session_setup(2, AUTHENTICATE_BYTES))  # type: ignore[attr-defined]
    session.data(False, 1.3, session_setup_response(2, p.STATUS_LOGON_FAILURE))  # type: ignore[attr-defined]
    # A compounded pair of tree connects (NextCommand chains them in one frame).
    first = tree_connect(3, "\\\\srv\\share")
    first += b"\x00" * (-len(first) % 8)
    first = first[:20] + struct.pack("<I", len(first)) + first[24:]
    session.data(True, 1.4, nbss(first + tree_connect(4, "\\\\srv\\IPC$")))  # type: ignore[attr-defined]
    session.data(False, 1.5, nbss(tree_connect_response(3, 7, 1)))  # type: ignore[attr-defined]
    session.data(False, 1.5, nbss(tree_connect_response(4, 8, 2)))  # type: ignore[attr-defined]
    session.finish(2.0)  # type: ignore[attr-defined]
    assert errors == []
    neg = _kinds(out, "smb_negotiate")[0].smb_negotiate
    assert list(neg.offered_dialects) == ["SMB 2.0.2", "SMB 3.0", "SMB 3.1.1"]
    assert (neg.negotiated_dialect, neg.version, neg.smb1_offered) == ("SMB 3.1.1", 3, False)
    setup = _kinds(out, "smb_session_setup")
    assert [(s.smb_session_setup.status, s.smb_session_setup.auth_mechanism) for s in setup] == [
        (p.STATUS_LOGON_FAILURE, "ntlm")
    ]
    ntlm = _kinds(out, "ntlm")[0].ntlm
    assert (ntlm.username, ntlm.success, ntlm.status) == ("alice", False, p.STATUS_LOGON_FAILURE)
    rows = [zeek.mapping_to_zeek(r.smb_tree_connect) for r in _kinds(out, "smb_tree_connect")]
    assert rows == [
        {"path": "\\\\srv\\share", "share_type": "DISK"},
        {"path": "\\\\srv\\IPC$", "share_type": "PIPE"},
    ]
    counts = _kinds(out, "smb_command_counts")[0].smb_command_counts
    assert dict(counts.requests) == {"NEGOTIATE_PROTOCOL": 1, "SESSION_SETUP": 2, "TREE_CONNECT": 2}


def smb1_negotiate(dialects: list[str]) -> bytes:
    data = b"".join(b"\x02" + d.encode() + b"\x00" for d in dialects)
    header = p.SMB1_MAGIC + bytes([0x72]) + b"\x00" * 4 + b"\x18" + struct.pack("<H", 0xC853) + b"\x00" * 20
    return nbss(header + b"\x00" + struct.pack("<H", len(data)) + data)


def test_smbv1_negotiate_is_recognised() -> None:
    session, out, _ = _session()
    session.data(True, 1.0, smb1_negotiate(["PC NETWORK PROGRAM 1.0", "NT LM 0.12"]))  # type: ignore[attr-defined]
    header = p.SMB1_MAGIC + bytes([0x72]) + b"\x00" * 4 + b"\x98" + struct.pack("<H", 0xC853) + b"\x00" * 20
    session.data(False, 1.1, nbss(header + b"\x11" + struct.pack("<H", 1) + b"\x00" * 32 + b"\x00\x00"))  # type: ignore[attr-defined]
    session.finish(2.0)  # type: ignore[attr-defined]
    neg = _kinds(out, "smb_negotiate")[0].smb_negotiate
    assert (neg.negotiated_dialect, neg.version, neg.smb1_offered) == ("NT LM 0.12", 1, True)


def test_large_write_is_skipped_not_buffered() -> None:
    session, out, errors = _session()
    big = smb2_header(9, 5) + b"\x00" * 200_000
    frame = nbss(big)
    for i in range(0, len(frame), 65536):
        session.data(True, 1.0, frame[i : i + 65536])  # type: ignore[attr-defined]
    assert len(session._buf[True]) == 0  # type: ignore[attr-defined]
    session.data(True, 1.1, smb2_frame())  # type: ignore[attr-defined]
    session.data(False, 1.2, negotiate_response(0x0210))  # type: ignore[attr-defined]
    assert _kinds(out, "smb_negotiate")[0].smb_negotiate.negotiated_dialect == "SMB 2.1"
    assert errors == []
