"""DCE-RPC: the PDU parser on built and real PDUs, calls on wild captures counted by tshark, fuzzing."""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.logwriter import zeek_logs
from sensor.protocols.base import ConnContext, ParseError
from sensor.protocols.dce_rpc import heuristic, names, parser
from sensor.protocols.dce_rpc.session import DceRpcSession, PipeCalls
from tests.conftest import CORPUS
from tests.sensor.records import ParseErrors, capture_records
from vigil.sensor.v1 import sensor_pb2

WILD = CORPUS / "wild"
SVCCTL = "367abb81-9844-35f1-ad32-98f038001003"
NDR = "8a885d04-1ceb-11c9-9fe8-08002b104860"


def _uuid_le(text: str) -> bytes:
    import uuid

    return uuid.UUID(text).bytes_le


def _header(
    ptype: int, body: bytes, call_id: int, flags: int = 3, auth: bytes = b"", big: bool = False
) -> bytes:
    frag = 16 + len(body) + len(auth)
    drep = b"\x00\x00\x00\x00" if big else b"\x10\x00\x00\x00"
    end = ">" if big else "<"
    auth_len = len(auth) - 8 if auth else 0
    return (
        bytes([5, 0, ptype, flags]) + drep + struct.pack(end + "HHI", frag, auth_len, call_id) + body + auth
    )


def bind(call_id: int, contexts: list[tuple[int, str]]) -> bytes:
    body = struct.pack("<HHI", 4280, 4280, 0) + bytes([len(contexts), 0, 0, 0])
    for ctx_id, iface in contexts:
        body += struct.pack("<HBB", ctx_id, 1, 0) + _uuid_le(iface) + struct.pack("<HH", 2, 0)
        body += _uuid_le(NDR) + struct.pack("<I", 2)
    return _header(parser.BIND, body, call_id)


def bind_ack(call_id: int, sec_addr: bytes, results: int) -> bytes:
    body = struct.pack("<HHI", 4280, 4280, 0x1234) + struct.pack("<H", len(sec_addr)) + sec_addr
    body += b"\x00" * (-(16 + len(body)) % 4)
    body += (
        bytes([results, 0, 0, 0])
        + (struct.pack("<HH", 0, 0) + _uuid_le(NDR) + struct.pack("<I", 2)) * results
    )
    return _header(parser.BIND_ACK, body, call_id)


def request(call_id: int, ctx_id: int, opnum: int, stub: bytes = b"\x00" * 8, big: bool = False) -> bytes:
    end = ">" if big else "<"
    return _header(
        parser.REQUEST, struct.pack(end + "IHH", len(stub), ctx_id, opnum) + stub, call_id, big=big
    )


def response(call_id: int, ctx_id: int, stub: bytes = b"\x00" * 8) -> bytes:
    return _header(parser.RESPONSE, struct.pack("<IHBB", len(stub), ctx_id, 0, 0) + stub, call_id)


def fault(call_id: int, status: int) -> bytes:
    return _header(parser.FAULT, struct.pack("<IHBBI", 0, 0, 0, 0, status) + b"\x00" * 4, call_id)


CTX = ConnContext("Ctest", "10.0.0.1", 50000, "10.0.0.2", 49668, "tcp")


def _session() -> tuple[DceRpcSession, list[sensor_pb2.Record], Counter[tuple[str, str]]]:
    out: list[sensor_pb2.Record] = []
    errors: Counter[tuple[str, str]] = Counter()
    session = DceRpcSession(CTX, out.append, lambda p, r: errors.update([(p, r)]))
    return session, out, errors


# -- parser ----------------------------------------------------------------------------------------


def test_bind_names_each_context_and_its_interface() -> None:
    pdu = parser.parse_pdu(bind(2, [(0, SVCCTL), (1, "e3514235-4b06-11d1-ab04-00c04fc2dcd2")]))
    assert isinstance(pdu.body, parser.Bind)
    assert [(c.context_id, c.interface, c.version_major) for c in pdu.body.contexts] == [
        (0, SVCCTL, 2),
        (1, "e3514235-4b06-11d1-ab04-00c04fc2dcd2", 2),
    ]


def test_bind_ack_secondary_address_loses_its_nul() -> None:
    pdu = parser.parse_pdu(bind_ack(2, b"\\PIPE\\svcctl\x00", 1))
    assert isinstance(pdu.body, parser.BindAck)
    assert pdu.body.sec_addr == "\\PIPE\\svcctl"
    assert pdu.body.results == (0,)


def test_big_endian_request_reads_the_same_call() -> None:
    pdu = parser.parse_pdu(request(7, 1, 12, big=True))
    assert pdu.header.call_id == 7 and not pdu.header.little_endian
    assert isinstance(pdu.body, parser.Request) and (pdu.body.context_id, pdu.body.opnum) == (1, 12)


def test_object_uuid_of_a_dcom_call_is_read_and_the_context_kept() -> None:
    ipid = "00007c04-09b0-ffff-3c6a-d1b5d8f3e8b2"
    body = struct.pack("<IHH", 8, 4, 24) + _uuid_le(ipid) + b"\x00" * 8
    pdu = parser.parse_pdu(_header(parser.REQUEST, body, 8, flags=0x83))
    assert isinstance(pdu.body, parser.Request)
    assert (pdu.body.context_id, pdu.body.opnum, pdu.body.object_uuid) == (4, 24, ipid)


def test_auth_verifier_is_the_tail_of_the_pdu() -> None:
    token = b"NTLMSSP\x00" + b"\x01\x00\x00\x00" + b"\x00" * 20
    trailer = bytes([parser.AUTHN_WINNT, 2, 0, 0]) + struct.pack("<I", 0) + token
    body = struct.pack("<HHI", 4280, 4280, 0) + b"\x00\x00\x00\x00"
    pdu = parser.parse_pdu(_header(parser.BIND, body, 1, auth=trailer))
    assert pdu.auth is not None and pdu.auth.auth_type == parser.AUTHN_WINNT and pdu.auth.token == token


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x05\x00\x00\x03\x10\x00\x00\x00", "truncated_header"),
        (b"\x04\x00\x00\x03\x10\x00\x00\x00\x18\x00\x00\x00\x01\x00\x00\x00", "bad_version"),
        (b"\x05\x00\x01\x03\x10\x00\x00\x00\x18\x00\x00\x00\x01\x00\x00\x00", "bad_ptype"),
        (b"\x05\x00\x00\x03\x10\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00", "bad_frag_length"),
        (b"\x05\x00\x00\x03\x10\x00\x00\x00\x18\x00\x10\x00\x01\x00\x00\x00", "bad_auth_length"),
    ],
)
def test_malformed_headers_are_named(raw: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as err:
        parser.parse_pdu(raw)
    assert err.value.reason == reason


def test_heuristic_takes_binds_from_the_client_and_answers_from_either_side() -> None:
    assert heuristic(bind(1, [(0, SVCCTL)]), True)
    assert not heuristic(bind(1, [(0, SVCCTL)]), False)
    assert heuristic(bind_ack(1, b"135\x00", 1), False)
    assert heuristic(response(1, 0), True)
    assert not heuristic(request(1, 0, 0), True)  # a request alone proves no conversation
    assert not heuristic(b"\x05\x00\x0b\x03" + b"\xff" * 12, True)


def test_names_follow_the_specifications_and_zeeks_unknowns() -> None:
    assert names.operation_name(SVCCTL, 12) == "CreateServiceW"
    assert names.operation_name("e3514235-4b06-11d1-ab04-00c04fc2dcd2", 3) == "DRSGetNCChanges"
    assert names.operation_name("12345678-1234-abcd-ef00-0123456789ab", 65) == (
        "RpcRemoteFindFirstPrinterChangeNotificationEx"
    )
    assert names.endpoint_name("c681d488-d850-11d0-8c52-00c04fd90f7e") == "efsrpc"
    assert names.operation_name("c681d488-d850-11d0-8c52-00c04fd90f7e", 0) == "EfsRpcOpenFileRaw"
    assert names.operation_name("9556dc99-828c-11cf-a37e-00aa003240c7", 24) == "ExecMethod"
    assert (
        names.endpoint_name("01234567-89ab-cdef-0123-456789abcdef")
        == "unknown-01234567-89ab-cdef-0123-456789abcdef"
    )
    assert names.operation_name(SVCCTL, 999) == "unknown-999"
    assert names.pipe_interface("\\PIPE\\srvsvc") == "4b324fc8-1670-01d3-1278-5a47bf6ee188"


# -- calls -----------------------------------------------------------------------------------------


def test_a_call_is_one_record_with_its_round_trip_and_binds_are_none() -> None:
    session, out, errors = _session()
    session.data(True, 1.0, bind(1, [(0, "12345678-1234-abcd-ef00-0123456789ab"), (1, SVCCTL)]))
    session.data(False, 1.1, bind_ack(1, b"49668\x00", 2))
    stream = request(2, 1, 15) + request(3, 1, 12)
    session.data(True, 2.0, stream[:30])  # a PDU split across segments
    session.data(True, 2.5, stream[30:])
    session.data(False, 3.0, response(3, 1))
    session.data(False, 3.25, fault(2, 5))
    session.finish(4.0)
    recs = [r.dce_rpc for r in out]
    assert [(r.endpoint, r.operation, r.named_pipe, r.rtt.ToNanoseconds()) for r in recs] == [
        ("svcctl", "CreateServiceW", "49668", 500_000_000),
        # Timed from the request's last byte (2.5), not its first segment (2.0).
        ("svcctl", "OpenSCManagerW", "49668", 750_000_000),
    ]
    assert recs[1].fault_status == 5 and not recs[0].HasField("fault_status")
    assert not errors


def test_an_unanswered_request_is_written_without_rtt_at_the_end() -> None:
    session, out, _errors = _session()
    session.data(True, 1.0, bind(1, [(0, SVCCTL)]))
    session.data(True, 2.0, request(2, 0, 19))
    session.finish(3.0)
    assert [(r.dce_rpc.operation, r.dce_rpc.HasField("rtt")) for r in out] == [("StartServiceW", False)]


def test_an_answer_delivered_before_its_request_still_pairs() -> None:
    session, out, _errors = _session()
    session.data(True, 1.0, bind(1, [(0, SVCCTL)]))
    session.data(False, 2.5, response(2, 0))
    session.data(True, 2.0, request(2, 0, 19))
    assert [(r.dce_rpc.operation, r.dce_rpc.rtt.ToNanoseconds()) for r in out] == [
        ("StartServiceW", 500_000_000)
    ]


def test_calls_on_an_unbound_context_are_counted_not_named() -> None:
    session, out, errors = _session()
    session.data(True, 1.0, request(2, 0, 19) + response(2, 0))
    session.finish(2.0)
    assert out == [] and errors[("dce_rpc", "unknown_context")] == 1


def test_a_pipe_whose_bind_was_missed_is_named_by_its_pipe() -> None:
    out: list[sensor_pb2.Record] = []
    pipes = PipeCalls(CTX, out.append, lambda p, r: None)
    pipes.opened(b"F1", "svcctl")
    pipes.client_data(b"F1", 1.0, request(5, 0, 15))
    pipes.server_data(b"F1", 1.5, response(5, 0))
    assert [
        (r.dce_rpc.endpoint, r.dce_rpc.operation, r.dce_rpc.named_pipe, r.dce_rpc.transport) for r in out
    ] == [("svcctl", "OpenSCManagerW", "svcctl", "smb")]


def test_zeek_rows_leave_out_zeeks_ignored_operations() -> None:
    session, out, _errors = _session()
    winreg = "338cd001-2244-31f1-aaaa-900038001003"
    session.data(True, 1.0, bind(1, [(0, winreg)]))
    session.data(True, 2.0, request(2, 0, 4) + request(3, 0, 5))  # OpenUsers, BaseRegCloseKey
    session.data(False, 3.0, response(2, 0) + response(3, 0))
    assert [r.dce_rpc.operation for r in out] == ["OpenUsers", "BaseRegCloseKey"]
    assert [row["operation"] for row in zeek_logs(out)["dce_rpc"]] == ["OpenUsers"]


# -- wild captures: calls per interface and opnum against tshark -----------------------------------
# Expected counts come from
#   tshark -n -r CAPTURE -Y "dcerpc.pkt_type == 0 && dcerpc.cn_flags.last_frag == 1" \
#          -T fields -e _ws.col.Protocol -e dcerpc.opnum | sort | uniq -c
# (one row per complete request), with tshark's protocol names mapped to dce_rpc.log endpoints
# (EPM -> epmapper, ISystemActivator -> IRemoteSCMActivator, RPC_NETLOGON -> netlogon, EFS -> efsrpc).
# tshark names no WMI interface ("DCERPC"); those come from
#   tshark ... -e dcerpc.cn_ctx_id -e dcerpc.opnum -e dcerpc.cn_bind_to_uuid
# (the alter_context that bound each context id, 9556dc99 IWbemServices on 4, f309ad18 IWbemLevel1Login on
# 3, d4781cd6 IWbemLoginClientID on 2). Requests on connections whose bind precedes the capture are
# unnamed by tshark as well ("DCERPC") and have no record here; they are left out of the counts.
# Checksums are not verified, as tshark does not.

WILD_CALLS: dict[str, tuple[str, dict[tuple[str, int], int]]] = {
    "sbousseaden__PCAP-ATTACK/LM_psexec_smb_dcerpc_epm_svcctl.pcapng": (
        "tcp",
        {
            ("epmapper", 3): 1,
            ("svcctl", 0): 3,
            ("svcctl", 6): 2,
            ("svcctl", 15): 1,
            ("svcctl", 16): 1,
            ("svcctl", 19): 1,
            ("svcctl", 45): 1,
        },
    ),
    "sbousseaden__PCAP-ATTACK/DCShadow_add_primarygroupid_512_to_std_account.pcapng": (
        "tcp",
        {
            ("drsuapi", 0): 2,
            ("drsuapi", 1): 2,
            ("drsuapi", 5): 1,
            ("drsuapi", 6): 1,
            ("epmapper", 3): 3,
            ("netlogon", 45): 1,
        },
    ),
    "OTRF__Security-Datasets/covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges_2020-08-05020926.cap": (
        "tcp",
        {
            ("drsuapi", 0): 2,
            ("drsuapi", 1): 1,
            ("drsuapi", 3): 1,
            ("drsuapi", 12): 1,
            ("drsuapi", 16): 1,
            ("epmapper", 3): 1,
        },
    ),
    "sbousseaden__PCAP-ATTACK/Discovery_dcerp_srvsvc_NetShareEnum.pcapng": (
        "smb",
        {("srvsvc", 15): 1, ("srvsvc", 21): 1},
    ),
    "sbousseaden__PCAP-ATTACK/Discovery_PsLoggedOn_remotelocalusers_enum_winreg_lsarpc_dcerpc_smb.pcapng": (
        "smb",
        {
            ("lsarpc", 0): 2,
            ("lsarpc", 44): 2,
            ("lsarpc", 57): 2,
            ("winreg", 4): 1,
            ("winreg", 5): 1,
            ("winreg", 9): 9,
            ("winreg", 15): 2,
            ("winreg", 26): 2,
        },
    ),
    "sbousseaden__PCAP-ATTACK/CA_LM_SpoolSample_SMB_BiAuth.pcapng": (
        "smb",
        {("spoolss", 1): 1, ("spoolss", 29): 1, ("spoolss", 65): 1},
    ),
    "corelight__PetitPotam/UnPatchedDCOpenFileRaw.pcapng": (
        "",
        {("efsrpc", 0): 1, ("drsuapi", 1): 2, ("drsuapi", 3): 1},
    ),
    "sbousseaden__PCAP-ATTACK/LM_WMI_ProcessCallCreate.pcapng": (
        "tcp",
        {
            ("IRemoteSCMActivator", 4): 1,
            ("IRemUnknown2", 3): 1,
            ("IRemUnknown2", 5): 2,
            ("IWbemLoginClientID", 3): 1,
            ("IWbemLevel1Login", 3): 1,
            ("IWbemLevel1Login", 6): 1,
            ("IWbemServices", 6): 1,
            ("IWbemServices", 24): 1,
        },
    ),
}


def _wild_records(name: str) -> tuple[list[sensor_pb2.Record], ParseErrors]:
    return capture_records(WILD / name)


@pytest.mark.parametrize("name", sorted(WILD_CALLS))
def test_wild_calls_match_tshark(name: str) -> None:
    transport, expected = WILD_CALLS[name]
    records, _errors = _wild_records(name)
    calls = [r.dce_rpc for r in records if r.WhichOneof("kind") == "dce_rpc"]
    assert Counter((c.endpoint, c.opnum) for c in calls) == Counter(expected)
    if transport:
        assert {c.transport for c in calls} == {transport}


def test_wild_named_operations_of_the_attacks() -> None:
    seen = set()
    for name in (
        "corelight__PetitPotam/UnPatchedDCOpenFileRaw.pcapng",
        "sbousseaden__PCAP-ATTACK/CA_LM_SpoolSample_SMB_BiAuth.pcapng",
        "OTRF__Security-Datasets/covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges_2020-08-05020926.cap",
        "sbousseaden__PCAP-ATTACK/LM_WMI_ProcessCallCreate.pcapng",
    ):
        records, _ = _wild_records(name)
        seen |= {
            (r.dce_rpc.endpoint, r.dce_rpc.operation) for r in records if r.WhichOneof("kind") == "dce_rpc"
        }
    assert {
        ("efsrpc", "EfsRpcOpenFileRaw"),
        ("spoolss", "RpcRemoteFindFirstPrinterChangeNotificationEx"),
        ("spoolss", "RpcOpenPrinter"),
        ("drsuapi", "DRSGetNCChanges"),
        ("IWbemServices", "ExecMethod"),
    } <= seen


def test_wild_psloggedon_zeek_rows_drop_routine_registry_calls() -> None:
    records, _ = _wild_records(
        "sbousseaden__PCAP-ATTACK/Discovery_PsLoggedOn_remotelocalusers_enum_winreg_lsarpc_dcerpc_smb.pcapng"
    )
    rows = zeek_logs(records)["dce_rpc"]
    # 21 calls; BaseRegEnumKey x9, BaseRegCloseKey, BaseRegGetVersion x2 and BaseRegOpenKey x2 are
    # operations Zeek does not log by default.
    assert Counter(r["operation"] for r in rows) == Counter(
        {"OpenUsers": 1, "LsarOpenPolicy2": 2, "LsarLookupSids2": 2, "LsarClose": 2}
    )
    assert {r["named_pipe"] for r in rows} == {"\\PIPE\\winreg", "\\pipe\\lsass"}


def test_wild_smb3_encrypted_pipes_are_counted_not_guessed() -> None:
    # tshark -r python.exe_crackmapexec_users.pcapng -Y "smb2.protocol_id==0xfd534d42" counts 143
    # encrypted frames on two SMB connections (41082, 41084): the SAMR calls are inside. The only calls
    # in clear are the DC's two NetrLogonSamLogonEx over TCP (the request count command above:
    # "2 RPC_NETLOGON 39").
    records, errors = _wild_records("studylab1__SAMR-Enum-Lab/python.exe_crackmapexec_users.pcapng")
    calls = [r.dce_rpc for r in records if r.WhichOneof("kind") == "dce_rpc"]
    assert [(c.transport, c.endpoint, c.operation) for c in calls] == [
        ("tcp", "netlogon", "NetrLogonSamLogonEx")
    ] * 2
    assert errors.get(("smb", "encrypted_session")) == 2


def test_wild_samr_after_a_capture_gap() -> None:
    # The capture starts mid-session with holes: the SMB analyzer resynchronises on the next header.
    # tshark ... (as above) counts 21 SAMR requests: 1 x6, 17 x2, 18, 19 x2, 20, 25, 5 x2, 6 x2, 64 x2, 7 x2.
    records, _ = _wild_records(
        "sbousseaden__PCAP-ATTACK/Discovery_privgroups_domain_admins_samr_lookupnames_req.pcapng"
    )
    calls = Counter(
        (r.dce_rpc.endpoint, r.dce_rpc.opnum) for r in records if r.WhichOneof("kind") == "dce_rpc"
    )
    assert sum(calls.values()) == 21


# -- fuzzing -----------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_parser_raises_only_parse_error(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parser.parse_pdu(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=120)), max_size=12))
def test_session_never_raises_on_arbitrary_streams(chunks: list[tuple[bool, bytes]]) -> None:
    session, _out, errors = _session()
    pipes = PipeCalls(CTX, lambda r: None, lambda p, r: errors.update([(p, r)]))
    for i, (is_orig, chunk) in enumerate(chunks):
        session.data(is_orig, float(i), b"\x05\x00" + chunk if i == 0 else chunk)
        pipes.client_data(b"F", float(i), chunk) if is_orig else pipes.server_data(b"F", float(i), chunk, 7)
        if i % 5 == 4:
            session.gap(is_orig, float(i), len(chunk))
    session.finish(99.0)
    pipes.finish()
    assert ("dce_rpc", "internal_error") not in errors


def _real_pdus() -> list[bytes]:
    """Client and server payloads of a real DCE-RPC/TCP association (bind_ack, alter_context, calls)."""
    if shutil.which("tshark") is None:
        return []
    cap = CORPUS / "reference/zeek/dce-rpc/cs_window7-join_stream092.pcap"
    if not cap.exists():
        return []
    out = subprocess.run(
        ["tshark", "-n", "-r", str(cap), "-Y", "dcerpc", "-T", "fields", "-e", "tcp.payload"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    payloads = [bytes.fromhex(line.replace(":", "")) for line in out.split() if line]
    # One PDU per segment in this capture; keep those (tshark also lists Kerberos-only segments).
    return [p for p in payloads if parser.looks_like_pdu(p) and parser.parse_header(p).frag_length == len(p)]


REAL = _real_pdus()


@pytest.mark.skipif(not REAL, reason="needs tshark and the reference corpus")
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_truncated_and_corrupted_real_pdus_never_escape(data: st.DataObject) -> None:
    pdu = data.draw(st.sampled_from(REAL))
    cut = data.draw(st.integers(0, len(pdu)))
    flip = data.draw(st.integers(0, max(0, len(pdu) - 1)))
    mangled = bytearray(pdu[:cut])
    if mangled and flip < len(mangled):
        mangled[flip] ^= data.draw(st.integers(1, 255))
    with contextlib.suppress(ParseError):
        parser.parse_pdu(bytes(mangled))
    session, _out, errors = _session()
    for raw in REAL[:3]:
        session.data(raw[2] in (parser.BIND, parser.ALTER_CONTEXT, parser.REQUEST), 1.0, raw)
    session.data(True, 2.0, bytes(mangled))
    session.finish(3.0)
    assert ("dce_rpc", "internal_error") not in errors


def test_real_association_parses_whole() -> None:
    if not REAL:
        pytest.skip("needs tshark and the reference corpus")
    kinds = [parser.parse_pdu(raw).header.ptype for raw in REAL]
    # The bind (frame 6) spans two segments and is not among these single-segment PDUs.
    assert kinds[:3] == [parser.BIND_ACK, parser.ALTER_CONTEXT, parser.ALTER_CONTEXT_RESP]
    assert {parser.REQUEST, parser.RESPONSE} <= set(kinds)
    ack = parser.parse_pdu(REAL[0]).body
    assert isinstance(ack, parser.BindAck) and ack.sec_addr == "\\PIPE\\drsuapi"


# -- SAMR relative ids -----------------------------------------------------------------------------

SAMR = "12345778-1234-abcd-ef00-0123456789ac"
GROUP_HANDLE = b"\x00" * 4 + bytes(range(1, 17))


def _open_group(rid: int, access: int = 1) -> bytes:
    return b"\x00" * 4 + bytes(range(100, 116)) + struct.pack("<II", access, rid)


def test_a_samr_call_on_an_opened_handle_names_the_group_it_was_opened_for() -> None:
    session, out, errors = _session()
    session.data(True, 1.0, bind(1, [(0, SAMR)]))
    session.data(True, 2.0, request(2, 0, 19, _open_group(512)))  # SamrOpenGroup(Domain Admins)
    session.data(False, 2.1, response(2, 0, GROUP_HANDLE + struct.pack("<I", 0)))
    session.data(True, 3.0, request(3, 0, 25, GROUP_HANDLE))  # SamrGetMembersInGroup(handle)
    session.data(False, 3.1, response(3, 0))
    session.data(True, 4.0, request(4, 0, 25, b"\x00" * 4 + bytes(range(50, 66))))  # unknown handle
    session.finish(5.0)
    calls = [(r.dce_rpc.operation, r.dce_rpc.rid if r.dce_rpc.HasField("rid") else None) for r in out]
    assert calls == [("SamrOpenGroup", 512), ("SamrGetMembersInGroup", 512), ("SamrGetMembersInGroup", None)]
    assert not errors


def test_a_refused_open_or_a_sealed_stub_names_nothing() -> None:
    session, out, _errors = _session()
    session.data(True, 1.0, bind(1, [(0, SAMR)]))
    session.data(True, 2.0, request(2, 0, 19, _open_group(512)))
    session.data(False, 2.1, response(2, 0, GROUP_HANDLE + struct.pack("<I", 0xC0000022)))  # access denied
    session.data(True, 3.0, request(3, 0, 25, GROUP_HANDLE))
    # A request with an auth verifier: its stub may be ciphertext, so no argument is read from it.
    sealed = _header(
        parser.REQUEST,
        struct.pack("<IHH", 28, 0, 19) + _open_group(519),
        4,
        auth=bytes([10, 6, 0, 0]) + struct.pack("<I", 0) + b"\x00" * 16,
    )
    session.data(True, 4.0, sealed)
    session.data(True, 5.0, request(5, 0, 19, _open_group(512)[:20]))  # cut short
    session.finish(6.0)
    rids = [(r.dce_rpc.operation, r.dce_rpc.HasField("rid") and r.dce_rpc.rid) for r in out]
    assert rids == [
        ("SamrOpenGroup", 512),
        ("SamrGetMembersInGroup", False),
        ("SamrOpenGroup", False),
        ("SamrOpenGroup", False),
    ]


def test_wild_privileged_group_lookup_names_domain_admins_on_the_member_listing() -> None:
    """tshark: SamrLookupNames("Domain Admins") -> RID 512; OpenGroup(512) twice, the second followed by
    GetMembersInGroup on its handle (frames 13-14, 33-37)."""
    records, _errors = _wild_records(
        "sbousseaden__PCAP-ATTACK/Discovery_privgroups_domain_admins_samr_lookupnames_req.pcapng"
    )
    calls = [r.dce_rpc for r in records if r.WhichOneof("kind") == "dce_rpc"]
    named = [(c.operation, c.rid) for c in calls if c.HasField("rid")]
    assert named == [
        ("SamrOpenGroup", 512),
        ("SamrQueryInformationGroup", 512),
        ("SamrCloseHandle", 512),
        ("SamrOpenGroup", 512),
        ("SamrGetMembersInGroup", 512),
        ("SamrCloseHandle", 512),
    ]


def test_dcom_calls_whose_bind_was_missed_are_written_unnamed_and_kept_out_of_zeeks_log() -> None:
    """MMC20.Application lateral movement (sbousseaden): the capture misses the binds; tshark shows 36
    requests to 172.16.66.36:60283 with the object-UUID flag (0x83) on contexts 0, 4, 5 and 6, and one on
    135 without it. The first on 60283 sits behind a gap the sensor does not cross."""
    records, errors = _wild_records("sbousseaden__PCAP-ATTACK/LM_dcom_mmc20.application_dcerpc.pcapng")
    calls = [r.dce_rpc for r in records if r.WhichOneof("kind") == "dce_rpc"]
    assert len(calls) == 35
    assert all(c.dcom and not c.endpoint and c.operation == f"unknown-{c.opnum}" for c in calls)
    assert Counter(c.opnum for c in calls)[6] == 3  # frames 33, 53, 73: opnum 6 (IDispatch::Invoke) on ctx 6
    assert errors[("dce_rpc", "unknown_context")] >= 35
    assert zeek_logs(records).get("dce_rpc", []) == []
