"""Desired state: every action the responder knows, by id, with its lifecycle state.

RPCs only change this store; the reconcile loop makes the backend match it. Decisions taken here:

* ``Apply`` is idempotent on ``action_id``. The same id with the same enforcement content (kind,
  target, scopes, requested expiry) is a no-op answered with ``duplicate=True`` and the current
  status, whatever that status is (also after expiry or revocation). The same id with *different*
  content is refused with INVALID_ARGUMENT: silently ignoring it would let a caller believe an
  extension or a wider block took effect. Changing an action means a new id (and a Revoke of the old).
* Expiry is required, must be in the future, and is capped at ``max_action_duration_s``.
* A protected target is stored as REFUSED (so the refusal is auditable and repeatable) and never
  reaches the backend. A protected *peer* in a scope is fine: the peer is not what is contained.
* Inactive actions (expired, revoked, refused) are remembered for ``retention_s`` so a late retry is
  still recognised as a duplicate.
* With a state file, every change is written (atomically) before the RPC answers, so a restarted
  responder re-applies what is unexpired.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from responder.actions import ActiveAction, InvalidAction, expire_seconds, parse_action
from responder.metrics import ResponderMetrics
from responder.protected import ProtectedAssets
from vigil.log import get
from vigil.responder.v1 import responder_pb2 as pb

_log = get("responder.state")

ACTIVE_STATES = frozenset({pb.ACTION_STATE_PENDING, pb.ACTION_STATE_ACTIVE, pb.ACTION_STATE_FAILED})
STATE_FILE_VERSION = 1

StatusListener = Callable[[pb.ActionStatus], None]


class UnknownAction(KeyError):
    """Revoke of an id the responder does not know (maps to NOT_FOUND)."""


class ConflictingAction(InvalidAction):
    """An id reused with different content."""


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _content_key(action: pb.Action) -> bytes:
    """The parts of a request that decide enforcement; reason, ids and create_time may differ on retry."""
    probe = pb.Action(kind=action.kind, target_ip=action.target_ip, scopes=action.scopes)
    if action.HasField("expire_time"):
        probe.expire_time.CopyFrom(action.expire_time)
    return probe.SerializeToString(deterministic=True)


@dataclass
class Record:
    request: pb.Action  # as received: the idempotency comparison uses it
    parsed: ActiveAction | None  # None when refused before parsing could succeed
    state: int
    detail: str
    update_time: float
    ever_active: bool = False


class ActionStore:
    def __init__(
        self,
        *,
        protected: ProtectedAssets,
        max_action_duration_s: float,
        backend_name: str,
        metrics: ResponderMetrics,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.time,
        retention_s: float = 24 * 3600.0,
    ) -> None:
        self._protected = protected
        self._max_duration = max_action_duration_s
        self._backend_name = backend_name
        self._metrics = metrics
        self._state_file = state_file
        self._clock = clock
        self._retention = retention_s
        self._records: dict[str, Record] = {}
        self._listeners: list[StatusListener] = []

    # -- observation -------------------------------------------------------------------------------

    def add_listener(self, listener: StatusListener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: StatusListener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def status(self, record: Record) -> pb.ActionStatus:
        action = pb.Action()
        action.CopyFrom(record.request)
        if record.parsed is not None:
            # Report the expiry actually enforced (after capping), not the one asked for.
            action.expire_time.CopyFrom(_timestamp(record.parsed.expire_at))
        return pb.ActionStatus(
            action=action,
            state=record.state,  # type: ignore[arg-type]
            detail=record.detail,
            update_time=_timestamp(record.update_time),
            backend=self._backend_name,
        )

    def _transition(self, action_id: str, state: int, detail: str) -> None:
        record = self._records[action_id]
        if record.state == state and record.detail == detail:
            return
        record.state = state
        record.detail = detail
        record.update_time = self._clock()
        status = self.status(record)
        for listener in list(self._listeners):
            listener(status)

    def get(self, action_id: str) -> pb.ActionStatus | None:
        record = self._records.get(action_id)
        return self.status(record) if record is not None else None

    def statuses(self, include_inactive: bool = False) -> list[pb.ActionStatus]:
        return [
            self.status(r) for r in self._records.values() if include_inactive or r.state in ACTIVE_STATES
        ]

    def desired(self) -> list[ActiveAction]:
        """Actions the backend must enforce now."""
        return [r.parsed for r in self._records.values() if r.state in ACTIVE_STATES and r.parsed is not None]

    def next_expiry(self) -> float | None:
        times = [a.expire_at for a in self.desired()]
        return min(times) if times else None

    # -- changes -----------------------------------------------------------------------------------

    def apply(self, request: pb.Action) -> tuple[pb.ActionStatus, bool]:
        """Record an action. Returns (status, duplicate). Raises ``InvalidAction`` for a bad request."""
        now = self._clock()
        known = self._records.get(request.action_id)
        if known is not None:
            if _content_key(known.request) != _content_key(request):
                self._metrics.actions_refused.labels(reason="conflict").inc()
                raise ConflictingAction(
                    f"action_id {request.action_id!r} already names a different action; use a new id"
                )
            return self.status(known), True
        try:
            parsed = parse_action(request, now, self._max_duration)
        except InvalidAction:
            self._metrics.actions_refused.labels(reason="invalid").inc()
            raise
        requested = expire_seconds(request)
        stored = pb.Action()
        stored.CopyFrom(request)
        if not stored.HasField("create_time"):
            stored.create_time.CopyFrom(_timestamp(now))
        if self._protected.contains(parsed.target):
            self._metrics.actions_refused.labels(reason="protected").inc()
            record = Record(
                stored, parsed, pb.ACTION_STATE_REFUSED, f"target {parsed.target} is a protected asset", now
            )
            _log.warning("action_refused_protected", action_id=parsed.action_id, target=str(parsed.target))
        else:
            detail = "waiting for the backend"
            if parsed.expire_at < requested:
                detail += f"; expiry capped to {self._max_duration:g}s from now"
            record = Record(stored, parsed, pb.ACTION_STATE_PENDING, detail, now)
            _log.info(
                "action_accepted",
                action_id=parsed.action_id,
                kind=parsed.kind_name,
                target=str(parsed.target),
                expire_in_s=round(parsed.expire_at - now, 3),
                incident_id=request.incident_id,
            )
        self._records[parsed.action_id] = record
        try:
            self.save()
        except OSError:
            # Not durable, so not accepted: the caller gets an error and retries with the same id.
            del self._records[parsed.action_id]
            raise
        status = self.status(record)
        for listener in list(self._listeners):
            listener(status)
        return status, False

    def revoke(self, action_id: str, reason: str) -> pb.ActionStatus:
        record = self._records.get(action_id)
        if record is None:
            raise UnknownAction(action_id)
        if record.state in ACTIVE_STATES:
            self._transition(
                action_id, pb.ACTION_STATE_REVOKED, f"revoked: {reason}" if reason else "revoked"
            )
            _log.info("action_revoked", action_id=action_id, reason=reason)
            self.save()
        return self.status(record)

    def expire(self) -> list[str]:
        """Move actions past their expiry to EXPIRED and forget old inactive ones."""
        now = self._clock()
        expired = [
            action_id
            for action_id, r in self._records.items()
            if r.state in ACTIVE_STATES and r.parsed is not None and r.parsed.expire_at <= now
        ]
        for action_id in expired:
            self._transition(action_id, pb.ACTION_STATE_EXPIRED, "expired")
            self._metrics.actions_expired.inc()
            _log.info("action_expired", action_id=action_id)
        stale = [
            action_id
            for action_id, r in self._records.items()
            if r.state not in ACTIVE_STATES and now - r.update_time > self._retention
        ]
        for action_id in stale:
            del self._records[action_id]
        if expired or stale:
            self.save()
        return expired

    def mark_applied(self, action_ids: list[str]) -> None:
        changed = False
        for action_id in action_ids:
            record = self._records.get(action_id)
            if record is None or record.state not in ACTIVE_STATES:
                continue
            if not record.ever_active and record.parsed is not None:
                record.ever_active = True
                self._metrics.actions_applied.labels(kind=record.parsed.kind_name).inc()
            changed |= record.state != pb.ACTION_STATE_ACTIVE
            self._transition(action_id, pb.ACTION_STATE_ACTIVE, "enforced")
        self._update_gauge()
        if changed:
            self.save()

    def mark_failed(self, action_ids: list[str], detail: str) -> None:
        for action_id in action_ids:
            record = self._records.get(action_id)
            if record is not None and record.state in ACTIVE_STATES:
                self._transition(action_id, pb.ACTION_STATE_FAILED, detail)
        self._update_gauge()

    def _update_gauge(self) -> None:
        self._metrics.active_actions.set(
            sum(1 for r in self._records.values() if r.state == pb.ACTION_STATE_ACTIVE)
        )

    # -- persistence -------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the state file atomically (temp file, fsync, rename); no-op without a state file."""
        if self._state_file is None:
            return
        doc: dict[str, Any] = {
            "version": STATE_FILE_VERSION,
            "actions": [
                {
                    "action": json_format.MessageToDict(r.request),
                    "state": pb.ActionState.Name(r.state),  # type: ignore[arg-type]
                    "detail": r.detail,
                    "update_time": r.update_time,
                    "ever_active": r.ever_active,
                }
                for r in self._records.values()
            ],
        }
        path = self._state_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh, separators=(",", ":"))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def load(self) -> int:
        """Restore from the state file; returns how many actions are to be enforced again.

        Restored actions are checked again: the protected list may have grown since they were
        accepted, and the clock has moved on.
        """
        if self._state_file is None or not self._state_file.exists():
            return 0
        doc = json.loads(self._state_file.read_text())
        if doc.get("version") != STATE_FILE_VERSION:
            raise ValueError(f"{self._state_file}: unsupported state file version {doc.get('version')!r}")
        now = self._clock()
        for item in doc.get("actions", []):
            request = json_format.ParseDict(item["action"], pb.Action())
            state = pb.ActionState.Value(item["state"])
            parsed: ActiveAction | None
            try:
                # Capping is measured from create time so a restart does not extend an action.
                created = request.create_time.seconds + request.create_time.nanos / 1e9
                parsed = parse_action(request, min(now, created) if created > 0 else now, self._max_duration)
            except InvalidAction:
                parsed = None
            detail = str(item.get("detail", ""))
            if state in ACTIVE_STATES:
                if parsed is None or parsed.expire_at <= now:
                    state, detail = pb.ACTION_STATE_EXPIRED, "expired while the responder was down"
                elif self._protected.contains(parsed.target):
                    state, detail = pb.ACTION_STATE_REFUSED, f"target {parsed.target} is a protected asset"
                else:
                    state, detail = pb.ACTION_STATE_PENDING, "restored from state file"
            self._records[request.action_id] = Record(
                request,
                parsed,
                state,
                detail,
                float(item.get("update_time", now)),
                bool(item.get("ever_active")),
            )
        restored = len(self.desired())
        _log.info("state_restored", path=str(self._state_file), actions=len(self._records), active=restored)
        return restored
