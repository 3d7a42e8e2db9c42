"""FTP: parser pieces, the control session on scripted dialogues, data connections announced by PASV and
PORT (named "ftp-data", their bytes counted for the transfer), real captures checked against tshark, and
hostile input (counted, bounded, never raised)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from sensor.analyzers import default_registry
from sensor.capture import PacketBlock
from sensor.logwriter import zeek_logs
from sensor.pipeline import SensorPipeline
from sensor.protocols.base import ConnContext
from sensor.protocols.ftp import FtpSessionFactory, parser
from sensor.protocols.ftp.session import FtpSession
from sensor.registry import ExpectedConnections
from tests.conftest import CORPUS
from tests.sensor.packets import TcpConv
from tests.sensor.records import capture_records
from vigil.config import SensorConfig
from vigil.flow.v1 import ftp_pb2
from vigil.sensor.v1 import sensor_pb2

CLIENT, SERVER = "10.0.0.5", "10.0.0.9"
CTX = ConnContext("Cftp", CLIENT, 50000, SERVER, 21, "tcp")
AGENT_TESLA_FTP = (
    CORPUS / "wild/corelight__zeek-agenttesla-detector/f9421792-7d2c-47d3-90e0-07eb54ae12fa.pcap"
)
PE_DOWNLOADS = CORPUS / "reference/zeek/pe/pe.pcap"


def _run(
    chunks: list[tuple[bool, bytes]], expected: ExpectedConnections | None = None
) -> tuple[list[ftp_pb2.FtpRecord], Counter[str], FtpSession]:
    out: list[sensor_pb2.Record] = []
    errors: Counter[str] = Counter()
    table = expected if expected is not None else ExpectedConnections()
    # FTP's own errors (the TLS session after AUTH TLS counts its own).
    session = FtpSessionFactory(table)(CTX, out.append, lambda p, r: errors.update([r] if p == "ftp" else []))
    assert isinstance(session, FtpSession)
    for i, (is_orig, data) in enumerate(chunks):
        session.data(is_orig, 1.0 + i, data)
    session.finish(100.0)
    return [r.ftp for r in out if r.WhichOneof("kind") == "ftp"], errors, session


BANNER = (False, b"220 (vsFTPd 3.0.3)\r\n")


def _logon(user: str = "alice", answer: bytes = b"230 Login successful.\r\n") -> list[tuple[bool, bytes]]:
    return [
        (True, f"USER {user}\r\n".encode()),
        (False, b"331 Please specify the password.\r\n"),
        (True, b"PASS s3cret-pw\r\n"),
        (False, answer),
    ]


# -- parser -----------------------------------------------------------------------------------------------


def test_data_channel_addresses() -> None:
    assert parser.parse_pasv("Entering Passive Mode (143,95,79,226,173,235)") == parser.Endpoint(
        "143.95.79.226", 44523
    )
    assert parser.parse_pasv("Entering Passive Mode 10,0,0,9,4,1.") == parser.Endpoint("10.0.0.9", 1025)
    assert parser.parse_pasv("Entering Passive Mode (300,0,0,9,4,1)") is None
    assert parser.parse_epsv("Entering Extended Passive Mode (|||6446|)") == parser.Endpoint("::", 6446)
    assert parser.parse_port("10,0,0,5,195,80") == parser.Endpoint("10.0.0.5", 50000)
    assert parser.parse_eprt("|2|2001:db8::1|5282|") == parser.Endpoint("2001:db8::1", 5282)
    assert parser.parse_eprt("|1|2001:db8::1|5282|") is None  # af 1 with an IPv6 address
    assert parser.parse_eprt("|1|132.235.1.2|99999|") is None


def test_paths_and_urls_as_zeek_builds_them() -> None:
    assert parser.file_url(SERVER, ".", "a.txt") == "ftp://10.0.0.9/./a.txt"
    assert parser.file_url(SERVER, "/", "a.txt") == "ftp://10.0.0.9/a.txt"
    assert parser.file_url(SERVER, "/pub", "/etc/passwd") == "ftp://10.0.0.9/etc/passwd"
    assert parser.file_url("2001:db8::1", "/pub/x/..", "a") == "ftp://[2001:db8::1]/pub/a"
    assert parser.extract_path('"/home/alice" is the current directory') == "/home/alice"
    assert parser.change_directory("/pub", "CDUP", "", "") == "/"


def test_a_reply_answers_the_command_it_fits() -> None:
    pending: list[tuple[str, str | None]] = [("<init>", ""), ("USER", "bob")]
    assert parser.best_pending(pending, 331, "Please specify the password.") == 1
    assert parser.best_pending(pending, 220, "Welcome") == 0
    assert parser.best_pending([("TYPE", "I"), ("PASV", "")], 227, "Entering Passive Mode") == 1


# -- control session ----------------------------------------------------------------------------------------


def test_failed_logons_make_one_session_row_without_the_password() -> None:
    guess = [
        BANNER,
        *_logon(answer=b"530 Login incorrect.\r\n"),
        (True, b"QUIT\r\n"),
        (False, b"221 Goodbye.\r\n"),
    ]
    (rec,), errors, _ = _run(guess)
    assert errors == Counter()
    assert (rec.command, rec.user, rec.reply_code, rec.reply_msg) == ("QUIT", "alice", 221, "Goodbye.")
    assert rec.password_seen and rec.logon_success is False and rec.failed_logons_count == 1
    assert "s3cret" not in str(rec)


def test_passive_upload_counts_the_data_connection_bytes() -> None:
    expected = ExpectedConnections()
    dialogue = [
        BANNER,
        *_logon(),
        (True, b"PWD\r\n"),
        (False, b'257 "/incoming" is the current directory\r\n'),
        (True, b"PASV\r\n"),
        (False, b"227 Entering Passive Mode (10,0,0,9,195,81).\r\n"),
        (True, b"STOR loot.html\r\n"),
        (False, b"150 Ok to send data.\r\n"),
    ]
    out: list[sensor_pb2.Record] = []
    session = FtpSessionFactory(expected)(CTX, out.append, lambda p, r: None)
    for i, (is_orig, data) in enumerate(dialogue):
        session.data(is_orig, 1.0 + i, data)
    # The client's connection to the announced port gets the ftp-data analyzer, which counts its bytes.
    analyzer = expected.claim("tcp", CLIENT, SERVER, 50001, 20.0)
    assert analyzer is not None and analyzer.name == "ftp-data"
    data_session = analyzer.factory(
        ConnContext("Cdata", CLIENT, 50002, SERVER, 50001, "tcp"), out.append, print
    )
    data_session.data(True, 20.0, b"x" * 1000)
    data_session.data(True, 20.1, b"y" * 234)
    session.data(False, 21.0, b"226 Transfer complete.\r\n")
    session.data(True, 22.0, b"QUIT\r\n")
    session.finish(23.0)
    pasv, stor = (r.ftp for r in out if r.WhichOneof("kind") == "ftp")
    assert pasv.command == "PASV" and pasv.data_channel.passive and pasv.data_channel.resp_port == 50001
    assert ipaddress.ip_address(pasv.data_channel.orig_ip) == ipaddress.ip_address(CLIENT)
    assert (stor.command, stor.arg, stor.upload, stor.data_bytes) == (
        "STOR", "ftp://10.0.0.9/incoming/loot.html", True, 1234
    )  # fmt: skip
    assert stor.reply_code == 226 and stor.logon_success is True and not stor.HasField("data_channel")


def test_active_mode_announces_the_servers_connection_to_the_client() -> None:
    expected = ExpectedConnections()
    _run([BANNER, *_logon(), (True, b"PORT 10,0,0,5,195,90\r\n"), (False, b"200 PORT ok\r\n")], expected)
    assert expected.claim("tcp", SERVER, CLIENT, 50010, 5.0) is not None
    assert expected.claim("tcp", CLIENT, SERVER, 50010, 5.0) is None


def test_retr_takes_the_size_from_the_150_answer() -> None:
    dialogue = [
        BANNER,
        *_logon("anonymous"),
        (True, b"EPSV\r\n"),
        (False, b"229 Entering Extended Passive Mode (|||40000|)\r\n"),
        (True, b"RETR big.iso\r\n"),
        (False, b"150 Opening BINARY mode data connection for big.iso (4700000000 bytes).\r\n"),
        (False, b"226 Transfer complete.\r\n"),
        (True, b"QUIT\r\n"),
    ]
    epsv, retr = _run(dialogue)[0]
    assert epsv.data_channel.resp_port == 40000
    assert ipaddress.ip_address(epsv.data_channel.resp_ip) == ipaddress.ip_address(SERVER)
    assert retr.file_size == 4_700_000_000 and not retr.upload and retr.data_bytes == 0


def test_multi_line_replies_and_auth_tls() -> None:
    greeting = (False, b"220-Welcome\r\n220-second line\r\n220 ready\r\n")
    feat = [(True, b"FEAT\r\n"), (False, b"211-Features:\r\n EPSV\r\n MDTM\r\n211 End\r\n")]
    tls = [
        (True, b"AUTH TLS\r\n"),
        (False, b"234 Proceed with negotiation.\r\n"),
        (True, b"\x16\x03\x01\x00\x05hello"),
    ]
    recs, errors, session = _run([greeting, *feat, *tls, (True, b"USER after-tls\r\n")])
    assert errors == Counter() and session.inner_services == ("ssl",)
    assert recs == []  # no user was named in clear


# -- real captures -----------------------------------------------------------------------------------------


def _tshark(pcap: Path, display_filter: str, *fields: str) -> list[list[str]]:
    # Without sequence analysis tshark dissects every segment: frame 298 of the Agent Tesla capture holds
    # the only copy of a 230 answer (its first transmission was not captured), which tshark otherwise
    # labels a retransmission and leaves undissected.
    args = ["tshark", "-n", "-o", "tcp.analyze_sequence_numbers:FALSE", "-r", str(pcap), "-Y", display_filter]
    args += ["-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def test_agent_tesla_upload_over_ftp() -> None:
    """Agent Tesla logs on (USER/PASS, 230), asks for passive mode and STORs an HTML file of stolen
    credentials on the announced port; two more sessions log on again."""
    records, errors = capture_records(AGENT_TESLA_FTP)
    assert not [k for k in errors if k[0].startswith("ftp")]
    rows = [r.ftp for r in records if r.WhichOneof("kind") == "ftp"]
    stor = next(r for r in rows if r.command == "STOR")
    assert stor.upload and stor.user == "husband@elquijotebanquetes.com" and stor.logon_success is True
    assert stor.arg == "ftp://143.95.79.226/PW_admin-USER-PC_2024_03_07_19_00_36.html"
    assert (stor.reply_code, stor.data_bytes) == (226, 533)
    pasv = next(r for r in rows if r.command == "PASV")
    assert pasv.data_channel.passive and pasv.data_channel.resp_port == 44523
    flows = [r.flow for r in records if r.WhichOneof("kind") == "flow"]
    (data_flow,) = [f for f in flows if "ftp-data" in f.service]
    assert data_flow.resp.port == 44523 and data_flow.orig_bytes == 533
    # One row per session without a logged command (its last command), the PASV and STOR of the first.
    outcome = {r.command: r.logon_success if r.HasField("logon_success") else None for r in rows}
    assert len(rows) == 4
    assert outcome == {"PASV": True, "STOR": True, "PASS": None, "OPTS": True}  # the 2nd PASS got no answer
    if shutil.which("tshark") is None:
        return
    users = {u for (u,) in _tshark(AGENT_TESLA_FTP, 'ftp.request.command == "USER"', "ftp.request.arg")}
    assert {r.user for r in rows} == users
    assert len(_tshark(AGENT_TESLA_FTP, "ftp.response.code == 230", "tcp.stream")) == 2
    ((ip, port),) = _tshark(AGENT_TESLA_FTP, "ftp.response.code == 227", "ftp.passive.ip", "ftp.passive.port")
    assert ipaddress.ip_address(pasv.data_channel.resp_ip) == ipaddress.ip_address(ip)
    assert pasv.data_channel.resp_port == int(port)
    stored = _tshark(AGENT_TESLA_FTP, f"ftp-data && tcp.dstport == {port}", "tcp.len")
    assert stor.data_bytes == sum(int(n) for (n,) in stored)
    zeek = zeek_logs(records)["ftp"]
    assert {row["command"] for row in zeek} == {"PASV", "STOR", "PASS", "OPTS"}
    assert all(row["password"] == "<hidden>" for row in zeek)


def test_retr_sizes_match_the_data_connections_and_tshark() -> None:
    records, errors = capture_records(PE_DOWNLOADS)
    assert not [k for k in errors if k[0].startswith("ftp")]
    retrs = [r.ftp for r in records if r.WhichOneof("kind") == "ftp" and r.ftp.command == "RETR"]
    assert [r.data_bytes for r in retrs] == [r.file_size for r in retrs] and len(retrs) == 4
    data_flows = [r.flow for r in records if r.WhichOneof("kind") == "flow" and "ftp-data" in r.flow.service]
    assert len(data_flows) == 5  # the LIST's and the four RETRs'
    if shutil.which("tshark") is None:
        return
    sizes = _tshark(
        PE_DOWNLOADS, 'ftp.response.code == 150 && ftp.response.arg contains "bytes"', "ftp.response.arg"
    )
    assert [r.file_size for r in retrs] == [parser.last_count(arg) for (arg,) in sizes]


def test_data_connection_in_a_later_block_is_claimed_too() -> None:
    """The announcement and the data connection's SYN in separate blocks (the claim at creation) as in
    one block (the claim when the block's packets reach the analyzers)."""
    control = TcpConv(client=CLIENT, server=SERVER, cport=50000, sport=21)
    control.handshake()
    pasv = [(True, b"PASV\r\n"), (False, b"227 Entering Passive Mode (10,0,0,9,195,81)\r\n")]
    for is_orig, data in [BANNER, *_logon(), *pasv, (True, b"STOR f\r\n"), (False, b"150 go\r\n")]:
        control.pkt(is_orig, "PA", data)
    transfer = TcpConv(client=CLIENT, server=SERVER, cport=50002, sport=50001, ts=control.ts + 0.01)
    transfer.handshake()
    transfer.pkt(True, "PA", b"z" * 777)
    transfer.close()
    control.ts = transfer.ts
    control.pkt(False, "PA", b"226 done\r\n")
    control.pkt(True, "PA", b"QUIT\r\n")
    control.close()
    frames = sorted(control.frames + transfer.frames)
    cut = len(control.frames) - 5  # the PASV answer and the transfer's SYN fall on either side
    for blocks in ([frames], [frames[:cut], frames[cut:]]):
        pipe = SensorPipeline(
            SensorConfig(), default_registry(), metrics_registry=CollectorRegistry(), seed=1
        )
        records = [rec for block in blocks for rec in pipe.feed(PacketBlock.from_packets(block))]
        records += pipe.flush()
        (stor,) = [r.ftp for r in records if r.WhichOneof("kind") == "ftp" and r.ftp.command == "STOR"]
        assert stor.data_bytes == 777
        (data_flow,) = [
            r.flow for r in records if r.WhichOneof("kind") == "flow" and r.flow.resp.port == 50001
        ]
        assert list(data_flow.service) == ["ftp-data"]


# -- hostile input -----------------------------------------------------------------------------------------


def test_garbage_binary_junk_and_replies_without_commands_are_counted() -> None:
    junk = (bytes(range(256)) + b"\r\n") * 20
    recs, errors, session = _run(
        [(False, b"230 nobody asked\r\n"), (True, b"\x00\xffjunk\r\n" * 20), (False, junk)]
    )
    assert recs == []
    assert errors["bad_command"] == 8 and errors["bad_reply"] == 8 and errors["not_ftp"] == 2
    assert session.done
    _, errors, _ = _run([(False, b"200 one\r\n")])
    assert errors == Counter()  # the first reply answers the greeting shim, as Zeek's <init>


def test_a_megabyte_line_and_a_flood_of_commands_stay_bounded() -> None:
    flood = [(True, b"A" * 65536) for _ in range(16)]
    commands = (True, b"".join(f"DELE f{i}\r\n".encode() for i in range(100)))
    recs, errors, _ = _run([BANNER, *flood, (True, b"\r\n"), *_logon(), commands])
    # The answered PASS leaves the table when the first DELE comes; 20 DELEs fit, 80 are refused.
    assert errors["line_too_long"] == 1 and errors["too_many_pending_commands"] == 80
    assert len(recs) == 20  # what the pending table held, each written when the connection ended


def test_a_flood_of_pasv_answers_keeps_the_expected_table_bounded() -> None:
    expected = ExpectedConnections(max_entries=64)
    answers = b"".join(
        f"227 Entering Passive Mode (10,0,0,{i % 250},4,{i % 250})\r\n".encode() for i in range(500)
    )
    _run([BANNER, *_logon(), (True, b"PASV\r\n" * 5), (False, answers)], expected)
    assert len(expected) <= 64


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=200)), max_size=8))
def test_session_never_raises(chunks: list[tuple[bool, bytes]]) -> None:
    _, errors, _ = _run([BANNER, *_logon(), *chunks])
    assert errors["internal_error"] == 0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parsers_never_raise(text: str) -> None:
    for fn in (
        parser.parse_pasv,
        parser.parse_epsv,
        parser.parse_port,
        parser.parse_eprt,
        parser.extract_path,
    ):
        fn(text)
    parser.last_count(text)
    parser.file_url(SERVER, text, text)
    parser.best_pending([("USER", text), ("PASS", None)], 230, text)
