"""Breach → the smallest bounded action that stops it, or a documented reason for doing nothing.

Playbook (each catalog entry in :mod:`master.catalog` carries its :class:`~master.catalog.Response`):

* scanning and attack tooling (Network Scan and its siblings, Anomalous Nmap Activity, Attack and Recon
  Tools, New Device with Attack Tools, Multiple Lateral Movement) → stop the device's outgoing connections;
* SMB Session Brute Force → block the device's SMB ports (445, 139), nothing else;
* beacons, HTTP command and control, a VPN to a rare endpoint, an unusual external transfer → block the
  device's connections to that one remote endpoint (the breach's ``peer_ip``);
* everything else (new devices, hostnames, rare endpoints, DNS tunnels, reverse sweeps, LDAP enumeration,
  significant anomalies, breach counts) → no automatic action: an analyst decides.

A device already under an action that covers a new one (same or wider, not expired) gets no second one
(reason ``already_acting``), so one scan that breaches six models is one block.

Scanning → by default (``master.scan_response: block_internal``) cut the device off from the *internal*
networks only — ``ACTION_KIND_BLOCK_CONNECTION`` with one network scope per internal network of its
address family — so it can no longer reach what it was mapping but its user keeps the internet;
``block_all_outgoing`` stops everything it originates. Either way the scanner's next connections to the
inside fail and every other host is untouched.

Guards, in order: model handled, score at or above ``action_min_score``, target not a protected asset,
at most ``max_actions_per_minute`` (the cap counts decisions in every mode, so "observe" shows exactly
what "autonomous" would have done). Every action expires; ids derive from the breach, so a retried or
replayed decision is the same action and the responder treats it as a no-op.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from master.catalog import CATALOG, Response
from master.features import Networks
from master.store import ActionRecord
from vigil.alert.v1 import alert_pb2
from vigil.responder.v1 import responder_pb2

_STATE_BY_MODE = {"autonomous": "pending", "confirm": "proposed", "observe": "observed"}
RESPONSE_MODES = tuple(_STATE_BY_MODE)
# Why a breach led to no action (Decision.reason when there is no record).
SKIP_REASONS = ("no_playbook", "below_min_score", "protected", "already_acting", "rate_limited")

SMB_PORTS = (445, 139)


def _version(ip: str) -> int | None:
    try:
        return ipaddress.ip_address(ip).version
    except ValueError:
        return None


def response_of(model: str) -> Response:
    """The response the catalog gives a model's breach; a model it does not know gets none."""
    spec = CATALOG.get(model)
    return spec.response if spec is not None else Response.NONE


def action_id(breach_id: str, kind: int) -> str:
    return "act-" + hashlib.sha256(f"{breach_id}|{kind}".encode()).hexdigest()[:20]


def _timestamp(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


class RateLimiter:
    """At most ``limit`` events in any 60 s of the caller's clock (wall time live, event time offline)."""

    def __init__(self, limit: int, period_s: float = 60.0) -> None:
        self.limit = limit
        self.period_s = period_s
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        while self._times and self._times[0] <= now - self.period_s:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


@dataclass(frozen=True)
class Decision:
    """``record`` is None when no action is taken; ``reason`` says why (bounded vocabulary, metric label)."""

    record: ActionRecord | None
    reason: str


class Policy:
    def __init__(
        self,
        *,
        mode: str,
        action_min_score: int,
        block_duration_s: float,
        max_actions_per_minute: int,
        protected_networks: Iterable[str],
        internal_networks: Iterable[str],
        narrow_scope: bool = False,
    ) -> None:
        if mode not in _STATE_BY_MODE:
            raise ValueError(f"unknown response mode {mode!r}")
        self.mode = mode
        self.action_min_score = action_min_score
        self.block_duration_s = block_duration_s
        self.protected = Networks(protected_networks)
        self.internal_networks = [str(ipaddress.ip_network(n, strict=False)) for n in internal_networks]
        self.narrow_scope = narrow_scope
        self.limiter = RateLimiter(max_actions_per_minute)
        # Actions decided and not yet expired: (target, kind, scopes) -> expiry on the policy's clock.
        self._active: dict[tuple[str, int, tuple[tuple[str, int, int], ...]], float] = {}

    def _is_protected(self, ip: str) -> bool:
        try:
            return ip in self.protected
        except ValueError:
            # An address we cannot parse is not one we can safely act on.
            return True

    def _playbook(
        self, breach: alert_pb2.ModelBreach
    ) -> tuple[responder_pb2.ActionKind.ValueType, list[responder_pb2.Scope]] | None:
        response = response_of(breach.model)
        if response is Response.STOP_OUTGOING:
            if self.narrow_scope:
                version = _version(breach.device.ip)
                scopes = [
                    responder_pb2.Scope(peer_ip=net)
                    for net in self.internal_networks
                    if ipaddress.ip_network(net).version == version
                ]
                if scopes:
                    return responder_pb2.ACTION_KIND_BLOCK_CONNECTION, scopes
            return responder_pb2.ACTION_KIND_BLOCK_ALL_OUTGOING, []
        if response is Response.BLOCK_SMB:
            tcp = responder_pb2.IP_PROTOCOL_TCP
            return responder_pb2.ACTION_KIND_BLOCK_PORT, [
                responder_pb2.Scope(port=p, protocol=tcp) for p in SMB_PORTS
            ]
        if response is Response.BLOCK_PEER and breach.peer_ip:
            return responder_pb2.ACTION_KIND_BLOCK_CONNECTION, [responder_pb2.Scope(peer_ip=breach.peer_ip)]
        return None

    def _covered(self, target: str, kind: int, scopes: list[responder_pb2.Scope], now: float) -> bool:
        """An unexpired action on ``target`` already blocks at least this much."""
        wanted = {(s.peer_ip, s.port, s.protocol) for s in scopes}
        for (ip, active_kind, active_scopes), expires in list(self._active.items()):
            if expires <= now:
                del self._active[(ip, active_kind, active_scopes)]
                continue
            if ip != target:
                continue
            if active_kind == responder_pb2.ACTION_KIND_BLOCK_ALL_OUTGOING:
                return True
            if active_kind == kind and wanted <= set(active_scopes):
                return True
        return False

    def decide(self, breach: alert_pb2.ModelBreach, now: float) -> Decision:
        playbook = self._playbook(breach)
        if playbook is None:
            return Decision(None, "no_playbook")
        kind, scopes = playbook
        if breach.score < self.action_min_score:
            return Decision(None, "below_min_score")
        target = breach.device.ip
        if not target or self._is_protected(target):
            return Decision(None, "protected")
        if any(s.peer_ip and "/" not in s.peer_ip and self._is_protected(s.peer_ip) for s in scopes):
            # Never cut a device off from a protected asset (its DNS server, its domain controller).
            return Decision(None, "protected")
        if self._covered(target, kind, scopes, now):
            return Decision(None, "already_acting")
        if not self.limiter.allow(now):
            return Decision(None, "rate_limited")
        key = tuple(sorted((s.peer_ip, s.port, s.protocol) for s in scopes))
        self._active[(target, kind, key)] = now + self.block_duration_s
        action = responder_pb2.Action(
            action_id=action_id(breach.breach_id, kind),
            kind=kind,
            target_ip=target,
            scopes=scopes,
            expire_time=_timestamp(now + self.block_duration_s),
            reason=f"{breach.model}: {breach.explanation}",
            breach_id=breach.breach_id,
            create_time=_timestamp(now),
        )
        return Decision(ActionRecord(action, _STATE_BY_MODE[self.mode], self.mode), "decided")
