"""Pure pieces: protected assets, validation, compilation to elements, the store's decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from responder.actions import InvalidAction, parse_action
from responder.backends.nftables import diff_script, parse_table
from responder.client import make_action
from responder.metrics import ResponderMetrics
from responder.protected import ProtectedAssets
from responder.rules import Element, compile_actions
from responder.state import ActionStore, ConflictingAction, UnknownAction
from vigil.responder.v1 import responder_pb2 as pb

NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def store(
    clock: Clock, protected: list[str] | None = None, state_file: Path | None = None, max_s: float = 3600
) -> tuple[ActionStore, CollectorRegistry]:
    registry = CollectorRegistry()
    return (
        ActionStore(
            protected=ProtectedAssets(protected or []),
            max_action_duration_s=max_s,
            backend_name="dryrun",
            metrics=ResponderMetrics(registry),
            state_file=state_file,
            clock=clock,
        ),
        registry,
    )


def conn(action_id: str, target: str = "10.0.0.5", duration: float = 60) -> pb.Action:
    scopes = [pb.Scope(peer_ip="10.0.0.9", port=443, protocol=pb.IP_PROTOCOL_TCP)]
    return make_action(action_id, pb.ACTION_KIND_BLOCK_CONNECTION, target, duration, scopes=scopes, now=NOW)


def test_protected_contains_networks_and_mapped_addresses() -> None:
    assets = ProtectedAssets(["10.0.0.53/32", "192.168.1.0/24", "fd00::/64"])
    assert assets.contains("10.0.0.53")
    assert assets.contains("192.168.1.200")
    assert assets.contains("::ffff:10.0.0.53")  # IPv4-mapped IPv6 must not slip through
    assert assets.contains("fd00::1")
    assert not assets.contains("10.0.0.54")
    assert not assets.contains("fd00:0:0:1::1")
    assert not ProtectedAssets([]).contains("10.0.0.1")
    with pytest.raises(ValueError):
        assets.contains("not-an-ip")


BLOCK_CONN = pb.ACTION_KIND_BLOCK_CONNECTION


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (pb.Action(action_id="x", kind=pb.ACTION_KIND_QUARANTINE, target_ip="10.0.0.1"), "required"),
        (make_action("x", pb.ACTION_KIND_QUARANTINE, "10.0.0.1", -5, now=NOW), "past"),
        (make_action("x", pb.ACTION_KIND_QUARANTINE, "10.0.0.0/8", 60, now=NOW), "single IP"),
        (make_action("x", pb.ACTION_KIND_QUARANTINE, "0.0.0.0", 60, now=NOW), "unspecified"),
        (make_action("", pb.ACTION_KIND_QUARANTINE, "10.0.0.1", 60, now=NOW), "action_id"),
        (make_action("x", pb.ACTION_KIND_UNSPECIFIED, "10.0.0.1", 60, now=NOW), "kind"),
        (make_action("x", pb.ACTION_KIND_BLOCK_CONNECTION, "10.0.0.1", 60, now=NOW), "at least one scope"),
        (
            make_action(
                "x", pb.ACTION_KIND_BLOCK_CONNECTION, "10.0.0.1", 60, scopes=[pb.Scope(port=80)], now=NOW
            ),
            "peer_ip",
        ),
        (
            make_action(
                "x", pb.ACTION_KIND_BLOCK_PORT, "10.0.0.1", 60, scopes=[pb.Scope(peer_ip="10.0.0.2")], now=NOW
            ),
            "must not name a peer",
        ),
        (
            make_action(
                "x",
                pb.ACTION_KIND_BLOCK_CONNECTION,
                "10.0.0.1",
                60,
                scopes=[pb.Scope(peer_ip="fd00::1")],
                now=NOW,
            ),
            "address families",
        ),
        (
            make_action("x", pb.ACTION_KIND_QUARANTINE, "10.0.0.1", 60, scopes=[pb.Scope(port=80)], now=NOW),
            "takes no scopes",
        ),
        (
            make_action(
                "x",
                pb.ACTION_KIND_BLOCK_CONNECTION,
                "10.0.0.1",
                60,
                scopes=[pb.Scope(peer_ip="0.0.0.0/0")],
                now=NOW,
            ),
            "use block_all_outgoing",
        ),
        (
            make_action(
                "x",
                pb.ACTION_KIND_ENFORCE_PATTERN_OF_LIFE,
                "10.0.0.1",
                60,
                scopes=[pb.Scope(peer_ip="10.0.0.0/8")],
                now=NOW,
            ),
            "only allowed for block_connection",
        ),
        (
            make_action(
                "x",
                pb.ACTION_KIND_BLOCK_CONNECTION,
                "10.0.0.1",
                60,
                scopes=[pb.Scope(peer_ip="10.0.0/8")],
                now=NOW,
            ),
            "neither an address nor a network",
        ),
    ],
)
def test_invalid_actions_are_refused(action: pb.Action, message: str) -> None:
    with pytest.raises(InvalidAction, match=message):
        parse_action(action, NOW, 3600)


def test_bad_timestamp_is_refused_not_a_long_ban() -> None:
    action = make_action("x", pb.ACTION_KIND_QUARANTINE, "10.0.0.1", 60, now=NOW)
    action.expire_time.nanos = -1
    with pytest.raises(InvalidAction):
        parse_action(action, NOW, 3600)


def test_expiry_is_capped() -> None:
    parsed = parse_action(
        make_action("x", pb.ACTION_KIND_QUARANTINE, "10.0.0.1", 10 * 86400, now=NOW), NOW, 3600
    )
    assert parsed.expire_at == NOW + 3600


def test_compile_one_description_for_both_families() -> None:
    v4 = parse_action(
        make_action(
            "a",
            pb.ACTION_KIND_BLOCK_CONNECTION,
            "10.0.0.1",
            60,
            scopes=[pb.Scope(peer_ip="10.0.0.2", port=53)],  # any protocol with a port: tcp and udp
            now=NOW,
        ),
        NOW,
        3600,
    )
    v6 = parse_action(make_action("b", pb.ACTION_KIND_QUARANTINE, "fd00::1", 120, now=NOW), NOW, 3600)
    pol = parse_action(
        make_action(
            "c",
            pb.ACTION_KIND_ENFORCE_PATTERN_OF_LIFE,
            "10.0.0.1",
            30,
            scopes=[pb.Scope(port=443, protocol=pb.IP_PROTOCOL_TCP)],
            now=NOW,
        ),
        NOW,
        3600,
    )
    assert compile_actions([v4, v6, pol]) == {
        Element("block_src_dst_proto_port_v4", ("10.0.0.1", "10.0.0.2", 6, 53)): NOW + 60,
        Element("block_src_dst_proto_port_v4", ("10.0.0.1", "10.0.0.2", 17, 53)): NOW + 60,
        Element("block_src_v6", ("fd00::1",)): NOW + 120,
        Element("block_dst_v6", ("fd00::1",)): NOW + 120,
        Element("pol_src_v4", ("10.0.0.1",)): NOW + 30,
        Element("allow_src_proto_port_v4", ("10.0.0.1", 6, 443)): NOW + 30,
    }


def test_overlapping_actions_keep_the_latest_expiry() -> None:
    a = parse_action(make_action("a", pb.ACTION_KIND_BLOCK_ALL_OUTGOING, "10.0.0.1", 60, now=NOW), NOW, 3600)
    b = parse_action(make_action("b", pb.ACTION_KIND_QUARANTINE, "10.0.0.1", 600, now=NOW), NOW, 3600)
    assert compile_actions([a, b])[Element("block_src_v4", ("10.0.0.1",))] == NOW + 600


def test_diff_adds_missing_deletes_extra_refreshes_changed() -> None:
    want = {
        Element("block_src_v4", ("10.0.0.1",)): NOW + 60,
        Element("block_src_v4", ("10.0.0.2",)): NOW + 60.2,
        Element("block_src_v4", ("10.0.0.3",)): NOW + 600,
    }
    installed: dict[Element, float | None] = {
        Element("block_src_v4", ("10.0.0.2",)): 59.0,  # matches: untouched
        Element("block_src_v4", ("10.0.0.3",)): 59.0,  # extended: replaced
        Element("block_src_v4", ("10.0.0.4",)): 300.0,  # extra: deleted
        Element("block_src_v4", ("10.0.0.5",)): 0.0,  # lapsing: left to the kernel
    }
    assert diff_script("vigil", installed, want, NOW) == [
        "add element inet vigil block_src_v4 { 10.0.0.1 timeout 60s }",
        "delete element inet vigil block_src_v4 { 10.0.0.3 }",
        "add element inet vigil block_src_v4 { 10.0.0.3 timeout 600s }",
        "delete element inet vigil block_src_v4 { 10.0.0.4 }",
    ]
    assert diff_script("vigil", {e: t - NOW for e, t in want.items()}, want, NOW) == []


def test_timeout_rounds_up_and_is_at_least_one_second() -> None:
    want = {
        Element("block_src_v4", ("10.0.0.1",)): NOW + 0.2,
        Element("block_dst_v4", ("10.0.0.1",)): NOW + 2.1,
    }
    assert diff_script("t", {}, want, NOW) == [
        "add element inet t block_dst_v4 { 10.0.0.1 timeout 3s }",
        "add element inet t block_src_v4 { 10.0.0.1 timeout 1s }",
    ]


def test_parse_table_reads_elements_and_flags_a_broken_layout() -> None:
    listing = {
        "nftables": [
            {
                "set": {
                    "name": "block_src_dst_proto_port_v4",
                    "type": ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service"],
                    "flags": ["timeout"],
                    "elem": [
                        {"elem": {"val": {"concat": ["10.0.0.1", "10.0.0.2", "tcp", 80]}, "expires": 5}}
                    ],
                }
            },
            {
                "set": {
                    "name": "block_src_v6",
                    "type": "ipv6_addr",
                    "flags": ["timeout"],
                    "elem": ["fd00::0:1"],
                }
            },
        ]
    }
    intact, elements = parse_table(listing)
    assert not intact  # most sets and every chain are missing
    assert elements == {
        Element("block_src_dst_proto_port_v4", ("10.0.0.1", "10.0.0.2", 6, 80)): 5.0,
        Element("block_src_v6", ("fd00::1",)): None,  # no timeout: will be replaced by one that expires
    }


def test_apply_is_idempotent_and_conflicts_are_refused() -> None:
    clock = Clock()
    s, registry = store(clock)
    first, dup = s.apply(conn("a1"))
    assert not dup and first.state == pb.ACTION_STATE_PENDING
    retry = conn("a1")
    retry.reason = "retried with another reason"
    again, dup = s.apply(retry)
    assert dup and again.state == pb.ACTION_STATE_PENDING
    assert len(s.desired()) == 1
    with pytest.raises(ConflictingAction):
        s.apply(conn("a1", target="10.0.0.6"))
    assert registry.get_sample_value("vigil_responder_actions_refused_total", {"reason": "conflict"}) == 1


def test_protected_target_is_refused_and_never_desired() -> None:
    clock = Clock()
    s, registry = store(clock, protected=["10.0.0.53/32"])
    for kind in (
        pb.ACTION_KIND_QUARANTINE,
        pb.ACTION_KIND_BLOCK_ALL_INCOMING,
        pb.ACTION_KIND_BLOCK_ALL_OUTGOING,
    ):
        status, _ = s.apply(make_action(f"p{kind}", kind, "10.0.0.53", 60, now=NOW))
        assert status.state == pb.ACTION_STATE_REFUSED
        assert "protected" in status.detail
    # A protected peer is fine: the target is what is contained.
    status, _ = s.apply(
        make_action(
            "ok",
            pb.ACTION_KIND_BLOCK_CONNECTION,
            "10.0.0.5",
            60,
            scopes=[pb.Scope(peer_ip="10.0.0.53", port=53)],
            now=NOW,
        )
    )
    assert status.state == pb.ACTION_STATE_PENDING
    assert [a.action_id for a in s.desired()] == ["ok"]
    assert registry.get_sample_value("vigil_responder_actions_refused_total", {"reason": "protected"}) == 3
    # The refusal is remembered: a retry is a duplicate that stays refused.
    status, dup = s.apply(make_action("p6", pb.ACTION_KIND_QUARANTINE, "10.0.0.53", 60, now=NOW))
    assert dup and status.state == pb.ACTION_STATE_REFUSED


def test_expiry_capping_expire_and_revoke() -> None:
    clock = Clock()
    s, registry = store(clock, max_s=100)
    status, _ = s.apply(conn("long", duration=10_000))
    assert status.action.expire_time.seconds == int(NOW + 100)
    assert "capped" in status.detail
    s.apply(conn("short", target="10.0.0.6", duration=10))
    s.mark_applied(["long", "short"])
    assert registry.get_sample_value("vigil_responder_active_actions") == 2
    clock.now += 11
    assert s.expire() == ["short"]
    assert s.get("short").state == pb.ACTION_STATE_EXPIRED  # type: ignore[union-attr]
    assert s.revoke("long", "analyst cleared").state == pb.ACTION_STATE_REVOKED
    assert s.revoke("long", "again").detail == "revoked: analyst cleared"  # idempotent
    with pytest.raises(UnknownAction):
        s.revoke("nope", "")
    assert s.desired() == []
    assert {st.action.action_id for st in s.statuses(include_inactive=True)} == {"long", "short"}
    assert s.statuses() == []
    assert registry.get_sample_value("vigil_responder_actions_expired_total") == 1
    assert (
        registry.get_sample_value("vigil_responder_actions_applied_total", {"kind": "block_connection"}) == 2
    )


def test_state_file_round_trip_reapplies_unexpired(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "state.json"
    s, _ = store(clock, state_file=path)
    s.apply(conn("keep", duration=600))
    s.apply(conn("gone", target="10.0.0.6", duration=5))
    s.apply(conn("revoked", target="10.0.0.7", duration=600))
    s.revoke("revoked", "")
    assert json.loads(path.read_text())["version"] == 1
    assert not list(tmp_path.glob(".state.json.*"))  # no temp files left behind

    clock.now += 10
    restored, _ = store(clock, state_file=path, protected=[])
    assert restored.load() == 1
    assert [a.action_id for a in restored.desired()] == ["keep"]
    assert restored.get("gone").state == pb.ACTION_STATE_EXPIRED  # type: ignore[union-attr]
    assert restored.get("revoked").state == pb.ACTION_STATE_REVOKED  # type: ignore[union-attr]
    # The same id after a restart is still a duplicate.
    assert restored.apply(conn("keep", duration=600))[1]

    # An address protected since the action was accepted is refused on restore.
    guarded, _ = store(clock, state_file=path, protected=["10.0.0.5/32"])
    assert guarded.load() == 0
    assert guarded.get("keep").state == pb.ACTION_STATE_REFUSED  # type: ignore[union-attr]


NET24 = {"prefix": {"addr": "10.77.2.0", "len": 24}}


def test_networks_as_peers_compile_to_prefix_elements() -> None:
    scopes = [pb.Scope(peer_ip="10.77.2.7/24"), pb.Scope(peer_ip="192.168.4.9/32")]
    act = parse_action(
        make_action("n", pb.ACTION_KIND_BLOCK_CONNECTION, "10.0.0.1", 60, scopes=scopes, now=NOW), NOW, 600
    )
    keys = {e.key for e in compile_actions([act])}
    # Host bits dropped; a /32 is the address itself (as nftables lists it back).
    assert keys == {("10.0.0.1", "10.77.2.0/24"), ("10.0.0.1", "192.168.4.9")}
    listing = {
        "nftables": [
            {
                "set": {
                    "name": "block_src_dst_v4",
                    "type": ["ipv4_addr", "ipv4_addr"],
                    "flags": ["interval", "timeout"],
                    "elem": [
                        {"elem": {"val": {"concat": ["10.0.0.1", NET24]}, "expires": 50}},
                        {"elem": {"val": {"concat": ["10.0.0.1", "192.168.4.9"]}, "expires": 50}},
                    ],
                }
            }
        ]
    }  # fmt: skip
    _, elements = parse_table(listing)
    assert {e.key for e in elements} == keys
