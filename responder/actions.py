"""Validated, immutable form of an ``Action``: what the state store keeps and the backends enforce.

Parsing is strict on purpose: a scope the responder does not understand is refused rather than widened,
because a caller that asked for a narrow block and silently got a broad one (or the reverse) is worse
than an error it can see.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from responder.protected import IPAddress, normalize_ip
from vigil.action_kinds import ACTION_KIND_NAMES, action_kind_name
from vigil.responder.v1 import responder_pb2 as pb

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TCP = 6
UDP = 17
_PROTOCOLS = {pb.IP_PROTOCOL_TCP: TCP, pb.IP_PROTOCOL_UDP: UDP}
_MAX_ID_LEN = 256

KIND_NAMES = ACTION_KIND_NAMES
# Kinds whose meaning depends on scopes; the others act on the whole target and reject scopes.
_SCOPED_KINDS = {
    pb.ACTION_KIND_BLOCK_CONNECTION,
    pb.ACTION_KIND_BLOCK_PORT,
    pb.ACTION_KIND_ENFORCE_PATTERN_OF_LIFE,
}


class InvalidAction(ValueError):
    """The request cannot be enforced as written (maps to gRPC INVALID_ARGUMENT)."""


@dataclass(frozen=True, slots=True)
class ScopeSpec:
    # None = any peer; a network (block_connection only) = every address in it.
    peer: IPAddress | IPNetwork | None
    port: int  # 0 = any port
    protocol: int | None  # IP protocol number; None = any


@dataclass(frozen=True, slots=True)
class ActiveAction:
    action_id: str
    kind: int  # pb.ActionKind value
    target: IPAddress
    scopes: tuple[ScopeSpec, ...]
    expire_at: float  # unix seconds, already capped

    @property
    def kind_name(self) -> str:
        return action_kind_name(self.kind)


def _parse_peer(raw: str, kind: int) -> IPAddress | IPNetwork:
    """A scope's peer: an address, or for block_connection a network in CIDR notation ("10.0.0.0/8")."""
    if "/" not in raw:
        return _parse_ip(raw, "scope peer_ip")
    if kind != pb.ACTION_KIND_BLOCK_CONNECTION:
        raise InvalidAction(f"scope peer_ip {raw!r}: a network is only allowed for block_connection")
    try:
        net = ipaddress.ip_network(raw.strip(), strict=False)
    except ValueError:
        raise InvalidAction(f"scope peer_ip {raw!r} is neither an address nor a network") from None
    if net.prefixlen == 0:
        raise InvalidAction(f"scope peer_ip {raw}: a /0 is every peer (use block_all_outgoing)")
    if net.prefixlen == net.max_prefixlen:
        # A one-address network is that address (and nftables lists it as one).
        return _parse_ip(str(net.network_address), "scope peer_ip")
    return net


def _parse_ip(raw: str, what: str) -> IPAddress:
    try:
        addr = normalize_ip(ipaddress.ip_address(raw.strip()))
    except ValueError:
        raise InvalidAction(f"{what} {raw!r} is not a single IP address") from None
    if addr.is_unspecified:
        raise InvalidAction(f"{what} {raw} is the unspecified address")
    return addr


def expire_seconds(action: pb.Action) -> float:
    """The requested expiry in unix seconds; refuses a missing or nonsensical one (never a long ban)."""
    if not action.HasField("expire_time"):
        raise InvalidAction("expire_time is required: every action must lift itself")
    ts = action.expire_time
    if ts.seconds <= 0 or not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidAction(f"expire_time {ts.seconds}s/{ts.nanos}ns is not a valid instant")
    value = ts.seconds + ts.nanos / 1e9
    if not math.isfinite(value):
        raise InvalidAction("expire_time is not finite")
    return value


def parse_action(action: pb.Action, now: float, max_duration_s: float) -> ActiveAction:
    """Validate ``action`` and cap its expiry to ``now + max_duration_s``."""
    action_id = action.action_id
    if not action_id or len(action_id) > _MAX_ID_LEN or not action_id.isprintable():
        raise InvalidAction(f"action_id must be 1-{_MAX_ID_LEN} printable characters")
    if action.kind not in KIND_NAMES:
        raise InvalidAction(f"kind {action.kind} is not a known action kind")
    expire = expire_seconds(action)
    if expire <= now:
        raise InvalidAction("expire_time is in the past")
    target = _parse_ip(action.target_ip, "target_ip")
    if action.scopes and action.kind not in _SCOPED_KINDS:
        raise InvalidAction(f"{KIND_NAMES[action.kind]} acts on the whole target and takes no scopes")
    scopes = tuple(_parse_scope(action.kind, target, s) for s in action.scopes)
    if action.kind in (pb.ACTION_KIND_BLOCK_CONNECTION, pb.ACTION_KIND_BLOCK_PORT) and not scopes:
        raise InvalidAction(f"{KIND_NAMES[action.kind]} needs at least one scope")
    return ActiveAction(
        action_id=action_id,
        kind=action.kind,
        target=target,
        scopes=tuple(dict.fromkeys(scopes)),  # drop repeats, keep order
        expire_at=min(expire, now + max_duration_s),
    )


def _parse_scope(kind: int, target: IPAddress, scope: pb.Scope) -> ScopeSpec:
    peer = _parse_peer(scope.peer_ip, kind) if scope.peer_ip else None
    if peer is not None and peer.version != target.version:
        raise InvalidAction(f"scope peer {peer} and target {target} are different address families")
    if scope.port > 65535:
        raise InvalidAction(f"scope port {scope.port} is out of range")
    if scope.protocol != pb.IP_PROTOCOL_UNSPECIFIED and scope.protocol not in _PROTOCOLS:
        raise InvalidAction(f"scope protocol {scope.protocol} is not supported")
    protocol = _PROTOCOLS.get(scope.protocol)
    if kind == pb.ACTION_KIND_BLOCK_CONNECTION and peer is None:
        raise InvalidAction("block_connection scopes need a peer_ip (use block_port for any peer)")
    if kind == pb.ACTION_KIND_BLOCK_PORT:
        if peer is not None:
            raise InvalidAction("block_port scopes must not name a peer (use block_connection)")
        if scope.port == 0 and protocol is None:
            raise InvalidAction("block_port scopes need a port or a protocol")
    if (
        kind == pb.ACTION_KIND_ENFORCE_PATTERN_OF_LIFE
        and peer is None
        and scope.port == 0
        and protocol is None
    ):
        raise InvalidAction("a pattern-of-life scope that allows everything allows nothing to be enforced")
    return ScopeSpec(peer=peer, port=scope.port, protocol=protocol)
