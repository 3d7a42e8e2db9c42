"""Detections on captures other people recorded (../shared/corpus/wild): each test names the capture, what
it shows (its manifest's label, checked with tshark), and the breach Vigil must raise there."""

from __future__ import annotations

from pathlib import Path

import pytest

from master.beacon import session_beacon
from master.endpoints import Rarity
from master.observe import session_timer
from master.offline import OfflineMaster
from tests.conftest import CORPUS
from vigil.alert.v1 import alert_pb2
from vigil.cli.offline import CaptureRecords
from vigil.config import VigilConfig

WILD = CORPUS / "wild"


def _breaches(relative: str, corpus: Path = WILD) -> list[alert_pb2.ModelBreach]:
    """What the master raises on one capture of the shared corpus (``corpus``: wild/ or reference/)."""
    capture = corpus / relative
    if not capture.is_file():
        pytest.skip(f"{capture} not found (set VIGIL_CORPUS to the shared corpus)")
    cfg = VigilConfig()
    return OfflineMaster(cfg.master).process(CaptureRecords(cfg, [Path(capture)])).breaches


def test_strrat_checking_in_inside_one_long_connection_is_a_beacon() -> None:
    """STRRAT: 192.168.100.11 keeps one TCP connection to 185.255.114.40:8219 open for three minutes and
    sends a "ping|STRRAT|..." host report in it about every 5 s (tshark: 39 runs of payload a second or
    more apart, every 4.65 s, stdev 1.04 s); the protocol is nothing the sensor recognises."""
    found = [
        b
        for b in _breaches("corelight__zeek-strrat-detector/strrat-4423258f-59bc-4a88-bfec-d8ac08c88538.pcap")
        if b.model == "Compromise / Beaconing Activity To External Rare"
    ]
    assert [b.device.ip for b in found] == ["192.168.100.11"]
    assert found[0].score >= 40
    assert "kept one connection to 185.255.114.40:8219 open and sent 39 messages" in found[0].explanation
    assert "every 4.7 s" in found[0].explanation


def test_a_timer_inside_a_connection_needs_an_unrecognised_protocol_and_a_real_time() -> None:
    rare = Rarity("203.0.113.9", 0, 10, None, True, True)
    timer = session_timer(40, 39, 30.0, 0.5)
    assert timer is not None
    assert session_beacon(timer, rare, service_known=False)
    # A keep-alive of a protocol the sensor names (TLS, SSH...) is that protocol's business.
    assert not session_beacon(timer, rare, service_known=True)
    assert not session_beacon(timer, Rarity("203.0.113.9", 5, 10, 0.0, False, False), service_known=False)
    # Whatever a sender wrote on the bus: no timer from values that cannot be times.
    for hostile in (
        (40, 39, float("nan"), 1.0),
        (40, 39, 5.0, float("inf")),
        (40, 39, -5.0, 1.0),
        (3, 1, 5.0, 0.0),
    ):
        assert session_timer(*hostile) is None


@pytest.mark.parametrize(
    ("capture", "device", "named"),
    [
        # AUTH LOGIN as shipping@oceanskylogistics.in on 43.255.154.57:587, then an 830-byte DATA (tshark's
        # reassembled DATA length) to a gmail address, subject "PW_admin/USER-PC"; no STARTTLS.
        ("corelight__zeek-agenttesla-detector/a30789ce-1e1c-4f96-a097-78c34b9fb612.pcap", "192.168.100.40",
         "subject 'PW_admin/USER-PC' (830 B by SMTP to 43.255.154.57:587"),
        # USER/PASS on 143.95.79.226:21, then STOR of PW_admin-USER-PC_....html: 533 bytes on the passive
        # data connection to port 44523.
        ("corelight__zeek-agenttesla-detector/f9421792-7d2c-47d3-90e0-07eb54ae12fa.pcap", "192.168.100.164",
         "(533 B by FTP to 143.95.79.226:21"),
    ],
)  # fmt: skip
def test_a_stealer_mailing_or_uploading_a_kilobyte_in_clear_text_is_an_unusual_transfer(
    capture: str, device: str, named: str
) -> None:
    found = [b for b in _breaches(capture) if b.model == "Unusual Activity / Unusual External Data Transfer"]
    assert [b.device.ip for b in found] == [device]
    assert found[0].severity != "low" and named in found[0].explanation, found[0].explanation


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
    # Meterpreter reverse HTTPS to 10.0.5.13:8080: the handler's generated certificate (emailAddress =
    # OU@CN, CN from the organisation), after a GET of /winx64_payload.exe.
    ("OTRF__Security-Datasets/metasploit_logonpasswords_lsass_memory_dump.pcapng", "192.168.1.41",
     "Metasploit", "10.0.5.13"),
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


def test_smb1_chosen_by_the_server_for_a_client_that_speaks_smb2_stays_low() -> None:
    """Zeek's raw_ntlm_in_smb.pcap: 192.168.56.1 offers NT LM 0.12, SMB 2.002 and SMB 2.??? and the
    server picks dialect index 0 (tshark: smb.dialect.name, smb.dialect.index). That is Windows falling
    back for an old server, not a tool that speaks only SMBv1."""
    smb = [
        b
        for b in _breaches("zeek/smb/raw_ntlm_in_smb.pcap", CORPUS / "reference")
        if "SMB Activity" in b.model
    ]
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


# What an intruder does inside a Windows domain, one model each: (capture, the device that did it, the
# model, what its explanation must name). Each line's comment is what tshark shows there.
DOMAIN_ATTACKS = [
    # svcctl OpenSCManagerW, CreateServiceWOW64W, StartServiceW on the DC over RPC/TCP (tshark -Y svcctl).
    ("sbousseaden__PCAP-ATTACK/LM_psexec_smb_dcerpc_epm_svcctl.pcapng", "172.16.66.1",
     "Anomalous Connection / New or Uncommon Service Control", "CreateServiceWOW64W on 172.16.66.36"),
    # Find-LocalAdminAccess: the service manager opened on the DC (OpenSCManagerW over \svcctl) and on
    # 172.18.39.6 (ROpenSCManager2, opnum 64, over RPC/TCP); no service created.
    ("OTRF__Security-Datasets/empire_find_localadmin_smb_svcctl_OpenSCManager_2020-09-22021559.cap",
     "172.18.39.5", "Anomalous Connection / New or Uncommon Service Control", "service manager was opened"),
    # RpcAddPrinterDriverEx x3 over \spoolss (tshark -Y spoolss).
    ("corelight__CVE-2021-1675/PrintNightmare.pcap", "192.168.1.149",
     "Anomalous Connection / New or Uncommon Service Control", "RpcAddPrinterDriverEx"),
    # IWbemServices (9556dc99-...) opnum 24, ExecMethod, after a DCOM activation.
    ("sbousseaden__PCAP-ATTACK/LM_WMI_ProcessCallCreate.pcapng", "172.16.66.1",
     "Anomalous Connection / Remote WMI Execution", "ExecMethod"),
    # MMC20.Application: 35 ORPC calls (object-UUID flag) on 172.16.66.36:60283 whose binds the capture
    # missed, three of them opnum 6 (Invoke) on one context.
    ("sbousseaden__PCAP-ATTACK/LM_dcom_mmc20.application_dcerpc.pcapng", "172.16.66.1",
     "Anomalous Connection / Remote DCOM Execution", "bind not seen) on 172.16.66.36"),
    # ShellWindows: IDispatch GetTypeInfoCount, GetTypeInfo and Invoke on 172.18.39.6 (tshark -Y dispatch).
    ("OTRF__Security-Datasets/empire_dcom_shellwindows_WORKSTATION5_2020-09-18130751.cap", "172.18.39.5",
     "Anomalous Connection / Remote DCOM Execution", "IDispatch"),
    # DRSUAPI DsGetNCChanges from a workstation to the DC 172.18.38.5 (tshark -Y drsuapi).
    ("OTRF__Security-Datasets/covenant_dcsync_dcerpc_drsuapi_DsGetNCChanges_2020-08-05020926.cap",
     "172.18.39.5", "Device / Anomalous DRSGetNCChanges Operation", "DRSGetNCChanges on 172.18.38.5"),
    # DCShadow: DsBind then DRSUAPI_REPLICA_ADD from 172.16.66.1 to the DC 172.16.66.36:49667. The capture
    # starts mid-connection (no SYN): the caller is named by who sends the requests, not the first packet.
    ("sbousseaden__PCAP-ATTACK/DCShadow_add_primarygroupid_512_to_std_account.pcapng", "172.16.66.1",
     "Device / Anomalous DRSGetNCChanges Operation", "DRSReplicaAdd on 172.16.66.36"),
    # SharpHound: SAMR GetMembersInAlias x28 and more against the DC 192.168.12.11.
    ("studylab1__SAMR-Enum-Lab/sharphound_domain_z.pcapng", "192.168.11.101",
     "Anomalous Connection / SMB Enumeration", "on 192.168.12.11"),
    # Who is in Domain Admins: SamrLookupNames("Domain Admins") -> 512, OpenGroup(512), GetMembersInGroup.
    ("sbousseaden__PCAP-ATTACK/Discovery_privgroups_domain_admins_samr_lookupnames_req.pcapng",
     "172.16.66.1", "Anomalous Connection / SMB Enumeration", "on 172.16.66.36: Domain Admins"),
    # CrackMapExec --users: an NTLMSSP_AUTH with no user, domain or workstation (frame 24, the null
    # session), then the SAMR listing inside SMB 3.1.1 encryption.
    ("studylab1__SAMR-Enum-Lab/python.exe_crackmapexec_users.pcapng", "192.168.10.101",
     "Anomalous Connection / SMB Enumeration", "null session"),
    # PsLoggedOn: \winreg OpenUsers and EnumKey on 172.16.66.36 (tshark -Y winreg).
    ("sbousseaden__PCAP-ATTACK/Discovery_PsLoggedOn_remotelocalusers_enum_winreg_lsarpc_dcerpc_smb.pcapng",
     "172.16.66.1", "Anomalous Connection / Unusual Remote Registry Access", "winreg OpenUsers"),
    # SpoolSample: RpcRemoteFindFirstPrinterChangeNotificationEx on the DC (the printer bug).
    ("sbousseaden__PCAP-ATTACK/CA_LM_SpoolSample_SMB_BiAuth.pcapng", "172.16.66.37",
     "Device / Authentication Coercion", "RpcRemoteFindFirstPrinterChangeNotificationEx"),
    # PetitPotam: EfsRpcOpenFileRaw over \lsarpc on 192.168.0.85.
    ("corelight__PetitPotam/UnPatchedDCOpenFileRaw.pcapng", "192.168.0.15",
     "Device / Authentication Coercion", "EfsRpcOpenFileRaw"),
    # PurpleSharp: TGS-REQs answered with RC4 tickets for 5 service accounts within a second.
    ("OTRF__Security-Datasets/purplesharp_ad_playbook_I_2020-10-22042947.cap", "172.18.39.5",
     "Device / Kerberoasting Activity", "rc4-hmac"),
    # schtasks /create on 172.18.39.6: ITaskSchedulerService SchRpcRegisterTask (the capturing host's own
    # packets carry unfilled IPv4 checksums; see tests/sensor/test_checksums.py).
    ("OTRF__Security-Datasets/schtask_create_2020-12-1907003032.pcapng", "172.18.39.5",
     "Anomalous Connection / New or Uncommon Service Control", "SchRpcRegisterTask"),
    # PowerShell Remoting: 18 POST /wsman?PSVersion=5.1.18362.752 to 172.18.39.6:5985 (-Y http.request).
    ("OTRF__Security-Datasets/covenant_psremoting_command_2020-08-06115603.cap", "172.18.39.5",
     "Anomalous Connection / Unusual Remote PowerShell (WinRM)", "/wsman"),
    # rpcdump: 349 EPM Lookup requests to 10.0.2.18:135 in 0.12 s (tshark -Y "epm.opnum == 2").
    ("sbousseaden__PCAP-ATTACK/discovery_scan_dcerpc_endpoint_mapper.pcapng", "10.0.2.17",
     "Device / RPC Endpoint Enumeration", "ept_lookup on 10.0.2.18"),
    # kerbrute: AS-REQs for many accounts, answered KDC_ERR_C_PRINCIPAL_UNKNOWN / KDC_ERR_PREAUTH_FAILED.
    ("sbousseaden__PCAP-ATTACK/CA_kerbrute_passwordspray_kerberos_AS-REQ.pcapng", "172.16.66.1",
     "Device / Kerberos Password Spray", "KDC_ERR_"),
]  # fmt: skip


@pytest.mark.parametrize(("capture", "device", "model", "named"), DOMAIN_ATTACKS)
def test_a_domain_attack_breaches_its_model_on_the_device_that_did_it(
    capture: str, device: str, model: str, named: str
) -> None:
    breaches = _breaches(capture)
    found = [b for b in breaches if b.model == model]
    assert found, f"missed; got {sorted({(b.model, b.device.ip) for b in breaches})}"
    assert {b.device.ip for b in found} == {device}
    assert max(b.score for b in found) >= 40
    assert any(named in b.explanation for b in found), [b.explanation for b in found]


def test_a_domains_own_rpc_and_kerberos_chatter_breaches_none_of_the_domain_models() -> None:
    """NEWYORK (OTRF, APT29 day 2 seen from the DC): besides the intruder's host 10.0.1.5, 10.0.1.4,
    10.0.1.6 and 10.0.0.5 do what Windows does at logon and for group policy - SAMR domain lookups,
    LSARPC name and trust queries, DRSUAPI name cracking, Kerberos - and must stay below medium."""
    models = {m for _, _, m, _ in DOMAIN_ATTACKS}
    loud = [
        (b.model, b.device.ip, b.score)
        for b in _breaches("OTRF__Security-Datasets/NEWYORK.cap")
        if b.model in models and b.device.ip != "10.0.1.5" and b.severity != "low"
    ]
    assert loud == []


def test_windows_anonymous_fallback_of_a_coerced_server_is_not_a_null_session() -> None:
    """SpoolSample: the coerced 172.16.66.36 logs on back to 172.16.66.37 as its machine account, then
    twice anonymously (NTLMSSP_AUTH frames 48 and 58: NULL user and domain, workstation 01566S-WIN16-IR)."""
    found = [
        b.device.ip
        for b in _breaches("sbousseaden__PCAP-ATTACK/CA_LM_SpoolSample_SMB_BiAuth.pcapng")
        if b.model == "Anomalous Connection / SMB Enumeration"
    ]
    assert found == []


@pytest.mark.parametrize(
    ("capture", "device", "chunks"),
    [
        # 25 TXT names 1.redteam.me .. 25.redteam.me, each answered with a base64 chunk of a PowerShell
        # stager (tshark -Y "dns.qry.type == 16 && dns.flags.response == 1" -T fields -e dns.txt).
        ("mantvydasb__RedTeaming-Tactics-and-Techniques/dns-packets.pcapng", "192.168.2.124", 25),
        # 50 TXT names under ns.ostrykebs.pl: 18 stager chunks, then command polls with base64 answers.
        ("sbousseaden__PCAP-ATTACK/cmds over dns txt queries and reponses.pcap", "192.168.100.121", 10),
    ],
)
def test_data_carried_in_dns_txt_answers_is_a_dns_tunnel(capture: str, device: str, chunks: int) -> None:
    found = [b for b in _breaches(capture) if b.model == "Compromise / DNS Tunnel"]
    assert {b.device.ip for b in found} == {device}
    assert max(b.score for b in found) >= 40
    assert any("TXT" in b.explanation for b in found)
    assert max(b.evidence[0].observed for b in found) >= chunks


def test_one_full_user_listing_is_not_an_alarm() -> None:
    """`net user /domain` (studylab1): SAMR EnumDomainUsers once (tshark -Y samr). On the wire it is
    what the lab's helpdesk does in its benign domain session (`rpcclient -c enumdomusers`), so one
    listing stays below medium; a collector's several listings (SharpHound, above) do not."""
    loud = [
        (b.model, b.score)
        for b in _breaches("studylab1__SAMR-Enum-Lab/net.exe_user__domain.pcapng")
        if b.model == "Anomalous Connection / SMB Enumeration" and b.severity != "low"
    ]
    assert loud == []
