"""Offline analysis runs the same pipeline in event time with state in memory."""

from __future__ import annotations

from master.offline import OfflineMaster
from tests.master.traffic import T0, office, scan
from vigil.config import MasterConfig


def test_offline_finds_the_scan_and_proposes_an_event_time_action() -> None:
    om = OfflineMaster(MasterConfig(response_mode="confirm", block_duration_s=900))
    first = om.process(office(T0, 90, devices=10))
    assert first.records > 0
    assert all(b.score < 60 for b in first.breaches)
    start = T0 + 90 * 60 + 10
    second = om.process(
        sorted(
            list(office(T0 + 90 * 60, 2, devices=10, seed=3)) + scan(start, "10.0.1.4"),
            key=lambda r: r.flow.start_time.ToNanoseconds(),
        )
    )
    scans = [b for b in second.breaches if b.device.ip == "10.0.1.4" and b.model == "Device / Network Scan"]
    assert len(scans) == 1
    assert scans[0].score >= 90
    assert [a.state for a in second.actions] == ["proposed"]
    action = second.actions[0].action
    # The action's clock is the breach's event time, not the wall clock of the replay.
    assert action.create_time.ToSeconds() == scans[0].time.ToSeconds()
    assert action.expire_time.ToSeconds() - action.create_time.ToSeconds() == 900


def test_offline_is_deterministic() -> None:
    records = list(office(T0, 20, devices=5)) + scan(T0 + 20 * 60 + 1, "10.0.1.2")
    a = OfflineMaster().process(records)
    b = OfflineMaster().process(records)
    assert [x.SerializeToString() for x in a.breaches] == [x.SerializeToString() for x in b.breaches]
