"""Breach → the smallest bounded action that stops it, or a documented reason for doing nothing.

Network Scan → block the device's new outgoing connections. The proportionate action is to cut the scanner
off from the *internal* networks only (it can still reach the internet and keep its users working), which
in the responder contract means ``ACTION_KIND_BLOCK_CONNECTION`` with one scope per internal network. The
contract's ``Scope.peer_ip`` is defined as an address, not a network, so until it accepts a CIDR the policy
emits ``ACTION_KIND_BLOCK_ALL_OUTGOING`` (``narrow_scope=False``, the default): the bounded expiry keeps that
proportionate. Either way the scanner's next connections fail and every other host is untouched.

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

from master.features import Networks
from master.models.scan import NAME as SCAN_MODEL
from master.store import ActionRecord
from vigil.alert.v1 import alert_pb2
from vigil.responder.v1 import responder_pb2

_STATE_BY_MODE = {"autonomous": "pending", "confirm": "proposed", "observe": "observed"}


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

    def _is_protected(self, ip: str) -> bool:
        try:
            return ip in self.protected
        except ValueError:
            # An address we cannot parse is not one we can safely act on.
            return True

    def decide(self, breach: alert_pb2.ModelBreach, now: float) -> Decision:
        if breach.model != SCAN_MODEL:
            return Decision(None, "no_playbook")
        if breach.score < self.action_min_score:
            return Decision(None, "below_min_score")
        target = breach.device.ip
        if not target or self._is_protected(target):
            return Decision(None, "protected")
        if not self.limiter.allow(now):
            return Decision(None, "rate_limited")
        if self.narrow_scope:
            kind = responder_pb2.ACTION_KIND_BLOCK_CONNECTION
            scopes = [responder_pb2.Scope(peer_ip=net) for net in self.internal_networks]
        else:
            kind = responder_pb2.ACTION_KIND_BLOCK_ALL_OUTGOING
            scopes = []
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
