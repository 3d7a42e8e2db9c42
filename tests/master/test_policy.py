"""Policy: proportionate, bounded, idempotent, never on protected assets, capped per minute."""

from __future__ import annotations

import pytest

from master.policy import Policy, RateLimiter
from tests.conftest import REPO
from vigil.alert.v1 import alert_pb2
from vigil.responder.v1 import responder_pb2


def _breach(
    ip: str = "10.0.1.5",
    score: int = 90,
    breach_id: str = "brc-1",
    model: str = "Device / Network Scan",
    peer: str = "",
) -> alert_pb2.ModelBreach:
    return alert_pb2.ModelBreach(
        breach_id=breach_id,
        model=model,
        score=score,
        device=alert_pb2.DeviceRef(device_id="dev-1", ip=ip),
        explanation="10.0.1.5 contacted 212 distinct internal hosts in 60 s",
        peer_ip=peer,
    )


def _policy(**kw: object) -> Policy:
    options: dict[str, object] = {
        "mode": "autonomous",
        "action_min_score": 60,
        "block_duration_s": 3600.0,
        "max_actions_per_minute": 2,
        "protected_networks": ["10.0.0.53/32"],
        "internal_networks": ["10.0.0.0/8", "192.168.0.0/16"],
    }
    options.update(kw)
    return Policy(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "state"), [("autonomous", "pending"), ("confirm", "proposed"), ("observe", "observed")]
)
def test_modes(mode: str, state: str) -> None:
    decision = _policy(mode=mode).decide(_breach(), now=1000.0)
    assert decision.record is not None
    assert decision.record.state == state
    action = decision.record.action
    assert action.kind == responder_pb2.ACTION_KIND_BLOCK_ALL_OUTGOING
    assert action.target_ip == "10.0.1.5"
    assert action.expire_time.ToSeconds() == 1000 + 3600
    assert action.breach_id == "brc-1"


def test_action_id_is_deterministic_from_the_breach() -> None:
    a = _policy().decide(_breach(), now=1.0).record
    b = _policy().decide(_breach(), now=99.0).record
    c = _policy().decide(_breach(breach_id="brc-2"), now=1.0).record
    assert a is not None and b is not None and c is not None
    assert a.action.action_id == b.action.action_id != c.action.action_id


def test_guards() -> None:
    policy = _policy()
    assert policy.decide(_breach(score=59), 0.0).reason == "below_min_score"
    assert policy.decide(_breach(ip="10.0.0.53"), 0.0).reason == "protected"
    assert policy.decide(_breach(ip="not-an-ip"), 0.0).reason == "protected"
    other = alert_pb2.ModelBreach(breach_id="x", model="Device / Something Else", score=100)
    assert policy.decide(other, 0.0).reason == "no_playbook"


def test_rate_limit_per_minute_of_the_policy_clock() -> None:
    policy = _policy(max_actions_per_minute=2)
    reasons = [
        policy.decide(_breach(f"10.0.1.{i}", breach_id=f"b{i}"), now=100.0 + i).reason for i in range(4)
    ]
    assert reasons == ["decided", "decided", "rate_limited", "rate_limited"]
    assert policy.decide(_breach("10.0.1.9", breach_id="later"), now=161.0).reason == "decided"


def test_narrow_scope_blocks_only_internal_networks() -> None:
    record = _policy(narrow_scope=True).decide(_breach(), 0.0).record
    assert record is not None
    assert record.action.kind == responder_pb2.ACTION_KIND_BLOCK_CONNECTION
    assert [s.peer_ip for s in record.action.scopes] == ["10.0.0.0/8", "192.168.0.0/16"]


def test_rate_limiter_window() -> None:
    limiter = RateLimiter(1, period_s=10.0)
    assert limiter.allow(0.0)
    assert not limiter.allow(9.9)
    assert limiter.allow(10.0)


def test_playbook_is_proportionate_to_the_model() -> None:
    policy = _policy(max_actions_per_minute=100)
    brute = policy.decide(_breach("10.0.1.6", model="Device / SMB Session Brute Force (Admin)"), 0.0).record
    assert brute is not None
    assert brute.action.kind == responder_pb2.ACTION_KIND_BLOCK_PORT
    assert sorted(s.port for s in brute.action.scopes) == [139, 445]
    beacon = policy.decide(
        _breach("10.0.1.7", model="Compromise / Beaconing Activity To External Rare", peer="203.0.113.9"), 0.0
    ).record
    assert beacon is not None
    assert beacon.action.kind == responder_pb2.ACTION_KIND_BLOCK_CONNECTION
    assert [s.peer_ip for s in beacon.action.scopes] == ["203.0.113.9"]
    # Without a peer there is nothing connection-sized to block: no action rather than a bigger one.
    no_peer = _breach("10.0.1.8", model="Compromise / HTTP Beaconing to Rare Destination")
    assert policy.decide(no_peer, 0.0).reason == "no_playbook"
    for model in ("Device / New Device", "Compromise / DNS Tunnel", "Unusual Activity / Significant Anomaly"):
        assert policy.decide(_breach("10.0.1.9", model=model, score=100), 0.0).reason == "no_playbook"


def test_the_policy_acts_on_every_catalog_model_as_its_entry_says() -> None:
    """The response lives in the catalog entry: each model with one gets exactly that action kind, each
    without one gets none, and the policy names no model itself."""
    from master.catalog import CATALOG, Response

    kinds = {
        Response.STOP_OUTGOING: responder_pb2.ACTION_KIND_BLOCK_ALL_OUTGOING,
        Response.BLOCK_SMB: responder_pb2.ACTION_KIND_BLOCK_PORT,
        Response.BLOCK_PEER: responder_pb2.ACTION_KIND_BLOCK_CONNECTION,
    }
    assert {m.response for m in CATALOG} == set(Response)
    for i, model in enumerate(CATALOG):
        policy = _policy(max_actions_per_minute=100)
        decision = policy.decide(_breach(f"10.0.2.{i + 1}", model=model.name, peer="203.0.113.9"), 0.0)
        if model.response is Response.NONE:
            assert decision.reason == "no_playbook", model.name
        else:
            assert decision.record is not None, model.name
            assert decision.record.action.kind == kinds[model.response], model.name
    source = (REPO / "master" / "policy.py").read_text()
    assert not [m.name for m in CATALOG if m.name in source]


def test_one_scan_breaching_several_models_is_one_block() -> None:
    policy = _policy(max_actions_per_minute=100)
    models = ["Device / Network Scan", "Device / RDP Scan", "Device / Suspicious SMB Scanning Activity"]
    reasons = [policy.decide(_breach(model=m, breach_id=m), 10.0 + i).reason for i, m in enumerate(models)]
    assert reasons == ["decided", "already_acting", "already_acting"]
    # ...and a brute force by the same device is covered by its outgoing block too.
    brute = _breach(model="Device / SMB Session Brute Force (Non-Admin)", breach_id="bf")
    assert policy.decide(brute, 20.0).reason == "already_acting"
    # Once the block expires, the device can be acted on again.
    assert policy.decide(_breach(breach_id="next"), 10.0 + 3600.0).reason == "decided"
