"""smb_files.log rows (sensor/protocols/smb/files.py): which actions become SmbFile records, when a row
repeats, the MAC times and the row mapping, on Zeek's SMB reference captures (counts from tshark, the
command beside each) and on messages built per MS-SMB2 where the corpus has no capture (renames)."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.logwriter import zeek_logs
from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.smb import FACTORY, files, zeek
from sensor.protocols.smb import parser as p
from tests.sensor import golden
from tests.sensor.protocols.test_smb import nbss, smb2_header, tree_connect, tree_connect_response
from vigil.flow.v1 import smb_pb2
from vigil.sensor.v1 import sensor_pb2

SMB = "zeek/smb"


def smb_files(corpus: Path, name: str) -> list[smb_pb2.SmbFile]:
    return [r.smb_file for r in golden.run(corpus / SMB / name).records if r.WhichOneof("kind") == "smb_file"]


def test_reopening_an_unchanged_file_writes_no_new_row(corpus: Path) -> None:
    # tshark -r smb1.pcap -Y 'smb2.cmd==5 && smb2.flags.response==1 && smb2.nt_status==0' -> 7 frames
    # (2, 5, 8, 11, 14, 17, 20): the share root three times, Test once, the workbook three times, each
    # time with the same times and size; then one READ (frame 22) answered with 25,940 bytes (frame 23).
    rows = smb_files(corpus, "smb1.pcap")
    opens = [(f.name, f.size_bytes) for f in rows if f.action == "SMB::FILE_OPEN"]
    assert opens == [("<share_root>", 0), ("Test", 0), ("Test\\2009-12 Payroll.xlsx", 25940)]
    reads = [(f.name, f.data_seen) for f in rows if f.action == "SMB::FILE_READ"]
    assert reads == [("Test\\2009-12 Payroll.xlsx", False), ("Test\\2009-12 Payroll.xlsx", True)]


def test_pipe_opens_make_no_row_and_a_changed_file_does(corpus: Path) -> None:
    # tshark -r smb2.pcap -Y 'smb2.cmd==5 && smb2.flags.response==1 && smb2.nt_status==0'
    #   -T fields -e frame.number -e smb2.tid -> 13 0x1, 17 0x5 (srvsvc on IPC$, a PIPE tree: frame 15),
    #   33 0x1 (WP_SMBPlugin.pdf), 1167 0x1 and 1173 0x1 (the share root, last written at 20:18:15 now).
    rows = smb_files(corpus, "smb2.pcap")
    assert [f.name for f in rows if f.action == "SMB::FILE_OPEN"] == [
        "<share_root>", "WP_SMBPlugin.pdf", "<share_root>",
    ]  # fmt: skip
    assert all(f.path == "\\\\10.0.0.12\\smb2" for f in rows)


def test_mac_times_are_zeeks_doubles(corpus: Path) -> None:
    # Frame 2 of smb2readwrite.pcap (CREATE response for pythonfile): CreationTime 131941167382800000,
    # LastAccessTime 131941167831560000, LastWriteTime = ChangeTime 131941167382824815 (100 ns since 1601).
    first = smb_files(corpus, "smb2readwrite.pcap")[0]
    assert first.times.created.ToNanoseconds() == (131941167382800000 - files.FILETIME_UNIX_EPOCH) * 100
    row = zeek.file_to_zeek(first, reads_writes=True)
    assert row is not None
    # Zeek divides the 64-bit count as a double: 1549643138.2800007, printed .280001.
    assert (row["times.created"], row["times.modified"]) == (1549643138.2800007, 1549643138.2824821)


def test_reads_and_writes_are_rows_only_when_asked(corpus: Path) -> None:
    # tshark -r smb2readwrite.pcap -Y 'smb2.cmd==8 && smb2.flags.response==0' -> frame 9 (pythonfile);
    # -Y 'smb2.cmd==9 && smb2.flags.response==0' -> frame 19 (7,000 bytes to pythonfile2).
    records = golden.run(corpus / SMB / "smb2readwrite.pcap").records
    default = [r["action"] for r in zeek_logs(records)["smb_files"]]
    asked = [r["action"] for r in zeek_logs(records, smb_reads_writes=True)["smb_files"]]
    assert default == ["SMB::FILE_OPEN"] * 3
    assert asked.count("SMB::FILE_READ") == 2 and asked.count("SMB::FILE_WRITE") == 2


def test_delete_on_close_is_a_delete_row_after_the_open(corpus: Path) -> None:
    # tshark -r smb2.delete-on-close-perms-delete-existing.pcap -O smb2: CREATE requests 48, 68 and 92
    # ask for Delete On Close (options 0x1040, 0x1001, 0x1040) and succeed (50, 70, 94).
    rows = smb_files(corpus, "smb2.delete-on-close-perms-delete-existing.pcap")
    deletes = [f.name for f in rows if f.action == "SMB::FILE_DELETE"]
    assert deletes == ["test_dir\\test_create.dat", "test_dir", "test_dir\\test_create.dat"]


# -- renames: no capture of the corpus has one (tshark -Y smb2.file_rename_info finds none) ------------


def create(mid: int, tree: int, name: str) -> bytes:
    raw = name.encode("utf-16-le")
    # MS-SMB2 2.2.13: access, attributes, share access, disposition (open), options, then the name.
    fixed = struct.pack("<HBBIQQIIIII", 57, 0, 0, 0, 0, 0, 0x80, 0, 7, 1, 0)
    body = fixed + struct.pack("<HHII", 64 + 56, len(raw), 0, 0) + raw
    return nbss(smb2_header(p.SMB2_CREATE, mid, tree=tree) + body)


def create_response(mid: int, tree: int, file_id: bytes, write_time: int) -> bytes:
    times = struct.pack("<QQQQ", write_time - 10, write_time, write_time, write_time)
    body = struct.pack("<HBBI", 89, 0, 0, 1) + times + struct.pack("<QQII", 4096, 10, 0x20, 0) + file_id
    return nbss(smb2_header(p.SMB2_CREATE, mid, response=True, tree=tree) + body + struct.pack("<II", 0, 0))


def rename(mid: int, tree: int, file_id: bytes, target: str) -> bytes:
    raw = target.encode("utf-16-le")
    info = struct.pack("<B7xQI", 0, 0, len(raw)) + raw
    body = struct.pack(
        "<HBBIHHI", 33, p.SMB2_0_INFO_FILE, p.FILE_RENAME_INFORMATION, len(info), 64 + 32, 0, 0
    )
    return nbss(smb2_header(p.SMB2_SET_INFO, mid, tree=tree) + body + file_id + info)


def test_rename_names_the_new_file_and_keeps_the_old_name() -> None:
    out: list[sensor_pb2.Record] = []
    session = FACTORY(
        ConnContext("C1", "10.0.0.1", 5000, "10.0.0.2", 445, "tcp"), out.append, lambda *_: None
    )
    fid = bytes(range(16))
    written = 133_000_000_000_000_000
    for n, (is_orig, frame) in enumerate([
        (True, nbss(tree_connect(1, "\\\\srv\\share"))),
        (False, nbss(tree_connect_response(1, 7, 1))),
        (True, create(2, 7, "old.txt")),
        (False, create_response(2, 7, fid, written)),
        (True, rename(3, 7, fid, "dir\\new.txt")),
    ]):  # fmt: skip
        session.data(is_orig, float(n), frame)
    rows = [r.smb_file for r in out if r.WhichOneof("kind") == "smb_file"]
    assert [(f.action, f.name, f.prev_name, f.size_bytes) for f in rows] == [
        ("SMB::FILE_OPEN", "old.txt", "", 10),
        ("SMB::FILE_RENAME", "dir\\new.txt", "old.txt", 10),
    ]
    row = zeek.file_to_zeek(rows[1])
    assert row is not None and row["prev_name"] == "old.txt" and row["path"] == "\\\\srv\\share"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_file_messages_raise_only_parse_error(tail: bytes) -> None:
    for parse in (p.smb2_create_response, p.smb2_set_info_request, p.smb2_read_response):
        with contextlib.suppress(ParseError):
            parse(smb2_header(p.SMB2_CREATE, 1) + tail)
    with contextlib.suppress(ParseError):
        p.smb2_rename_target(tail)
    block = p.Smb1Block(p.SMB1_NT_CREATE_ANDX, tail, b"", 0)
    p.smb1_nt_create_response(block)
