"""Breaches become incidents: one story per attack, grown as its breaches arrive, in event time.

A breach joins the incident of (and links together the incidents of):

* its device, when that device's last breach in the incident is at most ``gap_s`` older or newer;
* its external peer, when another device's breach named the same external address within ``gap_s``
  (several devices calling one rare host is one campaign);
* an attacker, when this device's address was named by another device's breach (a scanned, brute-forced or
  remotely executed host) at most ``gap_s`` before: attacker -> victim.

Two incidents a breach links are merged into the older one (the other keeps a pointer to it). A resolved
incident takes no more breaches: its devices' next breaches open a new one.

State is JSON documents in the master's store, read and written through the same working set as the rest of
a unit of work, so the incidents are committed atomically with the breaches that made them:

    <p>:incident:<incident_id>           the incident (its breaches as protobufs, status, version)
    <p>:incidentlink:device:<device_id>  {"incident_id", "t"}: the device's open incident, last breach time
    <p>:incidentlink:peer:<ip>           the same for an external address a breach was about
    <p>:incidentlink:target:<ip>         the same for an internal address a breach named (a victim)

Nothing here does I/O: :meth:`Analyst.link_keys` and :meth:`Analyst.incident_keys` say what to load,
:meth:`Analyst.take` changes the working set.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from master.analyst.attack import breach_phase, in_kill_chain_order, tactic_ids
from master.analyst.story import clause, clock, device_story, family
from master.breaches import seconds, timestamp
from master.catalog import FEATURE_BY_NAME
from master.features import Networks
from master.store import Doc, Keys, WorkingSet
from vigil.alert.v1 import alert_pb2

SCHEMA = 1
# Breaches of one device further apart than this are separate stories unless something else links them.
DEFAULT_GAP_S = 6 * 3600.0
# An incident keeps its first breaches in full; beyond this it counts the rest (bounded documents).
MAX_BREACHES = 200
# Internal addresses one breach can name as victims (its peer and its evidence examples).
MAX_TARGETS = 16

STATUSES = ("new", "acknowledged", "resolved")
# Which status an operator may move an incident to from each status.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"acknowledged", "resolved"}),
    "acknowledged": frozenset({"new", "resolved"}),
    "resolved": frozenset({"new"}),
}
_PB_STATUS = {
    "new": alert_pb2.INCIDENT_STATUS_NEW,
    "acknowledged": alert_pb2.INCIDENT_STATUS_ACKNOWLEDGED,
    "resolved": alert_pb2.INCIDENT_STATUS_RESOLVED,
}


class TransitionError(ValueError):
    """An operator asked for a status change the incident's status does not allow."""


def incident_id(breach_id: str) -> str:
    """Derived from the breach that opened the incident: the same replay always gives the same ids."""
    return "inc-" + hashlib.sha256(f"incident|{breach_id}".encode()).hexdigest()[:20]


def set_status(doc: Doc, status: str) -> Doc:
    """The incident with its status changed (version bumped); raises TransitionError when not allowed."""
    current = str(doc.get("status", "new"))
    if status not in STATUSES:
        raise TransitionError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    if doc.get("merged_into"):
        raise TransitionError(f"incident {doc['incident_id']} was merged into {doc['merged_into']}")
    if status == current:
        return doc
    if status not in TRANSITIONS[current]:
        raise TransitionError(f"an incident {current} cannot become {status}")
    return {**doc, "status": status, "version": int(doc.get("version", 0)) + 1}


def _ip_of(text: str) -> str | None:
    """The address an evidence example starts with ("10.231.2.21:445", "10.0.0.5"), if any."""
    head = text.split(" ", 1)[0]
    if head.count(":") == 1:
        head = head.split(":", 1)[0]
    elif head.startswith("[") and "]" in head:
        head = head[1 : head.index("]")]
    try:
        return str(ipaddress.ip_address(head))
    except ValueError:
        return None


def targets(breach: alert_pb2.ModelBreach, internal: Networks) -> list[str]:
    """Internal addresses other than its own that a breach names: what it scanned or attacked."""
    found: list[str] = []
    candidates = [breach.peer_ip] + [x for e in breach.evidence for x in e.examples]
    for text in candidates:
        ip = _ip_of(text) if text else None
        if ip is not None and ip != breach.device.ip and ip in internal and ip not in found:
            found.append(ip)
            if len(found) >= MAX_TARGETS:
                break
    return found


def external_peer(breach: alert_pb2.ModelBreach, internal: Networks) -> str | None:
    ip = _ip_of(breach.peer_ip) if breach.peer_ip else None
    return ip if ip is not None and ip not in internal else None


def _encode(breach: alert_pb2.ModelBreach) -> str:
    return base64.b64encode(breach.SerializeToString()).decode()


def stored_breaches(doc: Doc) -> list[alert_pb2.ModelBreach]:
    return [alert_pb2.ModelBreach.FromString(base64.b64decode(raw)) for raw in doc.get("breaches", [])]


def _order(breach: alert_pb2.ModelBreach) -> tuple[float, str]:
    return (seconds(breach.time), breach.breach_id)


@dataclass
class Changes:
    """What :meth:`Analyst.take` changed: incidents touched (by id -> newest event time), merged away."""

    touched: dict[str, float] = field(default_factory=dict)
    merged: dict[str, str] = field(default_factory=dict)


class Analyst:
    def __init__(self, keys: Keys, internal_networks: Iterable[str], gap_s: float = DEFAULT_GAP_S) -> None:
        self.keys = keys
        self.internal = Networks(internal_networks)
        self.gap_s = gap_s

    # -- keys ---------------------------------------------------------------------------------------
    def incident_key(self, ident: str) -> str:
        return self.keys.incident(ident)

    def link_key(self, kind: str, value: str) -> str:
        return self.keys.incident_link(kind, value)

    def _links_of(self, breach: alert_pb2.ModelBreach) -> list[str]:
        keys = [self.link_key("device", breach.device.device_id)]
        if breach.device.ip:
            keys.append(self.link_key("target", breach.device.ip))
        peer = external_peer(breach, self.internal)
        if peer is not None:
            keys.append(self.link_key("peer", peer))
        keys += [self.link_key("target", ip) for ip in targets(breach, self.internal)]
        return keys

    def link_keys(self, breaches: Sequence[alert_pb2.ModelBreach]) -> list[str]:
        """First load: the links every breach reads or writes."""
        return sorted({k for b in breaches for k in self._links_of(b)})

    def incident_keys(self, ws: WorkingSet, breaches: Sequence[alert_pb2.ModelBreach]) -> list[str]:
        """Second load: the incidents those links point to."""
        ids = set()
        for key in self.link_keys(breaches):
            doc = ws.get(key)
            if doc and doc.get("incident_id"):
                ids.add(str(doc["incident_id"]))
        return sorted(self.incident_key(i) for i in ids)

    def merge_keys(self, ws: WorkingSet, loaded: Iterable[str]) -> list[str]:
        """Further loads: the incidents that loaded ones were merged into (repeat until none)."""
        out = set()
        for key in loaded:
            doc = ws.get(key) if not ws.missing([key]) else None
            if doc and doc.get("merged_into"):
                out.add(self.incident_key(str(doc["merged_into"])))
        return ws.missing(out)

    # -- grouping -----------------------------------------------------------------------------------
    def _open(self, ws: WorkingSet, ident: str) -> Doc | None:
        """The incident ``ident`` stands for now (following a merge), if it still takes breaches."""
        for _ in range(8):  # merges chain only as far as the same unit made them; bounded anyway
            key = self.incident_key(ident)
            doc = ws.get(key) if not ws.missing([key]) else None
            if doc is None:
                return None
            if not doc.get("merged_into"):
                return doc if doc.get("status") != "resolved" else None
            ident = str(doc["merged_into"])
        return None

    def _linked(self, ws: WorkingSet, key: str, t: float, before_only: bool = False) -> Doc | None:
        link = ws.get(key) if not ws.missing([key]) else None
        if not link:
            return None
        lt = float(link.get("t", 0.0))
        if before_only and lt > t:
            return None
        if abs(t - lt) > self.gap_s:
            return None
        return self._open(ws, str(link["incident_id"]))

    def take(self, ws: WorkingSet, breaches: Sequence[alert_pb2.ModelBreach]) -> Changes:
        """Add the breaches (in event-time order) to incidents in the working set."""
        changes = Changes()
        for breach in sorted(breaches, key=_order):
            t = seconds(breach.time)
            found: dict[str, Doc] = {}
            candidates = [
                self._linked(ws, self.link_key("device", breach.device.device_id), t),
                # Named as a victim by another device's breach, before this one.
                self._linked(ws, self.link_key("target", breach.device.ip), t, before_only=True)
                if breach.device.ip
                else None,
            ]
            peer = external_peer(breach, self.internal)
            if peer is not None:
                candidates.append(self._linked(ws, self.link_key("peer", peer), t))
            for doc in candidates:
                if doc is not None:
                    found[str(doc["incident_id"])] = doc
            if not found:
                doc = self._new(breach)
            else:
                ordered = sorted(found.values(), key=lambda d: (float(d["start"]), str(d["incident_id"])))
                doc = ordered[0]
                for other in ordered[1:]:
                    doc = self._merge(ws, doc, other, changes)
            doc = self._add(doc, breach)
            ident = str(doc["incident_id"])
            ws.put(self.incident_key(ident), doc)
            changes.touched[ident] = max(changes.touched.get(ident, t), t)
            self._link(ws, breach, ident, t, peer)
        return changes

    def _new(self, breach: alert_pb2.ModelBreach) -> Doc:
        t = seconds(breach.time)
        return {
            "schema": SCHEMA,
            "incident_id": incident_id(breach.breach_id),
            "status": "new",
            "version": 0,
            "start": t,
            "end": t,
            "breaches": [],
            "breach_ids": [],
            "dropped": 0,
            "links": [],
        }

    def _add(self, doc: Doc, breach: alert_pb2.ModelBreach) -> Doc:
        if breach.breach_id in doc["breach_ids"]:
            return doc  # a replay: already told
        t = seconds(breach.time)
        doc = dict(doc)
        if len(doc["breaches"]) < MAX_BREACHES:
            doc["breaches"] = [*doc["breaches"], _encode(breach)]
            doc["breach_ids"] = [*doc["breach_ids"], breach.breach_id]
        else:
            doc["dropped"] = int(doc.get("dropped", 0)) + 1
        doc["start"] = min(float(doc["start"]), t)
        doc["end"] = max(float(doc["end"]), t)
        doc["version"] = int(doc["version"]) + 1
        if doc["status"] == "acknowledged":
            # Something the operator has not seen joined it.
            doc["status"] = "new"
        return doc

    def _merge(self, ws: WorkingSet, keep: Doc, other: Doc, changes: Changes) -> Doc:
        keep = dict(keep)
        have = set(keep["breach_ids"])
        for raw, bid in zip(other["breaches"], other["breach_ids"], strict=True):
            if bid in have:
                continue
            if len(keep["breaches"]) < MAX_BREACHES:
                keep["breaches"] = [*keep["breaches"], raw]
                keep["breach_ids"] = [*keep["breach_ids"], bid]
            else:
                keep["dropped"] = int(keep.get("dropped", 0)) + 1
        keep["dropped"] = int(keep.get("dropped", 0)) + int(other.get("dropped", 0))
        keep["start"] = min(float(keep["start"]), float(other["start"]))
        keep["end"] = max(float(keep["end"]), float(other["end"]))
        keep["version"] = int(keep["version"]) + 1
        keep["links"] = sorted(set(keep.get("links", [])) | set(other.get("links", [])))
        ident = str(keep["incident_id"])
        gone = str(other["incident_id"])
        ws.put(
            self.incident_key(gone),
            {**other, "merged_into": ident, "version": int(other["version"]) + 1},
        )
        # Every link that pointed to the merged incident now points here.
        for key in other.get("links", []):
            link = ws.get(key) if not ws.missing([key]) else None
            if link and link.get("incident_id") == gone:
                ws.put(key, {**link, "incident_id": ident})
        changes.merged[gone] = ident
        changes.touched.pop(gone, None)
        return keep

    def _link(
        self, ws: WorkingSet, breach: alert_pb2.ModelBreach, ident: str, t: float, peer: str | None
    ) -> None:
        keys = [self.link_key("device", breach.device.device_id)]
        if peer is not None:
            keys.append(self.link_key("peer", peer))
        keys += [self.link_key("target", ip) for ip in targets(breach, self.internal)]
        key = self.incident_key(ident)
        doc = ws.get(key)
        assert doc is not None
        new_links = [k for k in keys if k not in doc["links"]]
        if new_links:
            ws.put(key, {**doc, "links": sorted([*doc["links"], *new_links])})
        for k in keys:
            old = ws.get(k) if not ws.missing([k]) else None
            if old and old.get("incident_id") == ident and float(old.get("t", 0.0)) >= t:
                continue
            ws.put(k, {"schema": SCHEMA, "incident_id": ident, "t": t})


# -- the incident as operators read it ------------------------------------------------------------------


def _families(breach: alert_pb2.ModelBreach) -> list[str]:
    """The catalog feature family of each piece of the breach's evidence, in order."""
    specs = (FEATURE_BY_NAME.get(e.feature) for e in breach.evidence)
    return [spec.family for spec in specs if spec is not None]


def _score(breaches: Sequence[alert_pb2.ModelBreach], phases: Sequence[str]) -> int:
    """The strongest breach, raised by 5 for every phase beyond the first (an attack that progresses)."""
    top = max((b.score for b in breaches), default=0)
    return min(100, top + 5 * max(0, len(phases) - 1))


def summary(breaches: Sequence[alert_pb2.ModelBreach]) -> str:
    """The incident in sentences: each device's story, in the order the devices first breached; a linked
    device says what links it."""
    if not breaches:
        return ""
    ordered = sorted(breaches, key=_order)
    with_date = seconds(ordered[-1].time) - seconds(ordered[0].time) >= 24 * 3600
    by_device: dict[str, list[alert_pb2.ModelBreach]] = {}
    for b in ordered:
        by_device.setdefault(b.device.device_id, []).append(b)
    parts = []
    seen_peers: dict[str, str] = {}
    named: dict[str, str] = {}
    for device_breaches in by_device.values():
        ip = device_breaches[0].device.ip
        link = ""
        if ip in named:
            link = f"which {named[ip]} had reached before"
        else:
            shared = [b.peer_ip for b in device_breaches if b.peer_ip in seen_peers]
            if shared:
                link = f"which also reached {shared[0]} after {seen_peers[shared[0]]}"
        parts.append(device_story(device_breaches, with_date, link))
        for b in device_breaches:
            if b.peer_ip:
                seen_peers.setdefault(b.peer_ip, ip)
            for e in b.evidence:
                for x in e.examples:
                    target = _ip_of(x)
                    if target is not None:
                        named.setdefault(target, ip)
    return " ".join(parts)


def render(doc: Doc) -> alert_pb2.Incident:
    """The Incident message of a stored incident document."""
    breaches = sorted(stored_breaches(doc), key=_order)
    devices: dict[str, alert_pb2.DeviceRef] = {}
    techniques: list[str] = []
    timeline = []
    phases = []
    for b in breaches:
        # The newest view of each device (a hostname or vendor learned later).
        devices[b.device.device_id] = b.device
        techniques += [t for t in b.mitre_techniques if t not in techniques]
        # A breach about other breaches (Large Number of Model Breaches) is in no phase of its own: the
        # timeline would otherwise show a phase the incident's phases leave out.
        phase = "" if family(b.model) == "meta" else breach_phase(b.model, b.mitre_techniques, _families(b))
        if phase:
            phases.append(phase)
        timeline.append(
            alert_pb2.TimelineEntry(
                time=b.time,
                text=f"{b.device.ip} {clause(family(b.model), [b])}"
                if family(b.model) not in ("meta", "new-device")
                else f"{b.device.ip}: {b.model}",
                breach_id=b.breach_id,
                device=b.device,
                model=b.model,
                score=b.score,
                explanation=b.explanation,
                phase=phase,
            )
        )
    ordered_phases = in_kill_chain_order(phases)
    first_seen: list[str] = []
    for b in breaches:
        if b.device.device_id not in first_seen:
            first_seen.append(b.device.device_id)
    text = summary(breaches)
    if doc.get("dropped"):
        text += f" ({doc['dropped']} further breaches are counted, not listed.)"
    return alert_pb2.Incident(
        incident_id=str(doc["incident_id"]),
        devices=[devices[d] for d in first_seen],
        phases=ordered_phases,
        mitre_techniques=sorted(techniques),
        tactics=tactic_ids(techniques),
        breach_ids=[b.breach_id for b in breaches],
        timeline=timeline,
        summary=text,
        status=_PB_STATUS[str(doc.get("status", "new"))],
        start_time=timestamp(float(doc["start"])),
        update_time=timestamp(float(doc["end"])),
        score=_score(breaches, ordered_phases),
        version=int(doc.get("version", 0)),
    )


def status_name(status: int) -> str:
    """ "new", "acknowledged" or "resolved" for the protobuf's status ("new" when unspecified)."""
    for name, value in _PB_STATUS.items():
        if value == status:
            return name
    return "new"


__all__ = [
    "DEFAULT_GAP_S",
    "Analyst",
    "Changes",
    "TransitionError",
    "clock",
    "incident_id",
    "render",
    "set_status",
    "status_name",
    "stored_breaches",
    "summary",
    "targets",
]
