"""The analyst's rules on breaches made for the purpose: which breaches become one incident, in what phases,
told how; status changes; incidents through the real store (Valkey and memory) and back."""

from __future__ import annotations

import pytest

from master.analyst.attack import (
    PHASES,
    breach_phase,
    in_kill_chain_order,
    tactic_ids,
)
from master.analyst.incidents import (
    Analyst,
    TransitionError,
    incident_id,
    render,
    set_status,
    targets,
)
from master.analyst.story import megabytes
from master.attack import TECHNIQUES
from master.breaches import make_breach
from master.catalog import CATALOG
from master.features import Networks
from master.store import Commit, Keys, Store, WorkingSet
from vigil.alert.v1 import alert_pb2

T0 = 1_793_872_800.0  # a Thursday, 10:00 UTC
INTERNAL = ["10.0.0.0/8"]
HOUR = 3600.0


def device(ip: str, *tags: str) -> alert_pb2.DeviceRef:
    return alert_pb2.DeviceRef(device_id=f"dev-{ip}", ip=ip, tags=list(tags))


def breach(
    model: str,
    ip: str,
    t: float,
    *,
    score: int = 80,
    evidence: dict[str, tuple[float, list[str]]] | None = None,
    peer: str = "",
    explanation: str = "",
) -> alert_pb2.ModelBreach:
    return make_breach(
        model,
        device(ip),
        key=int(t),
        score=score,
        when=t,
        window=(t - 60, t),
        explanation=explanation or f"{ip} breached {model}",
        evidence=[
            alert_pb2.Evidence(feature=f, observed=v, examples=x) for f, (v, x) in (evidence or {}).items()
        ],
        techniques=CATALOG[model].techniques,
        uids=[],
        peer=peer,
    )


def run(analyst: Analyst, *units: list[alert_pb2.ModelBreach]) -> WorkingSet:
    """Units of breaches through the analyst over one working set (everything already loaded)."""
    ws = WorkingSet()
    for unit in units:
        for key in analyst.link_keys(unit):
            if ws.missing([key]):
                ws.add({key: None})
        analyst.take(ws, unit)
    return ws


def incidents(ws: WorkingSet) -> list[alert_pb2.Incident]:
    docs = [d for k, d in ws.writes().items() if ":incident:" in k and not d.get("merged_into")]
    return sorted((render(d) for d in docs), key=lambda i: i.start_time.seconds)


@pytest.fixture
def analyst() -> Analyst:
    return Analyst(Keys(), INTERNAL, gap_s=6 * HOUR)


SCAN = "Device / Network Scan"
BRUTE = "Device / SMB Session Brute Force (Non-Admin)"
UPLOAD = "Unusual Activity / Unusual External Data Transfer"
RARE = "Anomalous Connection / Rare External Endpoint"


def test_breaches_of_one_device_within_the_gap_are_one_incident(analyst: Analyst) -> None:
    ws = run(
        analyst,
        [breach(SCAN, "10.1.1.5", T0)],
        [breach(BRUTE, "10.1.1.5", T0 + 5 * HOUR)],
        # The gap counts from the device's last breach, not its first.
        [breach(UPLOAD, "10.1.1.5", T0 + 10 * HOUR, peer="203.0.113.9:443")],
    )
    [one] = incidents(ws)
    assert [d.ip for d in one.devices] == ["10.1.1.5"]
    assert len(one.breach_ids) == 3
    assert one.incident_id == incident_id(one.breach_ids[0])


def test_a_device_quiet_for_longer_than_the_gap_starts_a_new_incident(analyst: Analyst) -> None:
    ws = run(analyst, [breach(SCAN, "10.1.1.5", T0)], [breach(BRUTE, "10.1.1.5", T0 + 7 * HOUR)])
    assert [len(i.breach_ids) for i in incidents(ws)] == [1, 1]


def test_unrelated_devices_are_separate_incidents(analyst: Analyst) -> None:
    ws = run(analyst, [breach(SCAN, "10.1.1.5", T0), breach(BRUTE, "10.1.1.6", T0 + 60)])
    assert sorted(i.devices[0].ip for i in incidents(ws)) == ["10.1.1.5", "10.1.1.6"]


def test_attacker_then_victim_is_one_incident(analyst: Analyst) -> None:
    scan = breach(
        SCAN,
        "10.1.1.5",
        T0,
        evidence={"distinct_internal_destinations": (12, ["10.2.0.7:445", "10.2.0.8:445"])},
    )
    # The scanned host breaches afterwards (it was taken over and now calls out).
    victim = breach(UPLOAD, "10.2.0.7", T0 + HOUR, peer="203.0.113.9:443")
    ws = run(analyst, [scan], [victim])
    [one] = incidents(ws)
    assert [d.ip for d in one.devices] == ["10.1.1.5", "10.2.0.7"]
    assert "which 10.1.1.5 had reached before" in one.summary


def test_a_host_that_breached_before_it_was_named_is_not_a_victim(analyst: Analyst) -> None:
    earlier = breach(BRUTE, "10.2.0.7", T0 - 60)
    scan = breach(SCAN, "10.1.1.5", T0, evidence={"distinct_internal_destinations": (12, ["10.2.0.7:445"])})
    ws = run(analyst, [earlier], [scan])
    assert len(incidents(ws)) == 2


def test_devices_reaching_one_external_endpoint_are_one_incident(analyst: Analyst) -> None:
    a = breach(RARE, "10.1.1.5", T0, peer="203.0.113.9:443", score=25)
    b = breach(UPLOAD, "10.1.1.6", T0 + 2 * HOUR, peer="203.0.113.9:443")
    # An internal peer is not an "external endpoint": two devices talking to one server stay apart.
    c = breach(RARE, "10.1.1.7", T0 + 60, peer="10.2.0.1:80", score=25)
    d = breach(RARE, "10.1.1.8", T0 + 120, peer="10.2.0.1:80", score=25)
    ws = run(analyst, [a, c, d], [b])
    found = incidents(ws)
    assert sorted([d.ip for d in i.devices] for i in found) == [
        ["10.1.1.5", "10.1.1.6"],
        ["10.1.1.7"],
        ["10.1.1.8"],
    ]
    shared = next(i for i in found if len(i.devices) == 2)
    assert "also reached 203.0.113.9 after 10.1.1.5" in shared.summary


def test_a_breach_that_links_two_incidents_merges_them_into_the_older(analyst: Analyst) -> None:
    first = breach(SCAN, "10.1.1.5", T0, evidence={"distinct_internal_destinations": (12, ["10.2.0.7:445"])})
    other = breach(RARE, "10.1.1.9", T0 + 60, peer="203.0.113.9:443", score=25)
    # The victim of the first calls the host the second called: one story.
    bridge = breach(UPLOAD, "10.2.0.7", T0 + HOUR, peer="203.0.113.9:443")
    ws = run(analyst, [first], [other], [bridge])
    [one] = incidents(ws)
    assert one.incident_id == incident_id(first.breach_id)
    assert {d.ip for d in one.devices} == {"10.1.1.5", "10.1.1.9", "10.2.0.7"}
    gone = ws.get(Keys().incident(incident_id(other.breach_id)))
    assert gone is not None and gone["merged_into"] == one.incident_id


def test_the_same_breach_twice_is_told_once(analyst: Analyst) -> None:
    scan = breach(SCAN, "10.1.1.5", T0)
    ws = run(analyst, [scan], [scan])
    [one] = incidents(ws)
    assert list(one.breach_ids) == [scan.breach_id]


def test_phases_follow_the_kill_chain_not_the_clock(analyst: Analyst) -> None:
    ws = run(
        analyst,
        [
            breach(UPLOAD, "10.1.1.5", T0, peer="203.0.113.9:443"),
            breach(BRUTE, "10.1.1.5", T0 + 60),
            breach(SCAN, "10.1.1.5", T0 + 120),
            breach("Device / New Device", "10.1.1.5", T0 + 180, score=45),
        ],
    )
    [one] = incidents(ws)
    assert list(one.phases) == ["initial access", "reconnaissance", "credential access", "exfiltration"]
    assert [e.phase for e in one.timeline] == [
        "exfiltration",
        "credential access",
        "reconnaissance",
        "initial access",
    ]
    assert list(one.tactics) == ["TA0001", "TA0006", "TA0007", "TA0010"]
    # The strongest breach (80), raised for each of three further phases.
    assert one.score == 95


def test_the_attack_table_covers_every_catalog_technique() -> None:
    used = {t for model in CATALOG for t in model.techniques}
    assert used <= set(TECHNIQUES)
    for model in CATALOG:
        if model.techniques:
            assert breach_phase(model.name, model.techniques) in PHASES, model.name
    assert tactic_ids(["T1046", "T1110", "T1595.002"]) == ["TA0043", "TA0006", "TA0007"]
    # Several behaviours at once: the phase of the most improbable one.
    anomaly = "Unusual Activity / Significant Anomaly"
    assert breach_phase(anomaly, ("T1078",), ["auth", "fan-out"]) == "credential access"
    assert breach_phase(anomaly, ("T1078",), ["directory", "dns"]) == "reconnaissance"
    assert breach_phase(anomaly, ("T1078",)) == "initial access"
    assert in_kill_chain_order(["exfiltration", "reconnaissance", "bogus"]) == [
        "reconnaissance",
        "exfiltration",
    ]


def test_targets_are_internal_addresses_other_than_the_device() -> None:
    b = breach(
        SCAN,
        "10.1.1.5",
        T0,
        evidence={
            "x": (1, ["10.2.0.7:445", "10.1.1.5:80", "198.51.100.1:22", "CORP\\alice", "[fe80::1]:445"])
        },
    )
    assert targets(b, Networks(INTERNAL)) == ["10.2.0.7"]


def test_summary_states_the_numbers() -> None:
    new = breach("Device / New Device", "10.1.1.12", T0, score=45)
    new.device.tags.append("vendor:Raspberry Pi Trading Ltd")
    scan = breach(
        SCAN,
        "10.1.1.12",
        T0 + 30,
        evidence={"distinct_internal_destinations": (39, []), "failed_connections": (120, [])},
    )
    upload = breach(
        UPLOAD,
        "10.1.1.12",
        T0 + 20 * 60,
        evidence={"rare_endpoint_upload_kib": (7324.0, [])},
        peer="198.51.100.31:80",
    )
    analyst = Analyst(Keys(), INTERNAL)
    [one] = incidents(run(analyst, [new, scan, upload]))
    assert one.summary == (
        "10.1.1.12 (new device, Raspberry Pi Trading Ltd) appeared at 10:00 and within a minute "
        "contacted 39 internal hosts (120 failed connections); then 20 minutes later uploaded 7.5 MB to a "
        "rare external host (198.51.100.31)."
    )
    assert megabytes(51200) == "52.4 MB" and megabytes(1024 * 1024) == "1074 MB"


def test_a_scanning_tool_is_named_only_when_its_requests_name_it() -> None:
    analyst = Analyst(Keys(), INTERNAL)
    probes = breach(
        "Device / Anomalous Nmap Activity", "10.1.1.5", T0, evidence={"half_open_probes": (14, [])}
    )
    [one] = incidents(run(analyst, [probes]))
    assert one.summary.endswith("with the fingerprints of a scanning tool.")
    agent = "user agent 'Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)'"
    tool = breach(
        "Device / Attack and Recon Tools", "10.1.1.6", T0, evidence={"attack_tool_requests": (13, [agent])}
    )
    [two] = incidents(run(analyst, [tool]))
    assert two.summary.endswith("with the fingerprints of a scanning tool (nmap).")


def test_status_moves_only_where_an_operator_may_take_it(analyst: Analyst) -> None:
    ws = run(analyst, [breach(SCAN, "10.1.1.5", T0)])
    [key] = [k for k in ws.writes() if ":incident:" in k]
    doc = ws.get(key)
    assert doc is not None and doc["status"] == "new"
    acked = set_status(doc, "acknowledged")
    assert acked["status"] == "acknowledged" and acked["version"] == doc["version"] + 1
    assert set_status(acked, "acknowledged") is acked  # no change, no new version
    resolved = set_status(acked, "resolved")
    with pytest.raises(TransitionError):
        set_status(resolved, "acknowledged")
    with pytest.raises(TransitionError):
        set_status(doc, "closed")
    assert set_status(resolved, "new")["status"] == "new"
    assert render(acked).status == alert_pb2.INCIDENT_STATUS_ACKNOWLEDGED


def test_a_new_breach_brings_an_acknowledged_incident_back_and_a_resolved_one_stays_closed(
    analyst: Analyst,
) -> None:
    ws = run(analyst, [breach(SCAN, "10.1.1.5", T0)])
    [key] = [k for k in ws.writes() if ":incident:" in k]
    ws.put(key, set_status(ws.get(key) or {}, "acknowledged"))
    run_more = [breach(BRUTE, "10.1.1.5", T0 + 60)]
    for k in analyst.link_keys(run_more):
        if ws.missing([k]):
            ws.add({k: None})
    analyst.take(ws, run_more)
    doc = ws.get(key)
    assert doc is not None and doc["status"] == "new" and len(doc["breach_ids"]) == 2
    ws.put(key, set_status(doc, "resolved"))
    later = [breach(UPLOAD, "10.1.1.5", T0 + 120, peer="203.0.113.9:443")]
    for k in analyst.link_keys(later):
        if ws.missing([k]):
            ws.add({k: None})
    changes = analyst.take(ws, later)
    assert list(changes.touched) == [incident_id(later[0].breach_id)]


async def test_incidents_round_trip_through_the_store(store: Store) -> None:
    """Two units commit through the store (Valkey and memory) as the master does; an operator's change is
    versioned, and a stale one refused."""
    analyst = Analyst(store.keys, INTERNAL)

    async def unit(batch_id: str, breaches: list[alert_pb2.ModelBreach]) -> None:
        ws = WorkingSet(await store.load(analyst.link_keys(breaches)))
        ws.add(await store.load(ws.missing(analyst.incident_keys(ws, breaches))))
        changes = analyst.take(ws, breaches)
        commit = Commit((batch_id,), ws.writes(), incidents=changes.touched, merged_incidents=())
        assert await store.commit(commit)

    scan = breach(SCAN, "10.1.1.5", T0, evidence={"distinct_internal_destinations": (39, ["10.2.0.7:445"])})
    await unit("b-1", [scan])
    [doc] = await store.incidents()
    assert doc["incident_id"] == incident_id(scan.breach_id) and doc["version"] == 1
    await unit(
        "b-2", [breach(BRUTE, "10.1.1.5", T0 + 60), breach(UPLOAD, "10.2.0.7", T0 + 90, peer="1.2.3.4")]
    )
    [doc] = await store.incidents()
    incident = render(doc)
    assert [d.ip for d in incident.devices] == ["10.1.1.5", "10.2.0.7"]
    assert len(incident.timeline) == 3 and doc["version"] == 3
    assert render(await store.incident(incident.incident_id) or {}) == incident
    acked = set_status(doc, "acknowledged")
    assert await store.save_incident(acked, expected_version=3)
    assert not await store.save_incident(set_status(doc, "resolved"), expected_version=3)
    stored = await store.incident(incident.incident_id)
    assert stored is not None and stored["status"] == "acknowledged" and stored["version"] == 4
    # A breach joining it after the operator looked brings it back to "new".
    await unit("b-3", [breach(SCAN, "10.1.1.5", T0 + 120)])
    stored = await store.incident(incident.incident_id)
    assert stored is not None and stored["status"] == "new" and stored["version"] == 5
