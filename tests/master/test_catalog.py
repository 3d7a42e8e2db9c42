"""Every catalog model fires on its scenario, after a benign baseline that itself stays quiet above low.

The records are built in event time like a sensor's (application records carry their connection's endpoints)
and go through the master's real batch path (offline driver, memory store; the Redis path is the same code
and is covered by test_pipeline/test_ingest). Scenarios recorded with real tools in the lab are evaluated in
tests/master/test_scenarios.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

import pytest

from master.catalog import FLOW_BEACON
from master.offline import OfflineMaster, OfflineResult
from tests.master.traffic import CS, T0, flow, ip, office, scan
from vigil.alert.v1 import alert_pb2
from vigil.config import MasterConfig
from vigil.flow.v1 import dhcp_pb2, dns_pb2, flow_pb2, http_pb2, kerberos_pb2, ldap_pb2, ntlm_pb2, smb_pb2
from vigil.sensor.v1 import sensor_pb2

ME = "10.0.1.5"
BASELINE_WINDOWS = 75  # past the one-hour grace before "new" devices and endpoints count
START = T0 + BASELINE_WINDOWS * 60 + 5


def _stamp(record: sensor_pb2.Record, t: float, orig: str, resp: str, port: int) -> sensor_pb2.Record:
    body = getattr(record, str(record.WhichOneof("kind")))
    body.time.FromNanoseconds(int(t * 1e9))
    if not body.uid:
        body.uid = f"U{orig}-{resp}-{port}-{t}"
    record.orig.ip = ip(orig)
    record.resp.ip = ip(resp)
    record.resp.port = port
    return record


def dns(t: float, query: str, qtype: int = 1, orig: str = ME) -> sensor_pb2.Record:
    return _stamp(sensor_pb2.Record(dns=dns_pb2.DnsRecord(query=query, qtype=qtype)), t, orig, "10.0.0.2", 53)


def ldap_bind(t: float, orig: str = ME) -> sensor_pb2.Record:
    msg = ldap_pb2.LdapMessage(opcode="bind", object="cn=svc,dc=corp", result="success")
    return _stamp(sensor_pb2.Record(ldap=msg), t, orig, "10.0.0.3", 389)


def ldap_search(t: float, orig: str = ME) -> sensor_pb2.Record:
    # An ordinary lookup: one user's entry.
    search = ldap_pb2.LdapSearch(
        base_object="dc=corp", filter="(objectClass=user)", scope="tree", result_count=1
    )
    return _stamp(sensor_pb2.Record(ldap_search=search), t, orig, "10.0.0.3", 389)


def ntlm(t: float, user: str, ok: bool, host: str = "WS5", orig: str = ME) -> sensor_pb2.Record:
    rec = ntlm_pb2.NtlmRecord(username=user, domain="CORP", hostname=host, success=ok, carrier="smb")
    return _stamp(sensor_pb2.Record(ntlm=rec), t, orig, "10.0.0.4", 445)


def http(
    t: float, host: str, resp: str, ua: str, uri: str = "/", mime: str = "text/html", size: int = 512
) -> sensor_pb2.Record:
    rec = http_pb2.HttpRecord(
        method="GET", host=host, uri=uri, user_agent=ua, status_code=200, response_body_len=size
    )
    rec.resp_mime_types.append(mime)
    return _stamp(sensor_pb2.Record(http=rec), t, ME, resp, 80)


def ext_flow(
    t: float,
    resp: str,
    port: int = 443,
    orig_bytes: int = 400,
    transport: flow_pb2.Transport.ValueType = flow_pb2.TRANSPORT_TCP,
    orig: str = ME,
) -> sensor_pb2.Record:
    record = flow(t, orig, resp, port)
    record.flow.transport = transport
    record.flow.orig_bytes = orig_bytes
    record.flow.resp_bytes = 1200
    return record


def _t(record: sensor_pb2.Record) -> int:
    body = getattr(record, str(record.WhichOneof("kind")))
    stamp = body.start_time if record.WhichOneof("kind") == "flow" else body.time
    return int(stamp.ToNanoseconds())


BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
OCTETS = "application/octet-stream"


def _benign_apps(seed: int = 5) -> list[sensor_pb2.Record]:
    """The baseline's application records: a little DNS, LDAP, NTLM and browsing per device and minute."""
    rng = random.Random(seed)
    out = []
    for w in range(BASELINE_WINDOWS):
        base = T0 + w * 60
        for d in range(1, 21):
            me = f"10.0.1.{d}"
            for _ in range(rng.randint(0, 3)):
                out.append(dns(base + rng.uniform(0, 59), f"www{rng.randint(0, 9)}.example.com", orig=me))
            if rng.random() < 0.3:
                out.append(ldap_bind(base + rng.uniform(0, 59), orig=me))
                out.append(ldap_search(base + rng.uniform(0, 59), orig=me))
            if rng.random() < 0.2:
                out.append(ntlm(base + rng.uniform(0, 59), f"user{d}", True, host=f"WS{d}", orig=me))
    return out


def baseline() -> list[sensor_pb2.Record]:
    return sorted([*office(T0, BASELINE_WINDOWS, devices=20), *_benign_apps()], key=_t)


@pytest.fixture(scope="module")
def learned() -> tuple[list[sensor_pb2.Record], OfflineResult]:
    records = baseline()
    return records, OfflineMaster(MasterConfig(response_mode="observe")).process(records)


def test_the_baseline_stays_quiet_above_low(learned: tuple[list[sensor_pb2.Record], OfflineResult]) -> None:
    _, result = learned
    loud = [(b.model, b.device.ip, b.score) for b in result.breaches if b.severity != "low"]
    assert loud == []


def run(attack: Iterable[sensor_pb2.Record], learned: list[sensor_pb2.Record]) -> list[alert_pb2.ModelBreach]:
    master = OfflineMaster(MasterConfig(response_mode="observe"))
    master.process(learned)
    # One more ordinary minute around the attack, so the attack is not alone in its batch.
    ordinary = list(office(START - 5, 3, devices=20, seed=11))
    return master.process(sorted([*ordinary, *attack], key=_t)).breaches


def _rand_label(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(n))


def _beacon_flows(resp: str) -> list[sensor_pb2.Record]:
    return [ext_flow(START + 30 * i, resp, 443, orig_bytes=420) for i in range(16)]


def _pi_arrives() -> list[sensor_pb2.Record]:
    """A Raspberry Pi gets an address by DHCP, then behaves (a little browsing)."""
    mac = bytes.fromhex("dca6325ca10c")
    rec = dhcp_pb2.DhcpRecord(mac=mac, host_name="raspberrypi", assigned_addr=ip("10.0.1.99"))
    rec.time.FromNanoseconds(int(START * 1e9))
    first = flow(START + 1, "10.0.1.99", "10.0.0.1", 53, orig_mac=mac)
    return [sensor_pb2.Record(dhcp=rec), first]


SCENARIOS: dict[str, Callable[[], list[sensor_pb2.Record]]] = {
    "Device / Network Scan": lambda: scan(START, ME, targets=60),
    "Device / Network Range Scan": lambda: scan(START, ME, targets=60),
    "Device / Suspicious Network Scan Activity": lambda: [
        flow(START + i, ME, f"10.0.3.{i % 15 + 1}", (22, 3389, 445)[i % 3], CS.CONN_STATE_REJ)
        for i in range(45)
    ],
    "Device / Suspicious SMB Scanning Activity": lambda: [
        flow(START + i, ME, f"10.0.3.{i + 1}", 445, CS.CONN_STATE_S0) for i in range(12)
    ],
    "Device / RDP Scan": lambda: [
        flow(START + i, ME, f"10.0.3.{i + 1}", 3389, CS.CONN_STATE_REJ) for i in range(12)
    ],
    "Device / UDP Enumeration": lambda: [
        _udp(flow(START + i, ME, f"10.0.3.{i // 4 + 1}", (53, 123, 161, 137)[i % 4], CS.CONN_STATE_S0))
        for i in range(24)
    ],
    "Device / External Network Scan": lambda: [
        flow(START + i, ME, f"203.0.113.{i + 1}", 22, CS.CONN_STATE_S0) for i in range(40)
    ],
    "Device / Anomalous Nmap Activity": lambda: [
        _history(flow(START + i * 0.2, ME, f"10.0.3.{i + 1}", 80), "ShR") for i in range(20)
    ],
    "Device / Reverse DNS Sweep": lambda: [
        dns(START + i * 0.1, f"{i}.3.0.10.in-addr.arpa", qtype=12) for i in range(60)
    ],
    "Device / Unusual LDAP Bind and Search Activity": lambda: [
        *(ldap_bind(START + i) for i in range(12)),
        *(ldap_search(START + i + 0.5) for i in range(30)),
    ],
    "Device / SMB Session Brute Force (Non-Admin)": lambda: [
        ntlm(START + i, f"user{i % 3}", False) for i in range(15)
    ],
    "Device / SMB Session Brute Force (Admin)": lambda: [
        ntlm(START + i, "Administrator", False) for i in range(8)
    ],
    "Device / Attack and Recon Tools": lambda: [
        http(START + i, "10.0.0.9", "10.0.0.9", "Mozilla/5.0 (compatible; Nmap Scripting Engine; nmap.org)")
        for i in range(5)
    ],
    "Compromise / Suspicious SMB Activity": lambda: [_smb1(START)],
    "Unusual Activity / Unusual External Data Transfer": lambda: [
        ext_flow(START, "203.0.113.50", 443, orig_bytes=60_000_000)
    ],
    "Compromise / DNS Tunnel": lambda: [
        dns(START + i * 0.5, f"{_rand_label(random.Random(i), 40)}.tunnel.example.test", qtype=16)
        for i in range(50)
    ],
    "Anomalous Connection / Outbound VPN to Rare Endpoint": lambda: [
        ext_flow(START, "203.0.113.60", 1194, transport=flow_pb2.TRANSPORT_UDP)
    ],
    "Anomalous Connection / Rare External Endpoint": lambda: [ext_flow(START, "203.0.113.70")],
    "Compromise / Beaconing Activity To External Rare": lambda: _beacon_flows("203.0.113.80"),
    "Compromise / Beaconing to Internal Endpoint": lambda: [
        flow(START + 30 * i, ME, "10.0.2.77", 8443) for i in range(16)
    ],
    "Compromise / HTTP Beaconing to Rare Destination": lambda: [
        http(START + 20 * i, "updates.evil.test", "203.0.113.90", "curl/8.5.0", size=230) for i in range(14)
    ],
    "Compromise / Possible HTTP Command and Control": lambda: [
        http(START + 10 * i, "c2.evil.test", "203.0.113.91", "python-requests/2.31", "/task", OCTETS, 4096)
        for i in range(9)
    ],
    "Device / New Device": _pi_arrives,
    "Device / New Device with Attack Tools": lambda: [*_pi_arrives(), *scan(START + 30, "10.0.1.99", 40)],
    "Unusual Activity / Unusual Hostname for IP": lambda: [ntlm(START + 1, "user5", True, "EVIL-LAPTOP")],
    "Unusual Activity / Significant Anomaly": lambda: [
        *(flow(START + i, ME, f"10.0.3.{i + 1}", 8000 + i, CS.CONN_STATE_REJ) for i in range(8)),
        *(_history(flow(START + i, ME, f"10.0.3.{i + 1}", 80), "ShR") for i in range(8)),
        *(dns(START + i, f"{i}.3.0.10.in-addr.arpa", qtype=12) for i in range(12)),
    ],
    "Device / Large Number of Model Breaches": lambda: [
        *scan(START, ME, targets=60),
        *(dns(START + 10 + i * 0.1, f"{i}.3.0.10.in-addr.arpa", qtype=12) for i in range(60)),
        *(ntlm(START + 20 + i, f"user{i % 3}", False) for i in range(15)),
    ],
    "Device / Multiple Lateral Movement Model Breaches": lambda: scan(START, ME, targets=60),
}


def _udp(record: sensor_pb2.Record) -> sensor_pb2.Record:
    record.flow.transport = flow_pb2.TRANSPORT_UDP
    record.flow.history = "D"
    return record


def _history(record: sensor_pb2.Record, history: str) -> sensor_pb2.Record:
    record.flow.history = history
    record.flow.conn_state = CS.CONN_STATE_RSTO
    return record


def _smb1(t: float) -> sensor_pb2.Record:
    neg = smb_pb2.SmbNegotiate(negotiated_dialect="NT LM 0.12", version=smb_pb2.SMB_VERSION_1)
    return _stamp(sensor_pb2.Record(smb_negotiate=neg), t, ME, "10.0.0.4", 445)


@pytest.mark.parametrize("model", sorted(SCENARIOS))
def test_model_fires_on_its_scenario(
    model: str, learned: tuple[list[sensor_pb2.Record], OfflineResult]
) -> None:
    records, _ = learned
    breaches = run(SCENARIOS[model](), records)
    fired = [b for b in breaches if b.model == model]
    assert fired, f"{model} did not fire; got {sorted({b.model for b in breaches})}"
    b = fired[0]
    assert b.model_id and b.severity in ("low", "medium", "high", "critical")
    assert 0 <= b.score <= 100 and b.explanation
    assert b.window_start.ToNanoseconds() <= b.window_end.ToNanoseconds()
    assert b.device.ip in (ME, "10.0.1.99")
    # Nobody else is blamed for it.
    assert {x.device.ip for x in breaches if x.model == model} <= {ME, "10.0.1.99"}


def test_catalog_is_complete() -> None:
    """Every model the catalog registers has a scenario here, except those the wild corpus proves
    (tests/master/test_wild.py)."""
    from master.catalog import CATALOG, KNOWN_C2
    from tests.master.test_wild import DOMAIN_ATTACKS

    proved_on_wild_captures = {KNOWN_C2} | {model for _, _, model, _ in DOMAIN_ATTACKS}
    assert {m.name for m in CATALOG} == set(SCENARIOS) | proved_on_wild_captures
    assert len(CATALOG) == 40


def test_a_model_is_registered_once_and_a_breach_needs_a_registered_model() -> None:
    from master.breaches import make_breach
    from master.catalog import CATALOG, Catalog, Model, Response

    catalog = Catalog()
    catalog.register(Model("Device / Example", "never", ("T1046",)))
    with pytest.raises(ValueError, match="registered twice"):
        catalog.register(Model("Device / Example", "again", ("T1046",), Response.STOP_OUTGOING))
    with pytest.raises(ValueError, match="ids clash"):
        catalog.register(Model("Device - Example", "same id", ("T1046",)))
    with pytest.raises(ValueError, match="rule and ATT&CK"):
        catalog.register(Model("Device / No Techniques", "rule", ()))
    assert "Device / Example" not in CATALOG
    ref = alert_pb2.DeviceRef(device_id="d", ip=ME)
    with pytest.raises(ValueError, match="not in the catalog"):
        make_breach(
            "Device / Example", ref, key=0, score=50, when=T0, window=(T0, T0), explanation="x",
            evidence=[], techniques=("T1046",), uids=[],
        )  # fmt: skip


def test_new_device_is_tagged_with_its_vendor(learned: tuple[list[sensor_pb2.Record], OfflineResult]) -> None:
    records, _ = learned
    new = [b for b in run(_pi_arrives(), records) if b.model == "Device / New Device"]
    assert len(new) == 1
    assert "vendor:Raspberry Pi Trading Ltd" in new[0].device.tags
    assert new[0].severity == "medium" and "Raspberry Pi" in new[0].explanation


def test_ordinary_day_after_baseline_is_quiet(learned: tuple[list[sensor_pb2.Record], OfflineResult]) -> None:
    records, _ = learned
    breaches = run([], records)
    assert [(b.model, b.device.ip) for b in breaches if b.severity != "low"] == []


def test_newcomers_borrow_their_peers_belief() -> None:
    """Backup servers in 10.0.9.0/24 each reach ~30 hosts a minute. A new server there doing the same is
    ordinary for its peers; a new workstation doing it is a scan."""
    rng = random.Random(9)
    servers = []
    for w in range(BASELINE_WINDOWS):
        for s in range(1, 6):
            for h in rng.sample(range(1, 200), rng.randint(26, 34)):
                servers.append(flow(T0 + w * 60 + rng.uniform(0, 59), f"10.0.9.{s}", f"10.0.4.{h}", 445))
    master = OfflineMaster(MasterConfig(response_mode="observe"))
    master.process(sorted([*baseline(), *servers], key=_t))
    fanout = [
        flow(START + i, who, f"10.0.4.{i + 1}", 445) for who in ("10.0.9.50", "10.0.1.77") for i in range(30)
    ]
    breaches = master.process(sorted([*office(START - 5, 2, devices=20, seed=12), *fanout], key=_t)).breaches
    scanned = {b.device.ip for b in breaches if b.model == "Device / Network Scan"}
    assert scanned == {"10.0.1.77"}


def test_a_user_on_a_workstation_it_never_used(
    learned: tuple[list[sensor_pb2.Record], OfflineResult],
) -> None:
    """user5 always logged on from WS5 (10.0.1.5); now it logs on from LAPTOP-X on another address, whose
    own name history says nothing yet: the user's history does."""
    records, _ = learned
    attack = [
        flow(START, "10.0.1.30", "10.0.0.4", 445),
        ntlm(START + 1, "user5", True, "LAPTOP-X", "10.0.1.30"),
    ]
    fired = [b for b in run(attack, records) if b.model == "Unusual Activity / Unusual Hostname for IP"]
    assert [b.device.ip for b in fired] == ["10.0.1.30"]
    assert "CORP\\user5 logged on from 'LAPTOP-X'" in fired[0].explanation and "'WS5'" in fired[0].explanation


def test_vpn_recognised_by_its_handshake_on_443(
    learned: tuple[list[sensor_pb2.Record], OfflineResult],
) -> None:
    """OpenVPN moved to 443/tcp is no VPN port, but the sensor names the service once the server
    answered the handshake; a rare endpoint then fires the VPN model. Plain TLS to it does not."""
    records, _ = learned
    tunnel = ext_flow(START, "203.0.113.61", 443)
    tunnel.flow.service.append("openvpn")
    model = "Anomalous Connection / Outbound VPN to Rare Endpoint"
    vpn = [b for b in run([tunnel], records) if b.model == model]
    assert len(vpn) == 1
    assert any("openvpn handshake seen" in e for ev in vpn[0].evidence for e in ev.examples)
    plain = ext_flow(START, "203.0.113.62", 443)
    plain.flow.service.append("ssl")
    assert not [b for b in run([plain], records) if b.model == model]


def test_a_breach_needs_traffic_the_device_itself_sent(
    learned: tuple[list[sensor_pb2.Record], OfflineResult],
) -> None:
    """Datagrams that only arrive from an IPsec NAT-T port (4500) are oriented by the sensor towards that
    server port, so the receiving workstation appears as the originator of a flow in which it sent nothing
    (orig_pkts 0). It is no VPN user, and no new endpoint is its doing; the same flow with its own packets
    is."""
    records, _ = learned
    model = "Anomalous Connection / Outbound VPN to Rare Endpoint"

    def inbound(orig_pkts: int) -> sensor_pb2.Record:
        record = ext_flow(START, "203.0.113.63", 4500, transport=flow_pb2.TRANSPORT_UDP)
        record.flow.orig_pkts = orig_pkts
        record.flow.orig_bytes = 0 if orig_pkts == 0 else 400
        record.flow.resp_pkts = 5
        record.flow.direction_guessed = True
        record.flow.history = "^d" if orig_pkts == 0 else "Dd"
        return record

    arrived = [(b.model, b.device.ip) for b in run([inbound(0)], records) if b.device.ip == ME]
    assert arrived == []
    sent = [b.model for b in run([inbound(3)], records) if b.device.ip == ME]
    assert model in sent


def test_a_new_device_uploading_several_mb_to_a_rare_host_breaches(
    learned: tuple[list[sensor_pb2.Record], OfflineResult],
) -> None:
    """The seed's Raspberry Pi: a device the network has never seen sends 7.5 MB to an external endpoint
    nobody else reaches. With no history of its own it is judged by its peers (who upload next to
    nothing), and the transfer breaches; half a megabyte does not."""
    records, _ = learned
    model = "Unusual Activity / Unusual External Data Transfer"
    newcomer = "10.0.1.250"
    big = ext_flow(START, "203.0.113.57", 443, orig_bytes=7_500_000, orig=newcomer)
    hits = [b for b in run([big], records) if b.model == model and b.device.ip == newcomer]
    assert hits and hits[0].severity in ("medium", "high", "critical"), [(b.model, b.score) for b in hits]
    assert "203.0.113.57" in " ".join(e for ev in hits[0].evidence for e in ev.examples)
    small = ext_flow(START, "203.0.113.58", 443, orig_bytes=500_000, orig=newcomer)
    assert not [b for b in run([small], records) if b.model == model]


# -- beacons as they are met in the wild -------------------------------------------------------------------


def _run_for(
    attack: Iterable[sensor_pb2.Record], learned: list[sensor_pb2.Record], minutes: int
) -> list[alert_pb2.ModelBreach]:
    """The attack amid ``minutes`` of the office's ordinary traffic (every workstation browsing: ME reaches
    dozens of external hosts an hour, which a beacon's series must outlive)."""
    master = OfflineMaster(MasterConfig(response_mode="observe"))
    master.process(learned)
    ordinary = list(office(START - 5, minutes, devices=20, seed=13))
    return master.process(sorted([*ordinary, *attack], key=_t)).breaches


def _check_ins(
    resp: str, period_s: float, jitter: float, minutes: int, burst: int = 1, seed: int = 3, orig: str = ME
) -> list[sensor_pb2.Record]:
    """A timer calling home every ``period_s`` ± ``jitter`` (uniform, as C2 frameworks draw their sleep),
    each check-in ``burst`` connections within a second."""
    rng = random.Random(seed)
    out, t = [], START
    while t < START + minutes * 60:
        for k in range(burst):
            out.append(ext_flow(t + 0.3 * k, resp, 443, orig_bytes=410 + rng.randint(0, 20), orig=orig))
        t += period_s * (1 + rng.uniform(-jitter, jitter))
    return out


def _first_beacon(breaches: list[alert_pb2.ModelBreach], device: str = ME) -> alert_pb2.ModelBreach | None:
    hits = [b for b in breaches if b.model == FLOW_BEACON and b.device.ip == device]
    return min(hits, key=lambda b: b.time.seconds) if hits else None


@pytest.mark.parametrize(
    ("jitter", "burst"),
    [(0.1, 1), (0.5, 1), (0.1, 2)],
    ids=["60s±10%", "60s±50%", "60s±10%-bursts-of-2"],
)
def test_a_beacon_to_a_new_host_reaches_medium_within_the_first_hour(
    learned: tuple[list[sensor_pb2.Record], OfflineResult], jitter: float, burst: int
) -> None:
    records, _ = learned
    beacon = _first_beacon(_run_for(_check_ins("203.0.113.81", 60.0, jitter, 60, burst), records, 62))
    assert beacon is not None, "missed"
    assert beacon.severity in ("medium", "high", "critical"), beacon.score
    assert beacon.time.seconds - START <= 3600
    assert "203.0.113.81" in beacon.explanation


@pytest.mark.parametrize("server", ["198.51.100.20", "10.0.0.200"], ids=["external", "internal"])
def test_a_poll_the_whole_network_shares_is_no_beacon(
    learned: tuple[list[sensor_pb2.Record], OfflineResult], server: str
) -> None:
    """Device management: every workstation checks in with the same server every minute."""
    records, _ = learned
    polls = [r for d in range(1, 21) for r in _check_ins(server, 60.0, 0.1, 60, seed=d, orig=f"10.0.1.{d}")]
    breaches = _run_for(polls, records, 62)
    assert not [(b.model, b.device.ip) for b in breaches if "Beacon" in b.model or "Command" in b.model]


LDAP_MODEL = "Device / Unusual LDAP Bind and Search Activity"


def test_a_directory_dump_after_a_single_bind_breaches_and_names_the_bind(
    learned: tuple[list[sensor_pb2.Record], OfflineResult],
) -> None:
    """One simple bind, one subtree search of the whole naming context returning 2,400 entries (what
    `ldapsearch -b DC=corp "(objectClass=*)"` or a collector's first pass does): no count of binds or
    searches is unusual, the entries returned are."""
    records, _ = learned
    bind = ldap_pb2.LdapMessage(
        opcode="bind", object="cn=helpdesk,dc=corp", result="success", argument="simple"
    )
    dump = ldap_pb2.LdapSearch(
        base_object="DC=corp", filter="(objectClass=*)", scope="tree", result_count=2400, result="success"
    )
    attack = [
        _stamp(sensor_pb2.Record(ldap=bind), START, ME, "10.0.0.3", 389),
        _stamp(sensor_pb2.Record(ldap_search=dump), START + 2, ME, "10.0.0.3", 389),
    ]
    found = [b for b in run(attack, records) if b.model == LDAP_MODEL]
    assert [b.device.ip for b in found] == [ME]
    assert found[0].severity in ("medium", "high", "critical")
    assert "2400 entries of DC=corp matching (objectClass=*)" in found[0].explanation
    assert "simple bind as cn=helpdesk,dc=corp (success)" in found[0].explanation


def test_machine_binds_and_dc_locator_reads_at_boot_are_no_enumeration(
    learned: tuple[list[sensor_pb2.Record], OfflineResult],
) -> None:
    """A Windows machine starting up: GSS-SPNEGO binds whose NTLM legs say "SASL bind in progress", and
    the DC locator's root-DSE reads (base scope, empty base, Netlogon attribute) - many of each."""
    records, _ = learned
    boot = []
    for i in range(6):
        for result in ("SASL bind in progress", "success"):
            msg = ldap_pb2.LdapMessage(opcode="bind", result=result, argument="SASL GSS-SPNEGO")
            boot.append(
                _stamp(
                    sensor_pb2.Record(ldap=msg), START + i * 2 + (result == "success"), ME, "10.0.0.3", 389
                )
            )
    for i in range(25):
        locator = ldap_pb2.LdapSearch(
            scope="base", filter="(&(DnsDomain=corp.example.)(NtVer=\\06\\00\\00\\00))", result_count=1,
            attributes=["Netlogon"],
        )  # fmt: skip
        boot.append(_stamp(sensor_pb2.Record(ldap_search=locator), START + i, ME, "10.0.0.3", 389))
    assert not [b for b in run(boot, records) if b.model == LDAP_MODEL and b.device.ip == ME]


def test_smb1_logons_without_ntlmssp_count_for_the_brute_force_models(
    learned: tuple[list[sensor_pb2.Record], OfflineResult],
) -> None:
    """Old tools log on over SMB1 without NTLMSSP (an LM/NTLMv1 response in the session setup itself):
    no NTLM record exists, the session setup's account and status are the evidence."""
    records, _ = learned
    attack = []
    for i, user in enumerate(["administrator", "admin", "root", "guest", "backup", "svc_sql", "test"]):
        setup = smb_pb2.SmbSessionSetup(
            version=smb_pb2.SMB_VERSION_1,
            status=0xC000006D,
            auth_mechanism="ntlmv1",
            username=user,
            domain="CORP",
        )
        attack.append(_stamp(sensor_pb2.Record(smb_session_setup=setup), START + i * 2, ME, "10.0.0.4", 445))
    breaches = run(attack, records)
    fired = {b.model for b in breaches if b.device.ip == ME}
    assert "Device / SMB Session Brute Force (Admin)" in fired
    assert "Device / SMB Session Brute Force (Non-Admin)" in fired
    admin = next(b for b in breaches if b.model == "Device / SMB Session Brute Force (Admin)")
    examples = [x for e in admin.evidence for x in e.examples]
    assert "CORP\\administrator (ntlmv1)" in examples


def test_a_dns_query_whose_roles_the_sensor_flipped_is_the_querier_s(
    learned: tuple[list[sensor_pb2.Record], OfflineResult],
) -> None:
    """The sensor saw the resolver's answers first (the queries were missed) and says so with
    roles_flipped: the flow's originator is the resolver, the querier is its responder."""
    records, _ = learned
    sweep = []
    for i in range(40):
        rec = dns(START + i * 0.5, f"{i}.1.0.10.in-addr.arpa", qtype=12, orig="10.0.0.2")
        rec.resp.ip = ip(ME)
        rec.resp.port = 53000 + i
        rec.dns.roles_flipped = True
        sweep.append(rec)
    breaches = [b for b in run(sweep, records) if b.model == "Device / Reverse DNS Sweep"]
    assert {b.device.ip for b in breaches} == {ME}


def test_every_catalog_model_is_raised_by_exactly_one_detector_of_the_wing() -> None:
    from collections import Counter

    from master.catalog import CATALOG
    from master.detectors import WING

    raised = Counter(model for detector in WING for model in detector.models)
    assert [m for m, n in raised.items() if n > 1] == []
    assert set(raised) == {m.name for m in CATALOG}


def test_service_tickets_asked_for_with_rc4_only_are_kerberoasting(
    learned: tuple[list[sensor_pb2.Record], OfflineResult],
) -> None:
    """Roasting tools ask for service tickets offering RC4 alone, so that even an account with AES keys
    gets a ticket that cracks offline; the offer is the evidence, whatever the KDC answered."""
    records, _ = learned
    roast = []
    for i, svc in enumerate(
        ["MSSQLSvc/db1:1433", "HTTP/intranet", "svc_backup/files", "CIFS/nas2", "ldap/app"]
    ):
        krb = kerberos_pb2.KerberosRecord(
            request_type="TGS", client="alice/CORP.EXAMPLE", service=svc, client_ciphers=["rc4-hmac"]
        )
        roast.append(_stamp(sensor_pb2.Record(kerberos=krb), START + i * 0.2, ME, "10.0.0.3", 88))
    found = [b for b in run(roast, records) if b.model == "Device / Kerberoasting Activity"]
    assert {b.device.ip for b in found} == {ME}
    assert "asked for rc4-hmac only" in found[0].explanation


def test_the_bind_in_progress_result_is_spelled_as_the_sensor_writes_it() -> None:
    from master.observe import LDAP_BIND_IN_PROGRESS
    from sensor.protocols.ldap.parser import RESULT_NAMES

    assert RESULT_NAMES[14] == LDAP_BIND_IN_PROGRESS
