"""The console's operations over the master's state in Redis: what both the gRPC and the HTTP API call.

Every operation takes its request protobuf and the caller (a :class:`~console.auth.Principal`) and returns
its response protobuf, so the two transports are thin and cannot drift apart. Changes need a reason, are
appended to the audit list (``<p>:audit``) with their actor and logged as one JSON line.

Actions go to the responder the way the master's dispatcher sends them (master/respond.py): a confirmed
proposal becomes "pending" (due now) and is delivered at once; if the responder cannot be reached it stays
pending and the master's dispatcher retries it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message

from master.analyst.incidents import TransitionError, render, set_status, status_name, stored_breaches
from master.api.auth import Principal
from master.api.pattern import device as device_view
from master.breaches import seconds, timestamp
from master.respond import Dispatcher
from master.store import ActionRecord, RedisStore, decode, encode
from vigil.alert.v1 import alert_pb2
from vigil.config import SEVERITIES
from vigil.console.v1 import console_pb2 as pb
from vigil.log import get
from vigil.responder.v1 import responder_pb2

log = get("console")

DEFAULT_PAGE = 50
MAX_PAGE = 500
# Breach stream entries one ListBreaches call reads at most, however selective its filters.
MAX_SCAN = 20_000
# Action records one ListActions call reads at most.
MAX_ACTIONS = 10_000
MAX_REASON = 500
# Audit entries kept (the oldest beyond this are dropped): a year of a busy operator.
MAX_AUDIT = 1_000_000
# Actions that are over: shown by ListActions only with include_inactive.
_INACTIVE = frozenset({"refused", "failed", "expired", "rejected", "revoked", "replaced", "observed"})


class Responder(Protocol):
    """What the console asks of the responder (responder.client.ResponderClient)."""

    async def apply(self, action: responder_pb2.Action) -> responder_pb2.ApplyResponse: ...

    async def revoke(self, action_id: str, reason: str = "") -> responder_pb2.ActionStatus: ...

    async def list(self, include_inactive: bool = False) -> list[responder_pb2.ActionStatus]: ...

    async def close(self) -> None: ...


class NotFound(Exception):
    pass


class Invalid(Exception):
    pass


class Conflict(Exception):
    """The thing is not in a state that allows the change (a confirmed action confirmed again)."""


class Unavailable(Exception):
    """The responder or the store cannot be reached; nothing was changed."""


def _page(size: int) -> int:
    return min(size or DEFAULT_PAGE, MAX_PAGE)


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise Invalid("a reason is required for every change (it is audited)")
    if len(reason) > MAX_REASON:
        raise Invalid(f"reason longer than {MAX_REASON} characters")
    return reason


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _record_pb(record: ActionRecord) -> pb.ActionRecord:
    return pb.ActionRecord(
        action=record.action,
        state=record.state,
        mode=record.mode,
        detail=record.detail,
        attempts=record.attempts,
    )


@dataclass(frozen=True)
class Suppression:
    suppression_id: str
    model: str
    device_id: str
    until: float

    def hides(self, breach: alert_pb2.ModelBreach) -> bool:
        """Retroactive: every matching breach timed before the suppression ends, earlier ones included."""
        return (
            breach.model == self.model
            and (not self.device_id or breach.device.device_id == self.device_id)
            and seconds(breach.time) < self.until
        )


class Console:
    def __init__(
        self,
        store: RedisStore,
        link: Responder | None,
        window_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.keys = store.keys
        self.redis = store.client
        self.link = link
        self.window_s = window_s
        self.clock = clock

    # -- audit -----------------------------------------------------------------------------------------

    async def audit(
        self, who: Principal, via: str, operation: str, target: str, reason: str, outcome: str
    ) -> None:
        entry = {
            "time": self.clock(),
            "actor": who.name,
            "role": who.role,
            "operation": operation,
            "target": target,
            "reason": reason,
            "outcome": outcome,
            "via": via,
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self.keys.audit, encode(entry))
            pipe.ltrim(self.keys.audit, -MAX_AUDIT, -1)
            await pipe.execute()
        log.info("console_change", **entry)

    async def list_audit(self, req: pb.ListAuditRequest, who: Principal, via: str) -> pb.ListAuditResponse:
        start = int(req.page_token or 0)
        size = _page(req.page_size)
        # Newest first: index -1 is the newest entry.
        raws = await self.redis.lrange(self.keys.audit, -(start + size), -(start + 1)) if size else []
        entries = []
        for raw in reversed(raws):
            doc = decode(raw) or {}
            entries.append(
                pb.AuditEntry(
                    time=timestamp(float(doc.get("time", 0.0))),
                    **{
                        k: str(doc.get(k, "")) for k in pb.AuditEntry.DESCRIPTOR.fields_by_name if k != "time"
                    },
                )
            )
        more = len(raws) == size and await self.redis.llen(self.keys.audit) > start + size
        return pb.ListAuditResponse(entries=entries, next_page_token=str(start + size) if more else "")

    # -- devices ---------------------------------------------------------------------------------------

    async def _devices(self, ids: list[str]) -> list[pb.Device]:
        if not ids:
            return []
        keys = self.keys
        docs = await self.store.load(
            [k for i in ids for k in (keys.device(i), keys.beacons(i), keys.count_model(i))]
        )
        out = []
        for i in ids:
            doc = docs[keys.device(i)]
            if doc is not None:
                out.append(device_view(doc, docs[keys.beacons(i)], docs[keys.count_model(i)], self.window_s))
        return out

    async def list_devices(
        self, req: pb.ListDevicesRequest, who: Principal, via: str
    ) -> pb.ListDevicesResponse:
        ids = sorted(_text(i) for i in await self.redis.smembers(self.keys.devices))
        after = [i for i in ids if i > req.page_token] if req.page_token else ids
        page = after[: _page(req.page_size)]
        more = len(after) > len(page)
        return pb.ListDevicesResponse(
            devices=await self._devices(page), next_page_token=page[-1] if more and page else ""
        )

    async def get_device(self, req: pb.GetDeviceRequest, who: Principal, via: str) -> pb.GetDeviceResponse:
        found = await self._devices([req.device_id]) if req.device_id else []
        if not found:
            raise NotFound(f"no device {req.device_id!r}")
        return pb.GetDeviceResponse(device=found[0])

    # -- breaches --------------------------------------------------------------------------------------

    async def suppressions(self) -> list[Suppression]:
        raw = await self.redis.hgetall(self.keys.suppressions)
        out = []
        for value in raw.values():
            doc = decode(value) or {}
            out.append(
                Suppression(
                    str(doc["suppression_id"]), str(doc["model"]), str(doc["device_id"]), float(doc["until"])
                )
            )
        return out

    async def list_breaches(
        self, req: pb.ListBreachesRequest, who: Principal, via: str
    ) -> pb.ListBreachesResponse:
        if req.min_severity and req.min_severity not in SEVERITIES:
            raise Invalid(f"min_severity must be one of {', '.join(SEVERITIES)}")
        lowest = SEVERITIES.index(req.min_severity) if req.min_severity else 0
        since = seconds(req.since_time) if req.HasField("since_time") else None
        until = seconds(req.until_time) if req.HasField("until_time") else None
        hidden = [] if req.include_suppressed else await self.suppressions()

        def wanted(b: alert_pb2.ModelBreach) -> bool:
            t = seconds(b.time)
            return (
                (not req.device_id or b.device.device_id == req.device_id)
                and (not req.model or b.model == req.model)
                and (b.severity not in SEVERITIES or SEVERITIES.index(b.severity) >= lowest)
                and (since is None or t >= since)
                and (until is None or t < until)
                and not any(s.hides(b) for s in hidden)
            )

        size = _page(req.page_size)
        found: list[alert_pb2.ModelBreach] = []
        newest = f"({req.page_token}" if req.page_token else "+"
        scanned, last_id, ended = 0, "", False
        while len(found) < size and scanned < MAX_SCAN:
            entries = await self.redis.xrevrange(self.keys.breaches, max=newest, min="-", count=500)
            if not entries:
                ended = True
                break
            for entry_id, fields in entries:
                scanned += 1
                last_id = _text(entry_id)
                payload = fields.get(b"pb") if fields else None
                if not isinstance(payload, bytes):
                    continue
                breach = alert_pb2.ModelBreach.FromString(payload)
                if wanted(breach):
                    found.append(breach)
                    if len(found) == size:
                        break
            newest = f"({last_id}"
        acked = await self.redis.hmget(self.keys.acks, [b.breach_id for b in found]) if found else []
        return pb.ListBreachesResponse(
            breaches=found,
            next_page_token="" if ended or not last_id else last_id,
            acknowledged_breach_ids=[b.breach_id for b, a in zip(found, acked, strict=True) if a is not None],
        )

    # -- incidents -------------------------------------------------------------------------------------

    async def _visible(self, doc: dict[str, Any], hidden: list[Suppression]) -> bool:
        return not hidden or not all(any(s.hides(b) for s in hidden) for b in stored_breaches(doc))

    async def list_incidents(
        self, req: pb.ListIncidentsRequest, who: Principal, via: str
    ) -> pb.ListIncidentsResponse:
        start = int(req.page_token or 0)
        size = _page(req.page_size)
        docs = await self.store.incidents(limit=start + size + 1)
        hidden = await self.suppressions()
        page = docs[start : start + size]
        shown = [
            render(d)
            for d in page
            if await self._visible(d, hidden)
            and (not req.status or status_name(req.status) == d.get("status", "new"))
        ]
        more = len(docs) > start + size
        return pb.ListIncidentsResponse(incidents=shown, next_page_token=str(start + size) if more else "")

    async def _incident(self, incident_id: str) -> dict[str, Any]:
        doc = await self.store.incident(incident_id) if incident_id else None
        if doc is None:
            raise NotFound(f"no incident {incident_id!r}")
        return doc

    async def get_incident(
        self, req: pb.GetIncidentRequest, who: Principal, via: str
    ) -> pb.GetIncidentResponse:
        return pb.GetIncidentResponse(incident=render(await self._incident(req.incident_id)))

    async def _set_status(self, incident_id: str, status: str) -> dict[str, Any]:
        # A breach may join while we change it: read again and retry (bounded).
        for _ in range(5):
            doc = await self._incident(incident_id)
            try:
                changed = set_status(doc, status)
            except TransitionError as exc:
                raise Conflict(str(exc)) from None
            if changed is doc or await self.store.save_incident(changed, int(doc.get("version", 0))):
                return changed
        raise Unavailable(f"incident {incident_id} kept changing; try again")

    async def set_incident_status(
        self, req: pb.SetIncidentStatusRequest, who: Principal, via: str
    ) -> pb.SetIncidentStatusResponse:
        reason = _reason(req.reason)
        if not req.status:
            raise Invalid("status is required")
        doc = await self._set_status(req.incident_id, status_name(req.status))
        await self.audit(who, via, "SetIncidentStatus", req.incident_id, reason, doc["status"])
        return pb.SetIncidentStatusResponse(incident=render(doc))

    async def acknowledge(
        self, req: pb.AcknowledgeRequest, who: Principal, via: str
    ) -> pb.AcknowledgeResponse:
        reason = _reason(req.reason)
        if req.id.startswith("inc-"):
            doc = await self._set_status(req.id, "acknowledged")
            outcome = str(doc["status"])
        else:
            if not req.id or not await self._breach_exists(req.id):
                raise NotFound(f"no breach {req.id!r}")
            ack = {"actor": who.name, "time": self.clock(), "reason": reason}
            await self.redis.hset(self.keys.acks, req.id, encode(ack))
            outcome = "acknowledged"
        await self.audit(who, via, "Acknowledge", req.id, reason, outcome)
        return pb.AcknowledgeResponse()

    async def _breach_exists(self, breach_id: str) -> bool:
        newest = "+"
        for _ in range(MAX_SCAN // 500):
            entries = await self.redis.xrevrange(self.keys.breaches, max=newest, min="-", count=500)
            if not entries:
                return False
            if any(f and _text(f.get(b"breach_id", b"")) == breach_id for _, f in entries):
                return True
            newest = f"({_text(entries[-1][0])}"
        return False

    async def suppress(self, req: pb.SuppressRequest, who: Principal, via: str) -> pb.SuppressResponse:
        reason = _reason(req.reason)
        if not req.model:
            raise Invalid("model is required")
        duration = req.duration.ToNanoseconds() / 1e9 if req.HasField("duration") else 0.0
        if duration <= 0:
            raise Invalid("duration must be positive (every suppression ends)")
        now = self.clock()
        ident = (
            "sup-" + hashlib.sha256(f"{req.model}|{req.device_id}|{now}|{who.name}".encode()).hexdigest()[:16]
        )
        doc = {
            "suppression_id": ident,
            "model": req.model,
            "device_id": req.device_id,
            "until": now + duration,
            "actor": who.name,
            "reason": reason,
            "time": now,
        }
        await self.redis.hset(self.keys.suppressions, ident, encode(doc))
        target = f"{req.model} on {req.device_id or 'every device'}"
        await self.audit(who, via, "Suppress", ident, reason, f"{target} until {now + duration:.0f}")
        return pb.SuppressResponse(suppression_id=ident)

    # -- actions ---------------------------------------------------------------------------------------

    async def _records(self) -> list[ActionRecord]:
        keys = []
        async for raw in self.redis.scan_iter(match=self.keys.action("*"), count=1000):
            keys.append(_text(raw))
            if len(keys) >= MAX_ACTIONS:
                break
        docs = await self.store.load(keys)
        records = [ActionRecord.from_doc(d) for d in docs.values() if d is not None]
        return sorted(records, key=lambda r: (-r.action.create_time.ToNanoseconds(), r.action.action_id))

    async def list_actions(
        self, req: pb.ListActionsRequest, who: Principal, via: str
    ) -> pb.ListActionsResponse:
        records = [r for r in await self._records() if req.include_inactive or r.state not in _INACTIVE]
        statuses: list[responder_pb2.ActionStatus] = []
        if self.link is not None:
            try:
                statuses = await self.link.list(req.include_inactive)
            except grpc.aio.AioRpcError as exc:
                log.warning("responder_list_failed", code=exc.code().name)
        return pb.ListActionsResponse(actions=statuses, records=[_record_pb(r) for r in records])

    async def _action(self, action_id: str) -> ActionRecord:
        record = await self.store.action(action_id) if action_id else None
        if record is None:
            raise NotFound(f"no action {action_id!r}")
        return record

    def _need_link(self) -> Responder:
        if self.link is None:
            raise Unavailable("no responder is configured (master.responder_address)")
        return self.link

    async def confirm_action(
        self, req: pb.ConfirmActionRequest, who: Principal, via: str
    ) -> pb.ConfirmActionResponse:
        reason = _reason(req.reason)
        record = await self._action(req.action_id)
        if record.state != "proposed":
            raise Conflict(
                f"action {req.action_id} is {record.state}; only a proposed action can be confirmed"
            )
        link = self._need_link()
        # The action runs its full duration from the confirmation, not from the proposal.
        action = record.action
        now = self.clock()
        span = seconds(action.expire_time) - seconds(action.create_time)
        action.create_time.CopyFrom(timestamp(now))
        action.expire_time.CopyFrom(timestamp(now + span))
        action.reason = f"{action.reason} (confirmed by {who.name}: {reason})"[:1000]
        record.state, record.detail = "pending", f"confirmed by {who.name}"
        await self.store.update_action(record, now)
        status = await self._deliver(link, record)
        await self.audit(who, via, "ConfirmAction", req.action_id, reason, record.state)
        return pb.ConfirmActionResponse(status=status, record=_record_pb(record))

    async def _deliver(self, link: Responder, record: ActionRecord) -> responder_pb2.ActionStatus | None:
        """Deliver as the master's dispatcher does; a failure leaves it pending for the master to retry."""
        answers: list[responder_pb2.ActionStatus] = []

        class _Capture:
            async def apply(self, action: responder_pb2.Action) -> responder_pb2.ApplyResponse:
                response = await link.apply(action)
                answers.append(response.status)
                return response

            async def close(self) -> None:
                return None

        await Dispatcher(self.store, _Capture(), clock=self.clock).deliver(record)
        return answers[0] if answers else None

    async def extend_action(
        self, req: pb.ExtendActionRequest, who: Principal, via: str
    ) -> pb.ExtendActionResponse:
        reason = _reason(req.reason)
        extra = req.extension.ToNanoseconds() / 1e9 if req.HasField("extension") else 0.0
        if extra <= 0:
            raise Invalid("extension must be positive")
        record = await self._action(req.action_id)
        if record.state not in ("applied", "pending"):
            raise Conflict(
                f"action {req.action_id} is {record.state}; only an applied action can be extended"
            )
        link = self._need_link()
        # The responder keeps an action id's expiry for good, so a longer block is a new action that
        # replaces the old: applied first, then the old one revoked (no gap in between).
        old = record.action
        successor = responder_pb2.Action()
        successor.CopyFrom(old)
        expiry = max(seconds(old.expire_time), self.clock()) + extra
        successor.action_id = "act-" + hashlib.sha256(f"{old.action_id}|{expiry}".encode()).hexdigest()[:20]
        successor.expire_time.CopyFrom(timestamp(expiry))
        successor.create_time.CopyFrom(timestamp(self.clock()))
        successor.reason = f"{old.reason} (extended by {who.name}: {reason})"[:1000]
        new = ActionRecord(successor, "pending", "operator", detail=f"extends {old.action_id}")
        await self.store.update_action(new, self.clock())
        status = await self._deliver(link, new)
        if new.state != "applied":
            await self.audit(who, via, "ExtendAction", req.action_id, reason, f"failed: {new.detail}")
            raise Unavailable(f"the responder did not take the extension: {new.state} {new.detail}")
        await self._revoke(link, old.action_id, f"extended as {successor.action_id}")
        record.state, record.detail = "replaced", f"extended as {successor.action_id} by {who.name}"
        await self.store.update_action(record, None)
        await self.audit(
            who, via, "ExtendAction", req.action_id, reason, f"extended as {successor.action_id}"
        )
        return pb.ExtendActionResponse(status=status, record=_record_pb(new))

    async def _revoke(
        self, link: Responder, action_id: str, reason: str
    ) -> responder_pb2.ActionStatus | None:
        try:
            return await link.revoke(action_id, reason)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None  # never reached the responder: nothing to lift
            raise Unavailable(f"the responder did not answer: {exc.code().name}") from None

    async def clear_action(
        self, req: pb.ClearActionRequest, who: Principal, via: str
    ) -> pb.ClearActionResponse:
        reason = _reason(req.reason)
        record = await self._action(req.action_id)
        status = None
        if record.state == "proposed":
            record.state = "rejected"
        elif record.state in ("pending", "applied"):
            status = await self._revoke(self._need_link(), req.action_id, f"{who.name}: {reason}")
            record.state = "revoked"
        else:
            raise Conflict(f"action {req.action_id} is {record.state}; nothing to clear")
        record.detail = f"cleared by {who.name}"
        await self.store.update_action(record, None)
        await self.audit(who, via, "ClearAction", req.action_id, reason, record.state)
        return pb.ClearActionResponse(status=status, record=_record_pb(record))


@dataclass(frozen=True)
class Operation:
    """One RPC: its request and response types, whether it changes anything, and the method doing it."""

    name: str
    request: type[Message]
    response: type[Message]
    change: bool
    method: Callable[[Console, Any, Principal, str], Awaitable[Message]]


def _op(name: str, method: Callable[..., Awaitable[Message]], change: bool = False) -> Operation:
    desc = pb.DESCRIPTOR.services_by_name["ConsoleService"].methods_by_name[name]
    request = getattr(pb, desc.input_type.name)
    response = getattr(pb, desc.output_type.name)
    return Operation(name, request, response, change, method)


# The one table both transports serve from.
OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        _op("ListDevices", Console.list_devices),
        _op("GetDevice", Console.get_device),
        _op("ListBreaches", Console.list_breaches),
        _op("ListIncidents", Console.list_incidents),
        _op("GetIncident", Console.get_incident),
        _op("ListActions", Console.list_actions),
        _op("ListAudit", Console.list_audit),
        _op("SetIncidentStatus", Console.set_incident_status, change=True),
        _op("ConfirmAction", Console.confirm_action, change=True),
        _op("ExtendAction", Console.extend_action, change=True),
        _op("ClearAction", Console.clear_action, change=True),
        _op("Acknowledge", Console.acknowledge, change=True),
        _op("Suppress", Console.suppress, change=True),
    )
}
