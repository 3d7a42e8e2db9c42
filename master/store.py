"""The master's state store: versioned JSON documents under namespaced keys, committed per unit of work.

Everything one unit of work changes (inventory, features, model state, new breaches, decided actions) is
written in one MULTI/EXEC transaction together with the markers "these batch ids are processed" (a unit is
one telemetry batch, or several consecutive ones when the consumer has a backlog). The consumer acks the
messages only after that transaction, so a crash at any point either leaves no trace of them (they are
redelivered and processed from scratch) or leaves the markers (the redeliveries are recognised and skipped).

Keys (prefix from config, ``vigil:v1`` by default):

    <p>:ip:<ip>                    {"device_id"}         which device owns an address now
    <p>:mac:<mac>                  {"device_id"}         which device owns a MAC (from DHCP)
    <p>:device:<device_id>         inventory document
    <p>:layout                     {"version"}           which key layout the store holds (see migrate)
    <p>:features:count:<device_id> open windows of the count features
    <p>:model:count:<device_id>    the device's count model state (a few numbers per feature)
    <p>:model:count:population     the network-wide count model state
    <p>:model:count:group:<group>  a peer group's pooled count model state
    <p>:batch:<batch_id>           processed marker (expires after the dedup horizon)
    <p>:devices                    set of device ids
    <p>:breaches                   stream of ModelBreach protobufs
    <p>:action:<action_id>         action record (JSON; the Action protobuf base64-encoded inside)
    <p>:actions:pending            sorted set: action ids due for delivery to the responder, by due time
    <p>:incident:<incident_id>     an incident: its breaches, status and version (master/analyst)
    <p>:incidentlink:<kind>:<v>    which open incident a device, external peer or victim address joins
    <p>:incidents                  sorted set: incident ids by the event time of their newest breach
    <p>:acks                       hash: breach id -> who acknowledged it, when and why (master/api/)
    <p>:suppressions               hash: suppression id -> model, device, expiry, who and why (master/api/)
    <p>:audit                      list: every change an operator made, appended (master/api/)

One master consumes the durable at a time. The WATCH on the marker makes two masters racing on the *same*
batch safe, but two masters processing different batches of the same device would each read-modify-write
that device's documents; scaling out needs partitioning devices across consumers first.

Documents are JSON with a ``schema`` field, never pickles: a refactor must not strand learned state.
There are two implementations of one interface: :class:`RedisStore` (the service) and :class:`MemoryStore`
(the offline ``vigil analyze`` mode, which has no Redis and needs none).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from master.gcpause import gc_paused
from vigil.alert.v1 import alert_pb2
from vigil.responder.v1 import responder_pb2

Doc = dict[str, Any]

# A processed marker must outlive any redelivery: JetStream keeps messages at most stream_max_age_s.
DEFAULT_MARKER_TTL_S = 8 * 24 * 3600
BREACH_STREAM_MAXLEN = 100_000


_UNAVAILABLE = (OSError, RedisConnectionError, RedisTimeoutError)


class StoreUnavailable(Exception):
    """The store cannot be reached; the caller retries later (the batch stays unacknowledged)."""


class StoreLayoutError(Exception):
    """The store holds a key layout this version cannot read (written by a newer Vigil)."""


# The key layout this version writes. Each step below turns layout N into N + 1; the master runs the
# steps it needs once at start, before it reads anything, and records the new version.
#   1 -> 2: the per-device and pooled count models ("scan" until 0.x: they model every count feature, not
#           only scans) move from <p>:features:scan:* / <p>:model:scan:* to <p>:features:count:* /
#           <p>:model:count:*.
LAYOUT_VERSION = 2
_LAYOUT_RENAMES = {2: (("features:scan:", "features:count:"), ("model:scan:", "model:count:"))}


# How long state that only matters while it is fresh outlives its last write (Redis EXPIRE, refreshed on
# every write): an external endpoint nobody has contacted for longer than the rarity window, a beacon
# series or an account gone quiet, a finished breach log. Devices, their models and the network's beliefs
# never expire.
_TTL_BY_KIND = {
    "endpoint": 8 * 24 * 3600,
    "beacons": 30 * 24 * 3600,
    "user": 90 * 24 * 3600,
    "breaches": 2 * 3600,  # per-device recent-breach log (the stream has its own MAXLEN)
    "features": 7 * 24 * 3600,  # open windows of a device that went silent
    # An incident nobody and nothing has touched for a quarter; its links once no breach can join them.
    "incident": 90 * 24 * 3600,
    "incidentlink": 8 * 24 * 3600,
}


class Keys:
    def __init__(self, prefix: str = "vigil:v1") -> None:
        self.prefix = prefix.rstrip(":")

    def ttl_s(self, key: str) -> int | None:
        """Seconds a written document lives without being written again; None = for ever."""
        kind = key[len(self.prefix) + 1 :].split(":", 1)[0]
        return _TTL_BY_KIND.get(kind)

    def ip(self, ip: str) -> str:
        return f"{self.prefix}:ip:{ip}"

    def mac(self, mac: str) -> str:
        return f"{self.prefix}:mac:{mac}"

    def user(self, user: str) -> str:
        """An account seen logging on: the workstations it uses."""
        return f"{self.prefix}:user:{user.lower()}"

    def cloud(self, cloud_id: str) -> str:
        """A cloud instance or interface ("aws:i-0abc...") -> its device."""
        return f"{self.prefix}:cloud:{cloud_id}"

    def device(self, device_id: str) -> str:
        return f"{self.prefix}:device:{device_id}"

    @property
    def layout(self) -> str:
        return f"{self.prefix}:layout"

    def count_windows(self, device_id: str) -> str:
        return f"{self.prefix}:features:count:{device_id}"

    def count_model(self, device_id: str) -> str:
        return f"{self.prefix}:model:count:{device_id}"

    @property
    def count_population(self) -> str:
        return f"{self.prefix}:model:count:population"

    def peer_group(self, group: str) -> str:
        """The pooled count beliefs of one peer group (devices that behave alike, or share a subnet)."""
        return f"{self.prefix}:model:count:group:{group}"

    def endpoint(self, address: str) -> str:
        """An external endpoint: who on the network contacted it, and when."""
        return f"{self.prefix}:endpoint:{address}"

    def beacons(self, device_id: str) -> str:
        """The device's streaming beacon statistics per external endpoint."""
        return f"{self.prefix}:beacons:{device_id}"

    def device_breaches(self, device_id: str) -> str:
        """The device's recent breaches (model, time, score): what the meta-models count."""
        return f"{self.prefix}:breaches:device:{device_id}"

    @property
    def network(self) -> str:
        """Network-wide facts: when the master first saw traffic, how many devices it knows."""
        return f"{self.prefix}:network"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    @property
    def devices(self) -> str:
        return f"{self.prefix}:devices"

    @property
    def breaches(self) -> str:
        return f"{self.prefix}:breaches"

    def action(self, action_id: str) -> str:
        return f"{self.prefix}:action:{action_id}"

    @property
    def pending_actions(self) -> str:
        return f"{self.prefix}:actions:pending"

    def incident(self, incident_id: str) -> str:
        return f"{self.prefix}:incident:{incident_id}"

    def incident_link(self, kind: str, value: str) -> str:
        """Which open incident a device ("device"), an external address ("peer") or an internal address
        another device's breach named ("target") belongs to, and when it last did."""
        return f"{self.prefix}:incidentlink:{kind}:{value}"

    @property
    def incidents(self) -> str:
        return f"{self.prefix}:incidents"

    @property
    def acks(self) -> str:
        return f"{self.prefix}:acks"

    @property
    def suppressions(self) -> str:
        return f"{self.prefix}:suppressions"

    @property
    def audit(self) -> str:
        return f"{self.prefix}:audit"


@dataclass
class ActionRecord:
    """What the master decided and what became of it; stored as JSON, the Action inside as protobuf."""

    action: responder_pb2.Action
    # "proposed" (confirm mode), "observed" (observe mode), "pending", "applied", "refused", "failed",
    # "expired" (never delivered before its expiry); set by an operator (master/api/): "rejected" (a proposal
    # cleared), "revoked", "replaced" (extended as another action).
    state: str
    mode: str
    attempts: int = 0
    detail: str = ""

    def to_doc(self) -> Doc:
        return {
            "schema": 1,
            "action_id": self.action.action_id,
            "state": self.state,
            "mode": self.mode,
            "attempts": self.attempts,
            "detail": self.detail,
            "action": base64.b64encode(self.action.SerializeToString()).decode(),
        }

    @classmethod
    def from_doc(cls, doc: Doc) -> ActionRecord:
        if doc.get("schema") != 1:
            raise ValueError(f"unsupported action record schema {doc.get('schema')!r}")
        action = responder_pb2.Action.FromString(base64.b64decode(doc["action"]))
        return cls(action, doc["state"], doc["mode"], int(doc["attempts"]), doc.get("detail", ""))


@dataclass
class Commit:
    """Everything one unit of work changes, applied atomically with the processed markers of its batches."""

    batch_ids: tuple[str, ...]
    writes: dict[str, Doc] = field(default_factory=dict)
    new_devices: set[str] = field(default_factory=set)
    breaches: list[alert_pb2.ModelBreach] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    # Wall-clock time at which pending actions become due for delivery.
    due_time: float = 0.0
    # Incidents this unit changed (id -> event time of their newest breach), and those merged away.
    incidents: dict[str, float] = field(default_factory=dict)
    merged_incidents: tuple[str, ...] = ()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def encode(doc: Doc) -> bytes:
    # Compact, key-sorted JSON: the same state always serialises to the same bytes. orjson: the master
    # spends a third of its time here with the standard library's encoder.
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def decode(raw: bytes | str | None) -> Doc | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"state document is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("state document is not a JSON object")
    return value


@gc_paused
def _decode_all(keys: Sequence[str], values: Sequence[bytes | str | None]) -> dict[str, Doc | None]:
    return {k: decode(v) for k, v in zip(keys, values, strict=True)}


@gc_paused
def _encode_all(docs: Mapping[str, Doc]) -> dict[str, bytes]:
    return {key: encode(doc) for key, doc in docs.items()}


class Store(Protocol):
    keys: Keys

    async def processed(self, batch_ids: Sequence[str]) -> set[str]:
        """Which of these batch ids were already committed."""
        ...

    async def load(self, keys: Sequence[str]) -> dict[str, Doc | None]: ...

    async def commit(self, commit: Commit) -> bool:
        """Apply atomically; False (and nothing written) when any of its batches was already processed."""
        ...

    async def device_count(self) -> int: ...

    async def breaches(self, limit: int = 100) -> list[alert_pb2.ModelBreach]:
        """The newest ``limit`` breaches, oldest first."""
        ...

    async def due_actions(self, now: float, limit: int = 16) -> list[ActionRecord]: ...

    async def update_action(self, record: ActionRecord, due_time: float | None) -> None:
        """Store the record; ``due_time`` None removes it from the pending set."""
        ...

    async def action(self, action_id: str) -> ActionRecord | None: ...

    async def incidents(self, limit: int = 100) -> list[Doc]:
        """The ``limit`` incidents with the newest breaches, newest first (merged ones are not listed)."""
        ...

    async def incident(self, incident_id: str) -> Doc | None: ...

    async def save_incident(self, doc: Doc, expected_version: int) -> bool:
        """Write an incident an operator changed, unless its stored version is no longer
        ``expected_version`` (a breach joined meanwhile: read it again). False then."""
        ...

    async def ping(self) -> bool: ...

    async def migrate(self) -> dict[str, int]:
        """Bring the stored key layout to LAYOUT_VERSION; returns the keys moved per step."""
        ...

    async def close(self) -> None: ...


class RedisStore:
    def __init__(
        self, url: str, prefix: str = "vigil:v1", marker_ttl_s: float = DEFAULT_MARKER_TTL_S
    ) -> None:
        self.keys = Keys(prefix)
        self._marker_ttl_s = int(marker_ttl_s)
        # Short timeouts: a hung Redis must turn into a nak and a retry, not a stuck consumer.
        self._redis = aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        # Requests sent and answered by the batch path (processed, load, commit): the bench reports the
        # mean per batch, since latency to Redis multiplies by it.
        self.round_trips = 0

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    async def processed(self, batch_ids: Sequence[str]) -> set[str]:
        if not batch_ids:
            return set()
        self.round_trips += 1
        try:
            found = await self._redis.mget([self.keys.batch(b) for b in batch_ids])
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return {b for b, marker in zip(batch_ids, found, strict=True) if marker is not None}

    async def load(self, keys: Sequence[str]) -> dict[str, Doc | None]:
        if not keys:
            return {}
        self.round_trips += 1
        try:
            values = await self._redis.mget(list(keys))
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return _decode_all(keys, values)

    async def commit(self, commit: Commit) -> bool:
        markers = [self.keys.batch(b) for b in commit.batch_ids]
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                # WATCH the markers: if another consumer commits one of these batches meanwhile, EXEC aborts.
                self.round_trips += 2
                await pipe.watch(*markers)
                if await pipe.exists(*markers):
                    return False  # leaving the pipeline context unwatches
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves multi() unannotated
                now = str(time.time())
                for marker in markers:
                    pipe.set(marker, now, ex=self._marker_ttl_s)
                for key, raw in _encode_all(commit.writes).items():
                    pipe.set(key, raw, ex=self.keys.ttl_s(key))
                if commit.new_devices:
                    pipe.sadd(self.keys.devices, *sorted(commit.new_devices))
                for breach in commit.breaches:
                    pipe.xadd(
                        self.keys.breaches,
                        {"breach_id": breach.breach_id, "pb": breach.SerializeToString()},
                        maxlen=BREACH_STREAM_MAXLEN,
                        approximate=True,
                    )
                if commit.incidents:
                    pipe.zadd(self.keys.incidents, dict(commit.incidents))
                if commit.merged_incidents:
                    pipe.zrem(self.keys.incidents, *commit.merged_incidents)
                for record in commit.actions:
                    # NX: an action id is decided once; a replay never overwrites its later fate.
                    pipe.set(self.keys.action(record.action.action_id), encode(record.to_doc()), nx=True)
                    if record.state == "pending":
                        pipe.zadd(
                            self.keys.pending_actions, {record.action.action_id: commit.due_time}, nx=True
                        )
                self.round_trips += 1
                await pipe.execute()
                return True
        except WatchError:
            return False
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def device_count(self) -> int:
        try:
            return int(await self._redis.scard(self.keys.devices))
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def migrate(self) -> dict[str, int]:
        """Run the layout steps this store needs. Each rename is atomic and a step is recorded only once
        all its keys moved, so a master killed half-way finishes the step on its next start."""
        try:
            version = await self._layout_version()
            if version is None:
                # An empty store starts at the current layout.
                await self._redis.set(self.keys.layout, encode({"version": LAYOUT_VERSION}))
                return {}
            if version > LAYOUT_VERSION:
                raise StoreLayoutError(
                    f"the store at {self.keys.layout} holds key layout {version}; this version reads up "
                    f"to {LAYOUT_VERSION} (was it written by a newer Vigil?)"
                )
            moved: dict[str, int] = {}
            for step in range(version + 1, LAYOUT_VERSION + 1):
                count = 0
                for old, new in _LAYOUT_RENAMES.get(step, ()):
                    source = f"{self.keys.prefix}:{old}"
                    async for raw in self._redis.scan_iter(match=f"{source}*", count=1000):
                        key = _text(raw)
                        await self._redis.rename(key, f"{self.keys.prefix}:{new}{key[len(source) :]}")
                        count += 1
                await self._redis.set(self.keys.layout, encode({"version": step}))
                moved[f"{step - 1}->{step}"] = count
            return moved
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def _layout_version(self) -> int | None:
        doc = decode(await self._redis.get(self.keys.layout))
        if doc is not None:
            version = doc.get("version")
            if not isinstance(version, int) or version < 1:
                raise StoreLayoutError(f"{self.keys.layout} holds no layout version: {doc!r}")
            return version
        # No record: a store written before layouts were recorded (1), or an empty one (None).
        async for _ in self._redis.scan_iter(match=f"{self.keys.prefix}:*", count=1000):
            return 1
        return None

    async def totals(self) -> dict[str, int]:
        """What the store holds: devices, breaches, actions decided, batches committed (for the operator's
        summary and for checking that a restart lost or repeated nothing)."""
        try:
            devices = int(await self._redis.scard(self.keys.devices))
            breaches = int(await self._redis.xlen(self.keys.breaches))
            actions = await self._count(self.keys.action("*"))
            batches = await self._count(self.keys.batch("*"))
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return {"devices": devices, "breaches": breaches, "actions": actions, "batches": batches}

    async def _count(self, pattern: str) -> int:
        count = 0
        async for _ in self._redis.scan_iter(match=pattern, count=1000):
            count += 1
        return count

    async def breaches(self, limit: int = 100) -> list[alert_pb2.ModelBreach]:
        try:
            entries = await self._redis.xrevrange(self.keys.breaches, count=limit) or []
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [
            alert_pb2.ModelBreach.FromString(_raw(fields[b"pb"])) for _, fields in reversed(entries) if fields
        ]

    async def due_actions(self, now: float, limit: int = 16) -> list[ActionRecord]:
        try:
            ids = await self._redis.zrangebyscore(self.keys.pending_actions, "-inf", now, start=0, num=limit)
            if not ids:
                return []
            docs = await self._redis.mget([self.keys.action(_text(i)) for i in ids])
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [ActionRecord.from_doc(d) for d in (decode(raw) for raw in docs) if d is not None]

    async def update_action(self, record: ActionRecord, due_time: float | None) -> None:
        action_id = record.action.action_id
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.action(action_id), encode(record.to_doc()))
                if due_time is None:
                    pipe.zrem(self.keys.pending_actions, action_id)
                else:
                    pipe.zadd(self.keys.pending_actions, {action_id: due_time})
                await pipe.execute()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def action(self, action_id: str) -> ActionRecord | None:
        doc = decode(await self._redis.get(self.keys.action(action_id)))
        return None if doc is None else ActionRecord.from_doc(doc)

    async def incidents(self, limit: int = 100) -> list[Doc]:
        try:
            ids = await self._redis.zrevrange(self.keys.incidents, 0, max(0, limit - 1))
            if not ids:
                return []
            raws = await self._redis.mget([self.keys.incident(_text(i)) for i in ids])
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        return [d for d in (decode(raw) for raw in raws) if d is not None and not d.get("merged_into")]

    async def incident(self, incident_id: str) -> Doc | None:
        try:
            return decode(await self._redis.get(self.keys.incident(incident_id)))
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def save_incident(self, doc: Doc, expected_version: int) -> bool:
        key = self.keys.incident(str(doc["incident_id"]))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                stored = decode(await pipe.get(key))
                if stored is None or int(stored.get("version", 0)) != expected_version:
                    return False
                pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves multi() unannotated
                pipe.set(key, encode(doc), ex=self.keys.ttl_s(key))
                await pipe.execute()
                return True
        except WatchError:
            return False
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except _UNAVAILABLE:
            return False

    async def close(self) -> None:
        await self._redis.aclose()


class MemoryStore:
    """The same interface in process memory, for offline analysis (and nothing else needs Redis there).

    Documents go through the same JSON encoding as in Redis so that both modes keep identical state, and
    a document handed out by ``load`` is a copy: a batch that fails half-way leaves nothing behind.
    """

    def __init__(self, prefix: str = "vigil:v1") -> None:
        self.keys = Keys(prefix)
        self._docs: dict[str, bytes] = {}
        self._processed: set[str] = set()
        self._devices: set[str] = set()
        self._breaches: list[alert_pb2.ModelBreach] = []
        self._actions: dict[str, bytes] = {}
        self._pending: dict[str, float] = {}
        self._incidents: dict[str, float] = {}

    def copy_from(self, other: MemoryStore) -> None:
        """Become an independent copy of ``other`` (documents are immutable bytes; containers are copied)."""
        self._docs = dict(other._docs)
        self._processed = set(other._processed)
        self._devices = set(other._devices)
        self._breaches = list(other._breaches)
        self._actions = dict(other._actions)
        self._pending = dict(other._pending)
        self._incidents = dict(other._incidents)

    # Synchronous core, used directly by the offline driver.

    @gc_paused
    def load_sync(self, keys: Iterable[str]) -> dict[str, Doc | None]:
        return {k: decode(self._docs.get(k)) for k in keys}

    @gc_paused
    def commit_sync(self, commit: Commit) -> bool:
        if not self._processed.isdisjoint(commit.batch_ids):
            return False
        # Encode everything before changing anything, so a failure leaves the store as it was.
        docs = {key: encode(doc) for key, doc in commit.writes.items()}
        actions = {r.action.action_id: (r, encode(r.to_doc())) for r in commit.actions}
        self._processed.update(commit.batch_ids)
        self._docs.update(docs)
        self._devices.update(commit.new_devices)
        self._breaches.extend(commit.breaches)
        self._incidents.update(commit.incidents)
        for gone in commit.merged_incidents:
            self._incidents.pop(gone, None)
        for action_id, (record, raw) in actions.items():
            if action_id in self._actions:
                continue
            self._actions[action_id] = raw
            if record.state == "pending":
                self._pending[action_id] = commit.due_time
        return True

    def all_breaches(self) -> list[alert_pb2.ModelBreach]:
        return list(self._breaches)

    async def migrate(self) -> dict[str, int]:
        # Offline analysis starts from nothing: there is no older layout in memory.
        return {}

    def all_actions(self) -> list[ActionRecord]:
        return [ActionRecord.from_doc(decode(raw) or {}) for raw in self._actions.values()]

    # The Store interface.

    async def processed(self, batch_ids: Sequence[str]) -> set[str]:
        return self._processed.intersection(batch_ids)

    async def load(self, keys: Sequence[str]) -> dict[str, Doc | None]:
        return self.load_sync(keys)

    async def commit(self, commit: Commit) -> bool:
        return self.commit_sync(commit)

    async def device_count(self) -> int:
        return len(self._devices)

    async def breaches(self, limit: int = 100) -> list[alert_pb2.ModelBreach]:
        return self._breaches[-limit:]

    async def due_actions(self, now: float, limit: int = 16) -> list[ActionRecord]:
        due = sorted((t, i) for i, t in self._pending.items() if t <= now)[:limit]
        return [ActionRecord.from_doc(decode(self._actions[i]) or {}) for _, i in due]

    async def update_action(self, record: ActionRecord, due_time: float | None) -> None:
        action_id = record.action.action_id
        self._actions[action_id] = encode(record.to_doc())
        if due_time is None:
            self._pending.pop(action_id, None)
        else:
            self._pending[action_id] = due_time

    async def action(self, action_id: str) -> ActionRecord | None:
        raw = self._actions.get(action_id)
        return None if raw is None else ActionRecord.from_doc(decode(raw) or {})

    def all_incidents(self) -> list[Doc]:
        """Every incident not merged into another, oldest first (by first breach, then id)."""
        docs = [decode(self._docs.get(self.keys.incident(i))) for i in self._incidents]
        found = [d for d in docs if d is not None and not d.get("merged_into")]
        return sorted(found, key=lambda d: (float(d["start"]), str(d["incident_id"])))

    async def incidents(self, limit: int = 100) -> list[Doc]:
        newest = sorted(self._incidents.items(), key=lambda item: (-item[1], item[0]))[:limit]
        docs = [decode(self._docs.get(self.keys.incident(i))) for i, _ in newest]
        return [d for d in docs if d is not None and not d.get("merged_into")]

    async def incident(self, incident_id: str) -> Doc | None:
        return decode(self._docs.get(self.keys.incident(incident_id)))

    async def save_incident(self, doc: Doc, expected_version: int) -> bool:
        key = self.keys.incident(str(doc["incident_id"]))
        stored = decode(self._docs.get(key))
        if stored is None or int(stored.get("version", 0)) != expected_version:
            return False
        self._docs[key] = encode(doc)
        return True

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class WorkingSet:
    """The documents one batch reads and writes: loaded up front, changed in memory, committed at once.

    Loading everything a batch needs in two round trips (addresses first, then the devices they resolve
    to) keeps the pipeline itself free of I/O, so the service and the offline mode run the same code.
    """

    def __init__(self, loaded: Mapping[str, Doc | None] | None = None) -> None:
        self._docs: dict[str, Doc | None] = dict(loaded or {})
        self._dirty: set[str] = set()

    def add(self, loaded: Mapping[str, Doc | None]) -> None:
        for key, doc in loaded.items():
            self._docs.setdefault(key, doc)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return sorted({k for k in keys if k not in self._docs})

    def get(self, key: str) -> Doc | None:
        if key not in self._docs:
            raise KeyError(f"{key} was not loaded for this batch")
        return self._docs[key]

    def put(self, key: str, doc: Doc) -> None:
        self._docs[key] = doc
        self._dirty.add(key)

    def writes(self) -> dict[str, Doc]:
        return {k: d for k in sorted(self._dirty) if (d := self._docs[k]) is not None}
