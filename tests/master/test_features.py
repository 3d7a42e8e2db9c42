"""Failed-connection semantics and event-time windows with allowed lateness."""

from __future__ import annotations

import json

import pytest

from master.catalog import ANSWERED_DESTINATIONS, FAILED, INTERNAL_DESTINATIONS, UNANSWERED_DESTINATIONS
from master.features import SKETCH_K, DeviceWindows, Networks, Window, is_failed
from tests.master.traffic import CS, flow


@pytest.mark.parametrize(
    ("state", "history", "resp_pkts", "failed"),
    [
        (CS.CONN_STATE_S0, "S", 0, True),
        (CS.CONN_STATE_REJ, "Sr", 1, True),
        (CS.CONN_STATE_RSTOS0, "SR", 0, True),
        (CS.CONN_STATE_SH, "SF", 0, True),
        (CS.CONN_STATE_RSTR, "Sr", 1, True),  # reset without SYN-ACK: a rejection
        (CS.CONN_STATE_RSTR, "ShADr", 3, False),  # established, then aborted by the responder
        (CS.CONN_STATE_OTH, "D", 0, True),
        (CS.CONN_STATE_OTH, "Dd", 2, False),
        (CS.CONN_STATE_SF, "ShADadFf", 4, False),
    ],
)
def test_is_failed(state: CS.ValueType, history: str, resp_pkts: int, failed: bool) -> None:
    f = flow(0.0, "10.0.0.1", "10.0.0.2", state=state, resp_pkts=resp_pkts).flow
    f.history = history
    assert is_failed(f) is failed


def _add(w: DeviceWindows, t: float, dest: str, port: int, failed: bool, uid: str) -> Window | None:
    window = w.window_for(t)
    if window is not None:
        window.observe(INTERNAL_DESTINATIONS, dest, f"{dest}:{port}", uid)
        if failed:
            window.observe(FAILED, None, f"{dest}:{port}", uid)
    return window


def test_windows_close_after_lateness_and_drop_late_records() -> None:
    w = DeviceWindows(window_s=60.0, allowed_lateness_s=120.0)
    assert w.advance(10.0) == []
    _add(w, 10.0, "10.0.0.2", 445, False, "u1")
    _add(w, 70.0, "10.0.0.3", 445, True, "u2")
    # Window 0 ends at 60; it closes when the watermark passes 60 + 120.
    assert w.advance(179.0) == []
    _add(w, 20.0, "10.0.0.4", 445, False, "u3")  # late but allowed
    closed = w.advance(181.0)
    assert [c.index for c in closed] == [0]
    assert len(closed[0].destinations) == 2
    assert _add(w, 30.0, "10.0.0.9", 445, False, "u4") is None
    assert w.late_records == 1
    restored = DeviceWindows.from_dict(w.to_dict(), 60.0, 120.0)
    assert restored.to_dict() == w.to_dict()


def test_sets_are_exact_then_sketched_and_bounded() -> None:
    w = DeviceWindows(60.0, 0.0)
    for i in range(SKETCH_K):
        _add(w, 1.0, f"10.1.{i // 256}.{i % 256}", 22, True, f"u{i}")
    window = w.windows[0]
    assert window.value(INTERNAL_DESTINATIONS) == SKETCH_K and not window.sketched
    start = SKETCH_K
    for n in (1_000, 20_000):
        for i in range(start, n):
            _add(w, 1.0, f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 22, True, f"u{i}")
        estimate = window.value(INTERNAL_DESTINATIONS)
        # k-minimum-values with k = 64: within ~3 standard errors (1/sqrt(k) = 12.5 %).
        assert abs(estimate - n) / n < 0.4, (n, estimate)
        start = n
    assert len(window.destinations) == SKETCH_K and INTERNAL_DESTINATIONS in window.sketched
    assert window.failed == 20_000
    assert len(window.examples[INTERNAL_DESTINATIONS]) == 5 and len(window.uids[FAILED]) == 20
    # The state stays small however large the scan.
    assert len(json.dumps(w.to_dict())) < 4 * SKETCH_K * 21
    restored = DeviceWindows.from_dict(json.loads(json.dumps(w.to_dict())), 60.0, 0.0)
    assert restored.windows[0].value(INTERNAL_DESTINATIONS) == window.value(INTERNAL_DESTINATIONS)


def test_unanswered_addresses_exclude_those_that_answered() -> None:
    w = DeviceWindows(60.0, 0.0)
    window = w.window_for(1.0)
    assert window is not None
    for i in range(200):
        ip = f"10.2.0.{i}"
        window.observe(UNANSWERED_DESTINATIONS, ip, ip, "")
        if i % 4 == 0:
            window.observe(ANSWERED_DESTINATIONS, ip, "", "")  # the same address answered another probe
    assert abs(window.value(UNANSWERED_DESTINATIONS) - 150) / 150 < 0.4


def test_schema_1_windows_load_as_catalog_windows() -> None:
    v1 = {
        "schema": 1,
        "watermark": 70.0,
        "closed_through": None,
        "late_records": 0,
        "windows": [
            {
                "index": 1,
                "destinations": ["10.0.0.2", "10.0.0.3"],
                "saturated": False,
                "failed": 4,
                "examples": ["10.0.0.2:445"],
                "uids": ["u1"],
                "breached": True,
                "dirty": False,
            }
        ],
    }
    w = DeviceWindows.from_dict(v1, 60.0, 120.0)
    window = w.windows[1]
    assert window.value(INTERNAL_DESTINATIONS) == 2 and window.failed == 4
    assert window.breached == {"Device / Network Scan"}
    assert DeviceWindows.from_dict(w.to_dict(), 60.0, 120.0).to_dict() == w.to_dict()


def test_networks() -> None:
    nets = Networks(["10.0.0.0/8", "fc00::/7"])
    assert "10.2.3.4" in nets and "fd00::1" in nets
    assert "8.8.8.8" not in nets and "2001:db8::1" not in nets


def test_an_example_is_cut_to_a_bounded_length_whatever_the_traffic_carried() -> None:
    """A DNS name, an LDAP filter or a Kerberos principal is the sender's to choose: the window keeps at
    most MAX_EXAMPLE_CHARS of each example, so one hostile record cannot bloat a device's state."""
    from master.features import MAX_EXAMPLE_CHARS, Window

    window = Window(index=1)
    window.observe("ldap_searches", None, "(" + "a" * 100_000 + ")", "C1", 1)
    assert [len(e) for e in window.examples["ldap_searches"]] == [MAX_EXAMPLE_CHARS]
