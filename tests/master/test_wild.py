"""Detections on captures other people recorded (../shared/corpus/wild): each test names the capture, what
it shows (its manifest's label, checked with tshark), and the breach Vigil must raise there."""

from __future__ import annotations

from pathlib import Path

import pytest

from master.offline import OfflineMaster
from tests.conftest import CORPUS
from vigil.alert.v1 import alert_pb2
from vigil.cli.offline import CaptureRecords
from vigil.config import VigilConfig

WILD = CORPUS / "wild"


def _breaches(relative: str) -> list[alert_pb2.ModelBreach]:
    capture = WILD / relative
    if not capture.is_file():
        pytest.skip(f"wild corpus not found at {WILD} (set VIGIL_CORPUS to the shared corpus)")
    cfg = VigilConfig()
    return OfflineMaster(cfg.master).process(CaptureRecords(cfg, [Path(capture)])).breaches


def test_quasarrat_reconnecting_every_3_5_s_is_a_beacon() -> None:
    """QuasarRAT (ANY.RUN sandbox): 192.168.100.7 opens 77 short TLS connections to 86.136.67.231:1337,
    one every 3.56 s (interval CV 0.04), with no SNI; most carry 377 bytes, a few more (size CV about 0.5).
    A timer that regular is a beacon whatever a few of its check-ins carry."""
    found = [
        b
        for b in _breaches("corelight__zeek-quasarrat-detector/09ffabf7-774a-43a3-8c97-68f2046fd385.pcap")
        if b.model == "Compromise / Beaconing Activity To External Rare" and b.device.ip == "192.168.100.7"
    ]
    assert found, "missed"
    assert found[0].severity in ("medium", "high", "critical")
    assert "86.136.67.231" in found[0].explanation


def test_empire_polling_its_listener_inside_the_lab_is_an_internal_beacon() -> None:
    """Mordor (OTRF): the Empire agent on WORKSTATION5 172.18.39.5 polls its HTTP listener at 10.10.10.5
    (a private address: inside the lab network) 24 times about every 4.8 s while PowerView runs
    NetSessEnum against the DC. Nobody else talks to 10.10.10.5."""
    found = [
        b
        for b in _breaches(
            "OTRF__Security-Datasets/empire_getsession_dcerpc_smb_srvsvc_NetSessEnum_2020-09-22034513.cap"
        )
        if b.model == "Compromise / Beaconing to Internal Endpoint"
    ]
    assert [b.device.ip for b in found] == ["172.18.39.5"]
    assert found[0].severity in ("medium", "high", "critical")
    assert "10.10.10.5" in found[0].explanation


# Known C2 frameworks: (capture, device, framework named in the explanation, its server). What each shows,
# from tshark: `-Y http.request -T fields -e http.request.method -e http.request.uri -e http.user_agent`,
# or `-Y tls.handshake.type==11 -T fields -e x509sat.uTF8String -e x509sat.printableString`.
KNOWN_C2_CAPTURES = [
    # GET /3kDz (sum of bytes 348 = 92 mod 256) returning a 211 kB stage, then GET /push with an MSIE agent.
    ("ainrm__cobaltstrike-suricata-rules/http_staging.pcapng", "192.168.110.19", "stager", "192.168.110.23"),
    # POST /jquery-3.3.2.min.js?__cfduid=... (the public jquery-c2 profile).
    ("ainrm__cobaltstrike-suricata-rules/http_stagless_jquery2.4.6.pcapng", "192.168.110.19", "jquery-c2",
     "192.168.110.23"),
    # Server certificate with every name attribute empty (the default keystore), no SNI.
    ("ainrm__cobaltstrike-suricata-rules/https_stagless.pcapng", "192.168.110.19", "Cobalt Strike",
     "192.168.110.23"),
    # Certificate CN=AsyncRAT Server on 181.131.218.39:4041.
    ("corelight__zeek-asyncrat-detector/cd010953-5faf-4054-86be-58c020c3a532.pcap", "192.168.100.124",
     "AsyncRAT", "181.131.218.39"),
    # Certificate issuer O=DcRat By qwqdanchun, CN=DcRat Server on 186.169.47.11:7084.
    ("corelight__zeek-asyncrat-detector/30a385ed-171e-4f15-ac3f-08c96be7bfd1.pcap", "192.168.100.20",
     "DcRat", "186.169.47.11"),
    # 18 GETs of /en-us/{index,test,docs}.html with the Chrome/41.0.2228.0 agent.
    ("OTRF__Security-Datasets/covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges_2020-08-05020926.cap",
     "172.18.39.5", "Covenant", "10.10.10.5"),
    # /admin/get.php, /news.php, /login/process.php with the IE 11 / Windows 7 agent, from the relay victim.
    ("mantvydasb__RedTeaming-Tactics-and-Techniques/relay-attack.pcapng", "10.0.0.2", "Empire", "10.0.0.5"),
    # PoshC2's generated certificate (O=Pajfds, OU=Jethpro, CN=P18055077) on 192.168.0.4:443.
    ("OTRF__Security-Datasets/UTICA-A.cap", "10.0.1.5", "PoshC2", "192.168.0.4"),
]  # fmt: skip


@pytest.mark.parametrize(("capture", "device", "framework", "server"), KNOWN_C2_CAPTURES)
def test_a_c2_frameworks_default_fingerprint_is_known_c2_traffic(
    capture: str, device: str, framework: str, server: str
) -> None:
    breaches = _breaches(capture)
    found = [b for b in breaches if b.model == "Compromise / Known C2 Framework Traffic"]
    assert found, f"missed; got {sorted({b.model for b in breaches})}"
    assert {b.device.ip for b in found} == {device}
    assert found[0].severity in ("high", "critical")
    assert framework in found[0].explanation and found[0].peer_ip == server


@pytest.mark.parametrize(
    "capture",
    [
        # Browsers of every kind (JA4's test captures) and Windows hosts going about their day.
        "FoxIO-LLC__ja4/browsers-x509.pcapng",
        "FoxIO-LLC__ja4/http1.pcapng",
        "ainrm__cobaltstrike-suricata-rules/baidu.pcapng",
        "OTRF__Security-Datasets/NEWYORK.cap",
    ],
)
def test_ordinary_browsing_bears_no_c2_fingerprint(capture: str) -> None:
    assert not [b for b in _breaches(capture) if b.model == "Compromise / Known C2 Framework Traffic"]


def _reference_breaches(relative: str) -> list[alert_pb2.ModelBreach]:
    capture = CORPUS / "reference" / relative
    if not capture.is_file():
        pytest.skip(f"reference corpus not found at {capture}")
    cfg = VigilConfig()
    return OfflineMaster(cfg.master).process(CaptureRecords(cfg, [Path(capture)])).breaches


def test_smb1_chosen_by_the_server_for_a_client_that_speaks_smb2_stays_low() -> None:
    """Zeek's raw_ntlm_in_smb.pcap: 192.168.56.1 offers NT LM 0.12, SMB 2.002 and SMB 2.??? and the
    server picks dialect index 0 (tshark: smb.dialect.name, smb.dialect.index). That is Windows falling
    back for an old server, not a tool that speaks only SMBv1."""
    smb = [b for b in _reference_breaches("zeek/smb/raw_ntlm_in_smb.pcap") if "SMB Activity" in b.model]
    assert all(b.severity == "low" for b in smb), [(b.score, b.explanation) for b in smb]


@pytest.mark.parametrize(
    ("capture", "device"),
    [
        # Impacket's SMB client offers NT LM 0.12 alone (tshark: one dialect in the negotiate request).
        ("mantvydasb__RedTeaming-Tactics-and-Techniques/relay-attack.pcapng", "10.0.0.5"),
        ("sbousseaden__PCAP-ATTACK/DE_byt3bl33d3r_remote_eventservice_crash.pcapng", "172.16.66.37"),
    ],
)
def test_a_client_that_speaks_only_smb1_is_suspicious_smb(capture: str, device: str) -> None:
    smb = [b for b in _breaches(capture) if b.model == "Compromise / Suspicious SMB Activity"]
    assert [b.device.ip for b in smb] == [device]
    assert smb[0].severity == "medium"
