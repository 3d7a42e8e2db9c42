"""Catalog models made from context rather than from one count: new devices (with their vendor), hostnames
that do not fit an address, and the meta-models that read a device's own recent breaches.

* ``Device / New Device``: a device that starts acting (originates traffic or asks DHCP for an address)
  after the network has been learned for ``master.new_device_grace_s``; tagged with its MAC vendor from
  the IEEE OUI registry. Low severity, medium for vendors an office rarely buys (single-board computers).
* ``Unusual Activity / Unusual Hostname for IP``: a protocol (NTLM workstation, DHCP host name) names the
  device differently from every name learned for it. With ``n`` earlier sightings of other names, a
  Dirichlet belief with one pseudo-count gives the new name probability ``1 / (n + 1)``; it breaches once
  ``n`` reaches ``MIN_HOSTNAME_SIGHTINGS``.
* ``Device / Large Number of Model Breaches``: at least ``LARGE_NUMBER`` breaches in the trailing hour.
* ``Device / Multiple Lateral Movement Model Breaches``: at least ``MIN_LATERAL_MODELS`` distinct
  reconnaissance / lateral-movement models in the trailing hour.
* ``Device / New Device with Attack Tools``: a device first seen within a day breaching an attack-tool or
  scan model.
"""

from __future__ import annotations

import math
from typing import Any

from netaddr import EUI, AddrFormatError, NotRegisteredError

from master.breaches import make_breach, seconds
from master.catalog import (
    ATTACK_TOOL_MODELS,
    LARGE_NUMBER_OF_BREACHES,
    LATERAL_MODELS,
    MULTIPLE_LATERAL,
    NEW_DEVICE,
    NEW_DEVICE_WITH_TOOLS,
    SUSPICIOUS_SMB,
    UNUSUAL_HOSTNAME,
)
from master.door import EventClock
from master.entities import Inventory
from master.models.dirichlet import CategoryModel, fixed, uniform_unseen
from master.observe import SmbDialectObs
from master.store import Doc, Keys, WorkingSet
from vigil.alert.v1 import alert_pb2

SCHEMA = 1
# The network document: schema 2 keeps the event clock and the learned span (master/door.py) where schema 1
# kept only the first time seen (see network_clock for the step from 1 to 2).
NETWORK_SCHEMA = 2
CATEGORY_HALF_LIFE_S = 30 * 24 * 3600.0
# SMB dialect families before the network has taught anything: SMBv1 is the exception in 2026.
SMB_HYPER_BASE = fixed({"SMBv1": 0.01, "SMBv2": 0.49, "SMBv3": 0.5}, 0.0)
SMB_NETWORK_ALPHA = 10.0
SMB_DEVICE_ALPHA = 5.0
SMB_BREACH_P = 0.02
# Below medium: a client that speaks SMB 2/3 negotiating SMBv1 is Windows' fallback for an old server.
FALLBACK_MAX_SCORE = 35
NEW_DEVICE_RECENT_S = 24 * 3600.0
TRAILING_S = 3600.0
LARGE_NUMBER = 5
MIN_LATERAL_MODELS = 3
MIN_HOSTNAME_SIGHTINGS = 5
MAX_RECENT = 200
MAX_HOSTNAMES = 16
META_MODELS = frozenset({LARGE_NUMBER_OF_BREACHES, MULTIPLE_LATERAL, NEW_DEVICE_WITH_TOOLS})
# Vendors whose appearance on an office network deserves a look (small computers that make good implants).
NOTABLE_VENDORS = ("raspberry pi", "hak5", "pine64", "hardkernel", "friendlyelec", "espressif")


def network_clock(doc: Doc | None) -> tuple[float | None, float]:
    """The network's (clock, learned span) from its stored document.

    Schema 1 kept only ``first_seen``: its clock starts there with nothing learned, and the first batch then
    steps it forward like any other (one step, at most ``master.max_event_step_s``, is counted as learned).
    """
    if not doc:
        return None, 0.0
    if "clock" in doc:
        clock = doc["clock"]
        return (None if clock is None else float(clock)), float(doc.get("learned_s") or 0.0)
    first = doc.get("first_seen")
    return (None if first is None else float(first)), 0.0


def vendor_of(mac: str) -> str | None:
    """The IEEE registrant of the MAC's OUI; None for locally administered or unregistered prefixes."""
    try:
        return str(EUI(mac).oui.registration()["org"])
    except (NotRegisteredError, AddrFormatError, ValueError, IndexError):
        return None


class ContextModels:
    """The context and meta models over one batch's working set."""

    def __init__(
        self,
        ws: WorkingSet,
        keys: Keys,
        inventory: Inventory,
        window_s: float,
        grace_s: float = 3600.0,
        clock: EventClock | None = None,
    ) -> None:
        self.grace_s = grace_s
        self.clock = clock or EventClock(None, 0.0, None, 0.0)
        self.ws = ws
        self.keys = keys
        self.inventory = inventory
        self.window_s = window_s
        self.actors: dict[str, float] = {}
        self.breaches: list[alert_pb2.ModelBreach] = []
        self.raised: set[tuple[str, str, int]] = set()
        self.network: dict[str, Any] = dict(
            ws.get(keys.network) or {"schema": NETWORK_SCHEMA, "first_seen": None}
        )

    def known_devices(self) -> int:
        return int(self.network.get("devices", 0)) + len(self.inventory.new_devices)

    def learned(self, t: float) -> float:
        """How long, at event time ``t``, the network has been learned (bounded steps: master/door.py)."""
        return self.clock.learned(t)

    # -- observations --------------------------------------------------------------------------------
    def saw_actor(self, device_id: str, t: float) -> None:
        seen = self.actors.get(device_id)
        self.actors[device_id] = t if seen is None else min(seen, t)

    def hostname(self, device_id: str, ip: str, name: str, t: float, source: str) -> None:
        doc = self.inventory.doc(device_id)
        if doc is None:
            # The device introduced itself before any of its flows reached us: it exists all the same.
            device_id = self.inventory.observe(ip, t, flows=0)
            doc = self.inventory.doc(device_id)
            if doc is None:
                return
        names: dict[str, Any] = doc.setdefault("hostnames", {})
        key = name.lower()
        model = CategoryModel(CATEGORY_HALF_LIFE_S, alpha=1.0, max_categories=MAX_HOSTNAMES)
        if "hostname_model" in doc:
            model.load_dict(doc["hostname_model"])
        # Hostnames are an open set: every unseen name has the same base weight, so P(new) = 1 / (N + 1).
        p = model.prob(key, t, uniform_unseen(1.0))
        sightings = model.total(t)
        if model.count(key) == 0 and sightings >= MIN_HOSTNAME_SIGHTINGS:
            self._unusual_hostname(device_id, ip, name, source, t, names, sightings, p)
        model.learn_one(key, at=t)
        doc["hostname_model"] = model.to_dict()
        entry = names.setdefault(key, {"name": name, "first": t, "last": t, "count": 0, "source": source})
        entry["count"] += 1
        entry["first"] = min(entry["first"], t)
        entry["last"] = max(entry["last"], t)
        if len(names) > MAX_HOSTNAMES:
            del names[min(names, key=lambda k: names[k]["last"])]
        doc["hostname"] = name
        doc["hostname_source"] = source
        self.inventory.put_doc(device_id, doc)

    def user_workstation(
        self, user: str, workstation: str, device_id: str, ip: str, t: float, source: str
    ) -> None:
        """The workstation a user logged on from, judged against the ones that user has used."""
        key = self.keys.user(user)
        doc: dict[str, Any] = dict(self.ws.get(key) or {"schema": SCHEMA, "names": {}})
        model = CategoryModel(CATEGORY_HALF_LIFE_S, alpha=1.0, max_categories=MAX_HOSTNAMES)
        if "model" in doc:
            model.load_dict(doc["model"])
        name = workstation.lower()
        p = model.prob(name, t, uniform_unseen(1.0))
        sightings = model.total(t)
        names: dict[str, Any] = dict(doc["names"])
        if model.count(name) == 0 and sightings >= MIN_HOSTNAME_SIGHTINGS:
            known = sorted(names.values(), key=lambda v: -int(v["count"]))
            score = min(79, round(40 + 10 * math.log10(sightings + 1)))
            explanation = (
                f"{user} logged on from {workstation!r} ({ip}) in {source.upper()}, but has used "
                + ", ".join(f"{v['name']!r} ({v['count']} times)" for v in known[:3])
                + f"; a new workstation after {sightings:.0f} (decayed) logons has P={p:.2g}; score {score}"
            )
            self._raise(
                UNUSUAL_HOSTNAME,
                device_id,
                ip,
                t,
                score,
                explanation,
                [alert_pb2.Evidence(feature="workstation_for_user", observed=1.0, expected=p, probability=p,
                                    examples=[workstation, user])],
                float(known[0]["first"]) if known else t,
            )  # fmt: skip
        model.learn_one(name, at=t)
        entry = names.setdefault(name, {"name": workstation, "first": t, "last": t, "count": 0})
        entry["count"] += 1
        entry["last"] = max(entry["last"], t)
        if len(names) > MAX_HOSTNAMES:
            del names[min(names, key=lambda k: names[k]["last"])]
        doc["names"], doc["model"] = names, model.to_dict()
        self.ws.put(key, doc)

    def _raise(
        self,
        model: str,
        device_id: str,
        ip: str,
        t: float,
        score: int,
        explanation: str,
        evidence: list[alert_pb2.Evidence],
        since: float,
    ) -> None:
        """One hostname breach per device and window, whichever view (the address's or the user's) saw it."""
        window = math.floor(t / self.window_s)
        if (model, device_id, window) in self.raised:
            return
        self.raised.add((model, device_id, window))
        self.breaches.append(
            make_breach(
                model,
                self.ref(device_id, ip),
                key=window,
                score=score,
                when=t,
                window=(since, t),
                explanation=explanation,
                evidence=evidence,
                techniques=("T1036", "T1078"),
                uids=[],
            )
        )

    def _unusual_hostname(
        self,
        device_id: str,
        ip: str,
        name: str,
        source: str,
        t: float,
        names: dict[str, Any],
        others: float,
        p: float,
    ) -> None:
        known = sorted(names.values(), key=lambda v: -int(v["count"]))
        usual: dict[str, Any] = known[0] if known else {"name": "?", "first": t}
        score = min(79, round(40 + 10 * math.log10(others + 1)))
        explanation = (
            f"{ip} named itself {name!r} in {source.upper()}, but the names learned for this device are "
            + ", ".join(f"{v['name']!r} ({v['count']} times, {v['source']})" for v in known[:3])
            + f"; a new name after {others:.0f} (decayed) sightings has P={p:.2g}; score {score}"
        )
        evidence = [
            alert_pb2.Evidence(
                feature="hostname_for_ip",
                observed=1.0,
                expected=p,
                probability=p,
                examples=[name, usual["name"]],
            )
        ]
        self._raise(UNUSUAL_HOSTNAME, device_id, ip, t, score, explanation, evidence, float(usual["first"]))

    def smb_dialect(self, device_id: str, ip: str, smb: SmbDialectObs, t: float, uid: str) -> None:
        """Score, then learn, the SMB dialect family a device negotiated (Dirichlet, network as base)."""
        family, dialect = smb.family, smb.dialect
        doc = self.inventory.doc(device_id)
        if doc is None:
            return
        network = CategoryModel(CATEGORY_HALF_LIFE_S, alpha=SMB_NETWORK_ALPHA, max_categories=4)
        if "smb_dialects" in self.network:
            network.load_dict(self.network["smb_dialects"])
        device = CategoryModel(CATEGORY_HALF_LIFE_S, alpha=SMB_DEVICE_ALPHA, max_categories=4)
        if "smb_dialects" in doc:
            device.load_dict(doc["smb_dialects"])
        p_network = network.prob(family, t, SMB_HYPER_BASE)
        p = device.prob(family, t, network.predictive(SMB_HYPER_BASE, t))
        breach = family == "SMBv1" and p < SMB_BREACH_P
        if breach:
            surprise = -math.log10(max(p, 1e-300))
            score = min(90, round(55 + 10 * (surprise + math.log10(SMB_BREACH_P))))
            why = "SMBv1 is what worms and relay attacks use"
            if smb.client_speaks_smb2:
                score = min(score, FALLBACK_MAX_SCORE)
                why = (
                    "the client also offered SMB 2/3, so the server chose SMBv1 (an old server, worth a look)"
                )
            explanation = (
                f"{ip} negotiated {dialect} (SMBv1): P={p:.2g} for this device after "
                f"{device.total(t):.0f} (decayed) SMB sessions, P={p_network:.2g} across the network; "
                f"{why}; score {score}"
            )
            self.breaches.append(
                make_breach(
                    SUSPICIOUS_SMB,
                    self.ref(device_id, ip),
                    key=math.floor(t / 3600.0),
                    score=score,
                    when=t,
                    window=(t, t),
                    explanation=explanation,
                    evidence=[
                        alert_pb2.Evidence(
                            feature="smb_dialect_family", observed=1.0, probability=p, examples=[dialect]
                        )
                    ],
                    techniques=("T1210", "T1021.002"),
                    uids=[uid] if uid else [],
                )
            )
        device.learn_one(family, at=t)
        doc["smb_dialects"] = device.to_dict()
        self.inventory.put_doc(device_id, doc)
        if not breach:
            network.learn_one(family, at=t)
            self.network["smb_dialects"] = network.to_dict()

    # -- the device as breaches show it --------------------------------------------------------------
    def ref(self, device_id: str, ip: str | None = None) -> alert_pb2.DeviceRef:
        doc = self.inventory.doc(device_id)
        if doc is not None:
            self._tag(device_id, doc)
        return self.inventory.ref(device_id, ip)

    def _tag(self, device_id: str, doc: Doc) -> None:
        macs: dict[str, Any] = doc.get("macs", {})
        tagged = set(doc.get("tagged_macs", []))
        fresh = [m for m in macs if m not in tagged]
        if not fresh:
            return
        tags = list(doc.get("tags", []))
        for mac in fresh:
            vendor = vendor_of(mac)
            if vendor and f"vendor:{vendor}" not in tags:
                tags.append(f"vendor:{vendor}")
        doc["tags"] = tags[:8]
        doc["tagged_macs"] = sorted(tagged | set(fresh))[-8:]
        self.inventory.put_doc(device_id, doc)

    # -- end of batch --------------------------------------------------------------------------------
    def finish(self, count_breaches: list[alert_pb2.ModelBreach]) -> list[alert_pb2.ModelBreach]:
        """New-device breaches, then the meta-models over everything this batch raised."""
        first = self.clock.first
        if first is not None:
            # first_seen is for people; the clock and the learned span are what the models go by.
            self.network.update(
                schema=NETWORK_SCHEMA,
                first_seen=first if self.network.get("first_seen") is None else self.network["first_seen"],
                clock=self.clock.end_clock,
                learned_s=self.clock.end_learned,
            )
        for device_id in sorted(self.inventory.new_devices & set(self.actors)):
            self._new_device(device_id, self.actors[device_id], first)
        raised = list(count_breaches) + self.breaches
        meta = self._meta(raised, first)
        self.network["devices"] = int(self.network.get("devices", 0)) + len(self.inventory.new_devices)
        self.ws.put(self.keys.network, self.network)
        return self.breaches + meta

    def _learned_for(self, t: float, first: float | None) -> float:
        return 0.0 if first is None else self.clock.learned(t)

    def _new_device(self, device_id: str, t: float, first: float | None) -> None:
        learned = self._learned_for(t, first)
        if learned < self.grace_s:
            return
        ref = self.ref(device_id)
        vendors = [tag.split(":", 1)[1] for tag in ref.tags if tag.startswith("vendor:")]
        notable = any(n in v.lower() for v in vendors for n in NOTABLE_VENDORS)
        score = 45 if notable else 30
        known = int(self.network.get("devices", 0))
        vendor_text = f", MAC vendor {', '.join(vendors)}" if vendors else ", MAC vendor unknown"
        explanation = (
            f"{ref.ip or device_id} ({ref.mac or 'no MAC seen'}{vendor_text}) started sending traffic; "
            f"it was never seen in the {learned / 3600:.1f} h this network has been learned "
            f"({known} devices known); score {score}"
        )
        self.breaches.append(
            make_breach(
                NEW_DEVICE,
                ref,
                key=0,
                score=score,
                when=t,
                window=(first if first is not None else t, t),
                explanation=explanation,
                evidence=[alert_pb2.Evidence(feature="device_first_seen", observed=1.0, examples=vendors)],
                techniques=("T1200",) if notable else (),
                uids=[],
            )
        )

    def _meta(self, raised: list[alert_pb2.ModelBreach], first: float | None) -> list[alert_pb2.ModelBreach]:
        out: list[alert_pb2.ModelBreach] = []
        by_device: dict[str, list[alert_pb2.ModelBreach]] = {}
        for b in raised:
            by_device.setdefault(b.device.device_id, []).append(b)
        for device_id, new in by_device.items():
            key = self.keys.device_breaches(device_id)
            doc = dict(self.ws.get(key) or {"schema": SCHEMA, "recent": [], "fired": {}})
            recent: list[list[Any]] = list(doc["recent"])
            fired: dict[str, float] = dict(doc["fired"])
            for b in sorted(new, key=lambda b: seconds(b.time)):
                now = seconds(b.time)
                recent.append([now, b.model, int(b.score)])
                recent = [r for r in recent if now - float(r[0]) <= TRAILING_S][-MAX_RECENT:]
                out += self._meta_for(b, now, recent, fired, first)
            doc["recent"], doc["fired"] = recent, fired
            self.ws.put(key, doc)
        return out

    def _meta_for(
        self,
        b: alert_pb2.ModelBreach,
        now: float,
        recent: list[list[Any]],
        fired: dict[str, float],
        first: float | None,
    ) -> list[alert_pb2.ModelBreach]:
        out: list[alert_pb2.ModelBreach] = []
        device_id = b.device.device_id

        def due(model: str, every_s: float) -> bool:
            last = fired.get(model)
            return last is None or now - last >= every_s

        plain = [r for r in recent if r[1] not in META_MODELS]
        start = min(float(r[0]) for r in plain) if plain else now
        if len(plain) >= LARGE_NUMBER and due(LARGE_NUMBER_OF_BREACHES, TRAILING_S):
            fired[LARGE_NUMBER_OF_BREACHES] = now
            score = min(95, 70 + 2 * (len(plain) - LARGE_NUMBER))
            models = sorted({str(r[1]) for r in plain})
            out.append(
                self._meta_breach(
                    LARGE_NUMBER_OF_BREACHES,
                    b,
                    now,
                    start,
                    score,
                    f"{len(plain)} model breaches in the last {TRAILING_S / 60:.0f} min "
                    f"(threshold {LARGE_NUMBER}): " + ", ".join(models),
                    models,
                    len(plain),
                )
            )
        lateral = sorted({str(r[1]) for r in recent if r[1] in LATERAL_MODELS})
        if len(lateral) >= MIN_LATERAL_MODELS and due(MULTIPLE_LATERAL, TRAILING_S):
            fired[MULTIPLE_LATERAL] = now
            score = min(100, 80 + 5 * (len(lateral) - MIN_LATERAL_MODELS))
            out.append(
                self._meta_breach(
                    MULTIPLE_LATERAL,
                    b,
                    now,
                    start,
                    score,
                    f"{len(lateral)} distinct reconnaissance / lateral-movement models in the last "
                    f"{TRAILING_S / 60:.0f} min (threshold {MIN_LATERAL_MODELS}): " + ", ".join(lateral),
                    lateral,
                    len(lateral),
                )
            )
        if b.model in ATTACK_TOOL_MODELS and due(NEW_DEVICE_WITH_TOOLS, NEW_DEVICE_RECENT_S):
            doc = self.inventory.doc(device_id) or {}
            seen = float(doc.get("first_seen", now))
            if now - seen <= NEW_DEVICE_RECENT_S and self._learned_for(seen, first) >= self.grace_s:
                fired[NEW_DEVICE_WITH_TOOLS] = now
                out.append(
                    self._meta_breach(
                        NEW_DEVICE_WITH_TOOLS,
                        b,
                        now,
                        seen,
                        85,
                        f"first seen {(now - seen) / 60:.0f} min ago and already breaching {b.model!r}",
                        [b.model],
                        1,
                    )
                )
        return out

    def _meta_breach(
        self,
        model: str,
        cause: alert_pb2.ModelBreach,
        now: float,
        start: float,
        score: int,
        text: str,
        examples: list[str],
        observed: int,
    ) -> alert_pb2.ModelBreach:
        return make_breach(
            model,
            cause.device,
            key=math.floor(now / TRAILING_S),
            score=score,
            when=now,
            window=(start, now),
            explanation=f"{cause.device.ip} {text}; score {score}",
            evidence=[
                alert_pb2.Evidence(feature="recent_breaches", observed=float(observed), examples=examples)
            ],
            techniques=tuple(sorted(set(cause.mitre_techniques))),
            uids=list(cause.uids),
        )
