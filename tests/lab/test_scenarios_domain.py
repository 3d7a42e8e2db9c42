"""The benign Windows-domain sessions (tests/data/scenarios/benign/*-domain.pcap, recorded by
:mod:`tests.lab.scenarios_domain`): each committed capture is a domain start-up and logon as tshark dissects
it, the ordinary workstations enumerate nothing, and the sensor's records agree with tshark; as root, the
recorder still works (a short logon is re-recorded in the lab, about half a minute).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from master.features import ip_text
from sensor.logwriter import pipeline_records
from tests.lab.compose import read_pcap
from tests.lab.netns import unavailable_reason
from tests.lab.scenarios_benign import capture
from tests.lab.scenarios_domain import TOOLS, WORKSTATIONS, domain_logon, domain_office
from vigil.config import SensorConfig
from vigil.sensor.v1 import sensor_pb2

BENIGN = Path(__file__).resolve().parent.parent / "data" / "scenarios" / "benign"
ADDRESS = {"ws1": "10.231.1.10", "ws2": "10.231.1.11", "helpdesk": "10.231.1.13"}
SESSIONS = {"ws1-domain": "ws1", "ws2-domain": "ws2", "helpdesk-domain": "helpdesk"}
LSARPC_UUID = "12345778-1234-abcd-ef00-0123456789ab"
SRVSVC_UUID = "4b324fc8-1670-01d3-1278-5a47bf6ee188"

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark (make install)")


def _tshark(pcap: Path, display_filter: str, field: str) -> list[str]:
    """``tshark -r PCAP -Y FILTER -T fields -e FIELD``: one value per matching frame (several values of one
    frame joined by commas, as tshark prints them)."""
    proc = subprocess.run(
        ["tshark", "-r", str(pcap), "-Y", display_filter, "-T", "fields", "-e", field],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [line for line in proc.stdout.splitlines() if line]


def _assert_domain_logon(pcap: Path, who: str) -> None:
    """What tshark sees of one workstation's start-up and logon (machine account, then the user)."""
    ws = WORKSTATIONS[who]
    # tshark -Y 'kerberos.msg_type==11' -e kerberos.CNameString: the AS-REPs, one per account logged on.
    logged_on = set(_tshark(pcap, "kerberos.msg_type==11", "kerberos.CNameString"))
    assert {ws.machine.name, ws.user.name} <= logged_on
    # tshark -Y 'kerberos.msg_type==13' -e kerberos.SNameString: service tickets issued.
    tickets = {
        name.replace(",", "/") for name in _tshark(pcap, "kerberos.msg_type==13", "kerberos.SNameString")
    }
    assert {"cifs/dc.corp.example.test", "ldap/dc.corp.example.test", f"host/{ws.fqdn}"} <= tickets
    assert "cifs/files.corp.example.test" in tickets
    # tshark -Y 'smb2.cmd==3 && smb2.flags.response==0' -e smb2.tree: group policy and the logon script.
    trees = Counter(_tshark(pcap, "smb2.cmd==3 && smb2.flags.response==0", "smb2.tree"))
    assert trees[r"\\dc.corp.example.test\sysvol"] >= 2  # machine and user policy
    assert trees[r"\\dc.corp.example.test\netlogon"] >= 1
    assert trees[r"\\files.corp.example.test\projects"] >= 1
    # tshark -Y 'ldap.protocolOp==0' -e ldap.mechanism: SASL binds with Kerberos (and one anonymous bind).
    mechanisms = Counter(_tshark(pcap, "ldap.protocolOp==0 && ldap.mechanism", "ldap.mechanism"))
    assert mechanisms["GSSAPI"] >= 2 and mechanisms["GSS-SPNEGO"] >= 2
    # tshark -Y 'cldap && ldap.protocolOp==3': the DC locator's NetLogon ping over UDP.
    assert _tshark(pcap, "cldap && ldap.protocolOp==3", "frame.number")
    # tshark -Y 'dcerpc.pkt_type==11' -e dcerpc.cn_bind_to_uuid: RPC binds to LSA and the server service.
    binds = set(",".join(_tshark(pcap, "dcerpc.pkt_type==11", "dcerpc.cn_bind_to_uuid")).split(","))
    assert {LSARPC_UUID, SRVSVC_UUID} <= binds
    # No logon failed (a KDC asking for pre-authentication first is error 25, the normal first round).
    errors = _tshark(pcap, "kerberos.msg_type==30", "kerberos.error_code")
    assert set(errors) <= {"25"}, errors


def _records(path: Path) -> list[sensor_pb2.Record]:
    return list(pipeline_records(SensorConfig(), [path], seed=1))


# -- the committed captures (no root needed) -------------------------------------------------------
@needs_tshark
@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_committed_session_is_a_domain_logon(name: str) -> None:
    path = BENIGN / f"{name}.pcap"
    assert path.is_file(), f"{path} missing: record it with `python -m tests.lab.scenarios_domain`"
    _assert_domain_logon(path, SESSIONS[name])
    capture_ = read_pcap(path)
    # Small, and short enough for a baseline slot of tests.lab.compose (2 h) with room for its jitter.
    assert path.stat().st_size < 400_000
    assert capture_.duration_us < 5 * 60 * 1_000_000
    # Only the session's workstation starts conversations on LAN A (the servers never call it).
    sources = set(_tshark(path, "tcp.flags.syn==1 && tcp.flags.ack==0", "ip.src"))
    assert sources == {ADDRESS[SESSIONS[name]]}


@needs_tshark
def test_only_the_helpdesk_enumerates_and_explorer_lists_shares_once() -> None:
    for name, who in SESSIONS.items():
        path = BENIGN / f"{name}.pcap"
        # tshark -Y 'samr.opnum==13 && dcerpc.pkt_type==0': SamrEnumerateUsersInDomain requests.
        enumerations = len(_tshark(path, "samr.opnum==13 && dcerpc.pkt_type==0", "frame.number"))
        assert enumerations == (1 if who == "helpdesk" else 0), name
        # tshark -Y 'srvsvc.opnum==15 && dcerpc.pkt_type==0': NetShareEnumAll, once (Explorer opens files).
        assert len(_tshark(path, "srvsvc.opnum==15 && dcerpc.pkt_type==0", "frame.number")) == 1, name


@needs_tshark
@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_sensor_records_agree_with_tshark(name: str) -> None:
    path = BENIGN / f"{name}.pcap"
    ws = WORKSTATIONS[SESSIONS[name]]
    records = _records(path)
    kinds = Counter(str(r.WhichOneof("kind")) for r in records)
    # One DCE-RPC record per request: tshark -Y 'dcerpc.pkt_type==0' (requests) counts the same.
    assert kinds["dce_rpc"] == len(_tshark(path, "dcerpc.pkt_type==0", "frame.number"))
    kerberos = [r.kerberos for r in records if r.WhichOneof("kind") == "kerberos"]
    logons = {k.client.split("/")[0] for k in kerberos if k.request_type == "AS" and k.success}
    assert {ws.machine.name, ws.user.name} <= logons
    # Every ticket is AES (the computer accounts carry msDS-SupportedEncryptionTypes as Windows sets it).
    assert kerberos and all(k.cipher.startswith("aes") for k in kerberos if k.cipher)
    ntlm = [r for r in records if r.WhichOneof("kind") == "ntlm"]
    # Only ws1 opens a share by address once (NTLM); tshark -Y 'ntlmssp.messagetype==3' counts 1 there.
    expected_ntlm = len(_tshark(path, "ntlmssp.messagetype==3", "ntlmssp.auth.username"))
    assert len(ntlm) == expected_ntlm == (1 if ws.host == "ws1" else 0)
    assert all(r.ntlm.username == ws.user.name and r.ntlm.hostname == ws.netbios for r in ntlm)
    assert all(ip_text(r.orig.ip) == ADDRESS[ws.host] for r in records if r.WhichOneof("kind") == "kerberos")


# -- re-recording (root) ---------------------------------------------------------------------------
@pytest.mark.lab
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_recorder_captures_a_domain_logon(tmp_path: Path) -> None:
    if reason := unavailable_reason(TOOLS):
        pytest.skip(reason)
    out = tmp_path / "ws2-logon.pcap"
    # A random lab id: no waiting for (or colliding with) a recording that holds the fixed names.
    with domain_office(lab_id=None) as place, capture(place.lab, out):
        counts = domain_logon(place, "ws2")
    assert counts["kerberos_logons"] == 2
    _assert_domain_logon(out, "ws2")
