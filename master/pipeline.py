"""One batch of records through entities → windows → each detector → commit, over a working set.

:meth:`Pipeline.extract` turns records into typed observations (through the door); :class:`BatchRun`
resolves them to devices (the inventory), advances each device's event-time windows, hands every act,
window and the batch's end to the detector wing (:mod:`master.detectors`, one table), and writes the
state back. The pipeline does no I/O. A driver (the JetStream consumer, or the offline replay) asks it
which keys a batch needs (:meth:`Pipeline.address_keys`, then :meth:`Pipeline.state_keys`), loads them into a
:class:`~master.store.WorkingSet`, calls :meth:`Pipeline.run`, and commits the working set's writes with
the breaches. Both drivers therefore learn and score identically.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from master.breaches import seconds
from master.catalog import (
    DRS_REPLICATION,
)
from master.context import ContextModels, network_clock
from master.detectors import ACT_HOOKS, FINISH_HOOKS, HOOKS_BY_PART, WINDOW_HOOKS, Detector, internal_peer
from master.door import (
    MAX_BYTES,
    NO_LATEST,
    DoorLimits,
    EventClock,
    advance_clock,
    endpoint_problem,
    floor_seconds,
    flow_problem,
    outlier_floor,
    time_problem,
)
from master.endpoints import Endpoints
from master.entities import Inventory, device_id_for
from master.features import DeviceWindows, Networks, Window, answered, ip_text, is_failed, mac_text
from master.gcpause import gc_paused
from master.models.counts import (
    CountParams,
    DeviceCountModel,
    PopulationCountModel,
)
from master.models.intervals import DeviceBeacons
from master.observe import (
    VPN_SERVICES,
    Act,
    FlowObs,
    app_items,
    c2_obs,
    flow_items,
    http_obs,
    is_half_open,
    session_timer,
    smb_dialect,
    upload_obs,
)
from master.store import Doc, Keys, WorkingSet
from vigil.alert.v1 import alert_pb2
from vigil.flow.v1 import flow_pb2
from vigil.sensor.v1 import sensor_pb2

# Default allowance for flows that arrive after their window's end: a failed TCP attempt is emitted only
# when the sensor's idle timeout (300 s by default) fires, plus batching delay.
DEFAULT_ALLOWED_LATENESS_S = 360.0
KERBEROS_PORT = 88
_TCP, _UDP = flow_pb2.TRANSPORT_TCP, flow_pb2.TRANSPORT_UDP


@dataclass(frozen=True)
class DhcpObs:
    t: float
    mac: str
    ip: str | None
    hostname: str


@dataclass(frozen=True)
class HostnameObs:
    """A name a protocol gave the device behind ``ip``.

    ``kind``: "hostname" (the device names itself: NTLM workstation, DHCP, Kerberos machine account; these
    feed Unusual Hostname for IP), "user" (an account that logged on from it) or "dns" (what DNS calls the
    address; recorded, never judged: DNS and NetBIOS names legitimately differ).
    """

    t: float
    ip: str
    hostname: str
    source: str
    kind: str = "hostname"
    # For a user: the workstation name it logged on from, when the protocol says.
    workstation: str = ""


@dataclass
class Extracted:
    """The parts of a batch the pipeline uses, decoded once."""

    flows: list[FlowObs] = field(default_factory=list)
    dhcp: list[DhcpObs] = field(default_factory=list)
    # What each internal device did (flows and application records), in feature terms.
    acts: list[Act] = field(default_factory=list)
    hostnames: list[HostnameObs] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    # Records turned away at the door (master/door.py), by reason.
    rejected: Counter[str] = field(default_factory=Counter)
    # The event time of every record let in and read, in order once extracted (the event clock's
    # evidence, master/door.py).
    times: list[float] = field(default_factory=list)

    def merge(self, other: Extracted) -> None:
        """Append another batch's extraction (units of work are extracted batch by batch)."""
        self.flows += other.flows
        self.dhcp += other.dhcp
        self.acts += other.acts
        self.hostnames += other.hostnames
        self.kinds.update(other.kinds)
        self.rejected.update(other.rejected)
        self.times += other.times

    def drop_before(self, earliest: float) -> None:
        """Leave out every observation timed before ``earliest`` (a batch's outliers)."""
        self.flows = [f for f in self.flows if f.t >= earliest]
        self.dhcp = [d for d in self.dhcp if d.t >= earliest]
        self.acts = [a for a in self.acts if a.t >= earliest]
        self.hostnames = [h for h in self.hostnames if h.t >= earliest]
        kept = [t for t in self.times if t >= earliest]
        self.rejected["time_outlier"] += len(self.times) - len(kept)
        self.times = kept

    def ips(self) -> set[str]:
        out: set[str] = set()
        for f in self.flows:
            if f.orig_internal:
                out.add(f.orig_ip)
            if f.resp_internal and f.answered:
                out.add(f.resp_ip)
        out.update(d.ip for d in self.dhcp if d.ip is not None)
        out.update(a.ip for a in self.acts)
        out.update(h.ip for h in self.hostnames)
        return out

    def macs(self) -> set[str]:
        return {d.mac for d in self.dhcp}

    def clouds(self) -> set[str]:
        return {f.cloud_id for f in self.flows if f.cloud_id}


@dataclass
class Outcome:
    breaches: list[alert_pb2.ModelBreach]
    new_devices: set[str]
    kinds: Counter[str]
    late_records: int
    # The new devices as they look at the end of the batch (for the live view).
    new_device_refs: list[alert_pb2.DeviceRef] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        params: CountParams,
        internal_networks: Iterable[str],
        keys: Keys,
        allowed_lateness_s: float = DEFAULT_ALLOWED_LATENESS_S,
        door: DoorLimits | None = None,
    ) -> None:
        self.params = params
        self.internal = Networks(internal_networks)
        self.keys = keys
        self.allowed_lateness_s = allowed_lateness_s
        self.door = door or DoorLimits()
        self.floor = floor_seconds(self.door)

    @gc_paused
    def extract(self, records: Sequence[sensor_pb2.Record], latest: int = NO_LATEST) -> Extracted:
        """One batch's records as observations, each record through the door as it is read (``latest``: the
        newest event time, in whole seconds, that the batch vouches for; see door.latest_seconds)."""
        out = Extracted()
        floor = self.floor
        apps: list[tuple[sensor_pb2.Record, str]] = []
        for record in records:
            kind = record.WhichOneof("kind")
            if kind is None:
                out.rejected["no_kind"] += 1
                continue
            if kind == "flow":
                obs = self._flow(record.flow, floor, latest)
                if isinstance(obs, str):
                    out.rejected[obs] += 1
                    continue
                out.kinds[kind] += 1
                out.times.append(obs.t)
                out.flows.append(obs)
                if obs.orig_internal and obs.orig_sent:
                    out.acts.append(Act(obs.t, obs.orig_ip, obs.orig_mac, obs.uid, flow_items(obs), flow=obs))
            elif kind == "dhcp":
                dhcp = record.dhcp
                ts, raw_mac = dhcp.time, dhcp.mac
                problem = time_problem(ts.seconds, ts.nanos, floor, latest) or (
                    "bad_mac" if len(raw_mac) != 6 else None
                )
                if problem is not None:
                    out.rejected[problem] += 1
                    continue
                out.kinds[kind] += 1
                ip = ip_text(dhcp.assigned_addr) or ip_text(dhcp.client_addr)
                if ip is not None and ip not in self.internal:
                    ip = None
                t = seconds(ts)
                out.times.append(t)
                out.dhcp.append(DhcpObs(t, raw_mac.hex(":"), ip, dhcp.host_name))
            else:
                apps.append((record, kind))
        if apps:
            self._apps(apps, out, floor, latest)
        out.times.sort()
        earliest = outlier_floor(out.times, self.door)
        if earliest is not None:
            out.drop_before(earliest)
        return out

    def _flow(self, flow: flow_pb2.Flow, floor: int, latest: int) -> FlowObs | str:
        """The flow's observation, or the door's reason to turn it away."""
        # Every protobuf attribute read builds a new wrapper object: read each field once.
        start = flow.start_time
        start_s, start_ns = start.seconds, start.nanos
        o, r = flow.orig, flow.resp
        o_ip, r_ip, o_mac, r_mac, r_port = o.ip, r.ip, o.mac, r.mac, r.port
        ip_proto, orig_bytes, resp_bytes = flow.ip_proto, flow.orig_bytes, flow.resp_bytes
        problem = flow_problem(
            start_s, start_ns, o_ip, o_mac, r_ip, r_mac, r_port, ip_proto, orig_bytes, resp_bytes,
            flow.resp_pkts, floor, latest,
        )  # fmt: skip
        if problem is not None:
            return problem
        orig, resp = ip_text(o_ip), ip_text(r_ip)
        assert orig is not None and resp is not None  # the door checked their lengths
        return FlowObs(
            t=float(start_s) + float(start_ns) / 1e9,
            uid=flow.uid,
            orig_ip=orig,
            orig_mac=mac_text(o_mac),
            resp_ip=resp,
            resp_mac=mac_text(r_mac),
            resp_port=r_port,
            transport=flow.transport,
            ip_proto=ip_proto,
            orig_bytes=orig_bytes,
            resp_bytes=resp_bytes,
            failed=is_failed(flow),
            answered=answered(flow),
            half_open=is_half_open(flow.history),
            orig_internal=orig in self.internal,
            resp_internal=resp in self.internal,
            vpn_protocol=_vpn_named(flow.service),
            orig_sent=flow.orig_pkts > 0,
            service_known=bool(flow.service),
            timer=session_timer(
                flow.orig_messages,
                flow.orig_message_intervals,
                flow.orig_message_interval_mean_s,
                flow.orig_message_interval_stdev_s,
            ),
            **_cloud(flow, orig, resp, self.internal),
        )

    def _apps(
        self, apps: list[tuple[sensor_pb2.Record, str]], out: Extracted, floor: int, latest: int
    ) -> None:
        """Application records count for the device that originated their connection: named on the record
        by the sensor, else found through a flow with the same uid in this batch. Those that count for none
        are not read further; those that do go through the door first."""
        by_uid = {f.uid: f for f in out.flows}
        for received, kind in apps:
            out.kinds[kind] += 1
            body = getattr(received, kind)
            # A call (or a DNS query) whose client is the connection's responder is what that device did.
            flipped = kind in ("dce_rpc", "dns") and body.roles_flipped
            record = _caller_first(received) if flipped else received
            orig = record.orig if record.HasField("orig") else None
            orig_ip = orig.ip if orig is not None else b""
            ip = ip_text(orig_ip) if orig_ip else None
            if ip is None:
                flow = by_uid.get(body.uid)
                ip = flow.orig_ip if flow is not None else None
            if ip is None or ip not in self.internal:
                continue
            ts = body.time
            start_s, start_ns = ts.seconds, ts.nanos
            orig_mac = orig.mac if orig is not None else b""
            resp = record.resp if record.HasField("resp") else None
            resp_ip = resp.ip if resp is not None else b""
            problem = (
                time_problem(start_s, start_ns, floor, latest)
                or endpoint_problem(0, orig_ip, orig_mac, False)
                or (endpoint_problem(resp.port, resp_ip, resp.mac, False) if resp is not None else None)
                or (_size_problem(body) if kind == "http" else None)
            )
            if problem is not None:
                out.rejected[problem] += 1
                out.kinds[kind] -= 1
                continue
            t = float(start_s) + float(start_ns) / 1e9
            out.times.append(t)
            out.hostnames += _names(record, kind, ip, t, self.internal)
            items = app_items(record, kind)
            resp_text = ip_text(resp_ip) if resp_ip else None
            http = (
                http_obs(record, resp_text, resp_text in self.internal)
                if kind == "http" and resp_text
                else None
            )
            smb = smb_dialect(record) if kind == "smb_negotiate" else None
            c2 = c2_obs(record, resp_text, http) if resp_text and kind in ("http", "tls") else None
            upload = (
                upload_obs(record, kind, resp_text)
                if resp_text and kind in ("smtp", "ftp") and resp_text not in self.internal
                else None
            )
            if items or http is not None or smb is not None or c2 is not None or upload is not None:
                mac = mac_text(orig_mac)
                out.acts.append(
                    Act(t, ip, mac, body.uid, items, app=True, http=http, smb=smb, c2=c2, upload=upload)
                )

    def address_keys(self, ex: Extracted) -> list[str]:
        keys = Inventory(WorkingSet(), self.keys).address_keys(ex.ips(), ex.macs())
        return keys + [self.keys.cloud(c) for c in sorted(ex.clouds())]

    def state_keys(self, ex: Extracted, ws: WorkingSet) -> list[str]:
        inventory = Inventory(ws, self.keys)
        devices = inventory.device_ids(ex.ips(), ex.macs())
        keys = [self.keys.device(d) for d in devices]
        keys += [inventory.cloud_device_key(c) for c in ex.clouds()]
        scanners = {inventory.lookup(a.ip) for a in ex.acts}
        # A DHCP record in the same batch may move an address to its MAC's device before the flows run:
        # load the scan state of every device the address could end up with.
        origins = {a.ip for a in ex.acts}
        for f in ex.flows:
            if f.cloud_id and f.cloud_ip in origins:
                scanners.add(inventory.cloud_device_id(f.cloud_id))
        for d in ex.dhcp:
            if d.ip in origins:
                bound = ws.get(self.keys.mac(d.mac))
                scanners.add(str(bound["device_id"]) if bound else device_id_for("mac", d.mac))
        for device_id in scanners:
            keys += [
                self.keys.count_windows(device_id),
                self.keys.count_model(device_id),
                self.keys.device_breaches(device_id),
                self.keys.beacons(device_id),
            ]
        for act in ex.acts:
            if act.flow is not None and (not act.flow.resp_internal or internal_peer(act.flow)):
                keys.append(self.keys.endpoint(act.flow.resp_ip))
            elif act.http is not None:
                keys.append(self.keys.endpoint(act.http.resp_ip))
            elif act.upload is not None:
                keys.append(self.keys.endpoint(act.upload.resp_ip))
        keys += [self.keys.device_breaches(d) for d in devices]
        keys += [self.keys.count_population, self.keys.network]
        keys += [self.keys.user(h.hostname) for h in ex.hostnames if h.kind == "user" and h.workstation]
        return sorted(set(keys))

    def group_keys(self, ex: Extracted, ws: WorkingSet) -> list[str]:
        """Third load: the peer-group models of the acting devices (known once their documents are)."""
        inventory = Inventory(ws, self.keys)
        groups = set()
        for act in ex.acts:
            doc = ws.get(self.keys.device(inventory.lookup(act.ip)))
            groups.add(peer_group(doc, act.ip))
            # Every device also teaches its subnet's group: that is what newcomers there borrow.
            groups.add(subnet_group(act.ip))
        for cloud_id in ex.clouds():
            doc = ws.get(inventory.cloud_device_key(cloud_id))
            groups.update(peer_group(doc, f.cloud_ip) for f in ex.flows if f.cloud_id == cloud_id)
        return sorted(self.keys.peer_group(g) for g in groups)

    def event_clock(self, ws: WorkingSet, batch_times: Sequence[Sequence[float]]) -> EventClock:
        """The network's event clock stepped through the unit's batches (each its accepted times, sorted);
        ``network`` must be loaded in ``ws`` (it always is: see state_keys)."""
        clock, learned = network_clock(ws.get(self.keys.network))
        return advance_clock(clock, learned, batch_times, self.door.max_event_step_s)

    @gc_paused
    def run(self, ex: Extracted, ws: WorkingSet, clock: EventClock) -> Outcome:
        """One unit over its working set; ``clock`` from :meth:`event_clock`."""
        return BatchRun(self, ws, clock).run(ex)


def _caller_first(record: sensor_pb2.Record) -> sensor_pb2.Record:
    """A copy of an application record with its endpoints swapped (orig becomes the caller)."""
    swapped = sensor_pb2.Record()
    swapped.CopyFrom(record)
    swapped.orig.CopyFrom(record.resp)
    swapped.resp.CopyFrom(record.orig)
    return swapped


def _size_problem(http: Any) -> str | None:
    """The body lengths an HTTP record carries (the master reads them)."""
    if http.request_body_len > MAX_BYTES or http.response_body_len > MAX_BYTES:
        return "size_out_of_range"
    return None


def _vpn_named(services: Sequence[str]) -> str:
    """The VPN protocol among a flow's services (named by the sensor once the handshake was answered)."""
    return next((s for s in services if s in VPN_SERVICES), "") if services else ""


def _cloud(flow: flow_pb2.Flow, orig: str, resp: str, internal: Networks) -> dict[str, str]:
    """The cloud instance a flow-log record belongs to, and which of its addresses is the instance's."""
    if not flow.HasField("cloud"):
        return {}
    cloud = flow.cloud
    ident = cloud.instance_id or cloud.interface_id
    if not ident:
        return {}
    direction = cloud.direction.lower()
    if direction in ("egress", "o", "outbound"):
        ip = orig
    elif direction in ("ingress", "i", "inbound"):
        ip = resp
    elif orig in internal and resp not in internal:
        ip = orig
    elif resp in internal and orig not in internal:
        ip = resp
    else:
        return {}
    return {"cloud_id": f"{cloud.provider}:{ident}", "cloud_ip": ip}


def _ptr_address(name: str) -> str | None:
    """ "12.1.231.10.in-addr.arpa" -> "10.231.1.12" (IPv4 reverse names only)."""
    labels = name.lower().rstrip(".").split(".")
    if len(labels) != 6 or labels[4:] != ["in-addr", "arpa"]:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(labels[:4]))))
    except ValueError:
        return None


def _names(record: sensor_pb2.Record, kind: str, ip: str, t: float, internal: Networks) -> list[HostnameObs]:
    """The IP <-> hostname <-> user bindings an application record carries."""
    out = []
    if kind == "ntlm":
        if record.ntlm.hostname:
            out.append(HostnameObs(t, ip, record.ntlm.hostname, "ntlm"))
        if record.ntlm.username:
            user = (
                f"{record.ntlm.domain}\\{record.ntlm.username}"
                if record.ntlm.domain
                else record.ntlm.username
            )
            # Only a logon that succeeded says the user works from that machine (failures are guesses).
            succeeded = record.ntlm.HasField("success") and record.ntlm.success
            workstation = record.ntlm.hostname if succeeded else ""
            out.append(HostnameObs(t, ip, user, "ntlm", kind="user", workstation=workstation))
    elif kind == "kerberos" and record.kerberos.client:
        principal = record.kerberos.client.split("/", 1)[0]
        name = principal.split("@", 1)[0]
        if name.endswith("$"):
            # A machine account: the workstation introducing itself.
            out.append(HostnameObs(t, ip, name[:-1], "kerberos"))
        elif name:
            out.append(HostnameObs(t, ip, principal, "kerberos", kind="user"))
    elif kind == "dns" and record.dns.qtype == 12:
        target = _ptr_address(record.dns.query)
        if target is not None and target in internal:
            for answer in record.dns.answers:
                if answer.rr_type == 12 and answer.value:
                    out.append(HostnameObs(t, target, answer.value.rstrip("."), "dns", kind="dns"))
    return out


@functools.lru_cache(maxsize=65536)
def subnet_group(ip: str) -> str:
    """A newcomer's peers until it has a behaviour of its own: the devices of its /24 (IPv6: /64)."""
    net = ipaddress.ip_network(f"{ip}/{24 if ':' not in ip else 64}", strict=False)
    return f"subnet-{net.network_address}"


def peer_group(doc: Doc | None, ip: str) -> str:
    group = (doc or {}).get("peer_group")
    return str(group) if group else subnet_group(ip)


class BatchRun:
    """One batch run: the devices touched, their windows and models; written back at the end."""

    def __init__(self, pipeline: Pipeline, ws: WorkingSet, clock: EventClock) -> None:
        self.p = pipeline
        self.ws = ws
        self.clock = clock
        self.keys = pipeline.keys
        self.inventory = Inventory(ws, pipeline.keys)
        self.windows: dict[str, DeviceWindows] = {}
        self.models: dict[str, DeviceCountModel] = {}
        self.last_ip: dict[str, str] = {}
        # Each device's newest event time in this unit, as far as the acts have been taken in.
        self.newest: dict[str, float] = {}
        self.late_at_load: dict[str, int] = {}
        self.breaches: list[alert_pb2.ModelBreach] = []
        self.context = ContextModels(
            ws, self.keys, self.inventory, pipeline.params.window_s, pipeline.params.new_device_grace_s, clock
        )
        self.endpoints = Endpoints(ws, self.keys)
        self.beacons: dict[str, DeviceBeacons] = {}
        self.groups: dict[str, PopulationCountModel] = {}
        self.group_of: dict[str, str] = {}
        self.unloaded_groups: set[str] = set()
        doc = ws.get(self.keys.count_population)
        self.population = (
            PopulationCountModel.from_dict(doc, pipeline.params)
            if doc
            else PopulationCountModel(pipeline.params)
        )

    def _device(self, device_id: str) -> tuple[DeviceWindows, DeviceCountModel]:
        if device_id not in self.windows:
            params = self.p.params
            fdoc = self.ws.get(self.keys.count_windows(device_id))
            mdoc = self.ws.get(self.keys.count_model(device_id))
            self.windows[device_id] = (
                DeviceWindows.from_dict(fdoc, params.window_s, self.p.allowed_lateness_s)
                if fdoc
                else DeviceWindows(params.window_s, self.p.allowed_lateness_s)
            )
            self.models[device_id] = (
                DeviceCountModel.from_dict(mdoc, params) if mdoc else DeviceCountModel(params)
            )
            self.late_at_load[device_id] = self.windows[device_id].late_records
        return self.windows[device_id], self.models[device_id]

    def group_of_device(self, device_id: str, subnet: bool = False) -> PopulationCountModel:
        # The group a device had when the batch was loaded: a role learned mid-batch counts from the next.
        ip = self.last_ip.get(device_id, "0.0.0.0")
        name = subnet_group(ip) if subnet else self.group_of.get(device_id)
        if name is None:
            name = peer_group(self.inventory.doc(device_id), ip)
            self.group_of[device_id] = name
        if name not in self.groups:
            key = self.keys.peer_group(name)
            params = self.p.params
            if self.ws.missing([key]):
                # Not loaded (an address moved to another device within the batch): use, never write, a blank.
                self.unloaded_groups.add(name)
                self.groups[name] = PopulationCountModel(params)
            else:
                doc = self.ws.get(key)
                self.groups[name] = (
                    PopulationCountModel.from_dict(doc, params) if doc else PopulationCountModel(params)
                )
        return self.groups[name]

    def beacons_of(self, device_id: str) -> DeviceBeacons:
        if device_id not in self.beacons:
            doc = self.ws.get(self.keys.beacons(device_id))
            self.beacons[device_id] = DeviceBeacons.from_dict(doc) if doc else DeviceBeacons()
        return self.beacons[device_id]

    def _mark_domain_controller(self, device_id: str) -> None:
        """A device that answers Kerberos is a domain controller (a KDC), for as long as it is known."""
        doc = self.inventory.doc(device_id)
        if doc is not None and not doc.get("kdc"):
            doc["kdc"] = True
            self.inventory.put_doc(device_id, doc)

    def _is_domain_controller(self, device_id: str) -> bool:
        doc = self.inventory.doc(device_id)
        return bool(doc and doc.get("kdc"))

    @staticmethod
    def _hooks_for(act: Act) -> tuple[Detector, ...]:
        """The act hooks that read something this act has (a flow act has nothing else)."""
        if act.flow is not None:
            return HOOKS_BY_PART["flow"]
        parts = [
            p
            for p, v in (("http", act.http), ("c2", act.c2), ("smb", act.smb), ("upload", act.upload))
            if v is not None
        ]
        if not parts:
            return ()
        if len(parts) == 1:
            return HOOKS_BY_PART[parts[0]]
        return tuple(d for d in ACT_HOOKS if not d.reads.isdisjoint(parts))

    def _score(self, device_id: str, window: Window) -> None:
        for detector in WINDOW_HOOKS:
            detector.window(self, device_id, window)

    def breach_time(self, device_id: str, window: Window) -> float:
        """The observation that completed a breach happened at the device's newest time (not its watermark,
        which may wait for the network clock), at most at the window's end (a late record may complete an
        older window)."""
        end = (window.index + 1) * self.p.params.window_s
        watermark = self.windows[device_id].watermark
        newest = max(self.newest.get(device_id, -math.inf), watermark if watermark is not None else -math.inf)
        return min(newest, end) if newest > -math.inf else end

    def _close(self, device_id: str, window: Window) -> None:
        # Score before learning: a window closed within one batch must still get its chance to breach.
        if window.dirty:
            self._score(device_id, window)
        x = window.features()
        model = self.models[device_id]
        zeros = model.learn_one(x, at=window.index)
        # A breaching window does not teach the network what normal is: one scanner must not raise every
        # new device's prior. The device itself does learn it, so a scanner that scans daily becomes normal.
        if not window.breached:
            self.population.learn_one(x, at=window.index, zeros=zeros)
            group, subnet = self.group_of_device(device_id), self.group_of_device(device_id, subnet=True)
            group.learn_one(x, at=window.index, zeros=zeros, seasonal=False)
            if subnet is not group:
                subnet.learn_one(x, at=window.index, zeros=zeros, seasonal=False)
        role = model.role()
        doc = self.inventory.doc(device_id)
        if role is not None and doc is not None and doc.get("peer_group") != role:
            # The device now has a behaviour of its own: its peers are those that behave alike.
            doc["peer_group"] = role
            self.inventory.put_doc(device_id, doc)

    def run(self, ex: Extracted) -> Outcome:
        for f in ex.flows:
            if f.cloud_id and f.cloud_ip in self.p.internal:
                self.inventory.observe_cloud(f.cloud_id, f.cloud_ip, f.t)
        for d in ex.dhcp:
            device_id = self.inventory.observe_dhcp(d.mac, d.ip, d.t, d.hostname)
            self.context.saw_actor(device_id, d.t)
            if d.hostname and d.ip is not None:
                self.context.hostname(device_id, d.ip, d.hostname, d.t, "dhcp")
        for f in ex.flows:
            if f.resp_internal and f.answered:
                server = self.inventory.observe(f.resp_ip, f.t, f.resp_mac)
                if f.resp_port == KERBEROS_PORT and f.transport in (_TCP, _UDP):
                    self._mark_domain_controller(server)
        # Event-time order across flows and application records: windows advance as the device acts.
        for act in sorted(ex.acts, key=lambda a: a.t):
            device_id = self.inventory.observe(act.ip, act.t, act.mac, flows=0 if act.app else 1)
            self.last_ip[device_id] = act.ip
            self.context.saw_actor(device_id, act.t)
            state, _ = self._device(device_id)
            self.newest[device_id] = max(self.newest.get(device_id, act.t), act.t)
            # Its watermark follows the device's time only as far as the network clock: one forged time
            # must not close the device's windows and make everything it does afterwards "late".
            for closed in state.advance(self.clock.ceiling(act.t)):
                self._close(device_id, closed)
            items = list(act.items)
            if act.app and self._is_domain_controller(device_id):
                # Domain controllers replicate with each other all day: that is what they are for.
                items = [o for o in items if o.feature != DRS_REPLICATION]
            for detector in self._hooks_for(act):
                found = detector.act(self, device_id, act)
                if found:
                    items += found
            window = state.window_for(act.t)
            if window is not None:
                for o in items:
                    window.observe(o.feature, o.member, o.example, act.uid, o.amount, o.peer)
        for h in ex.hostnames:
            device_id = self.inventory.lookup(h.ip)
            if h.kind == "hostname":
                self.context.hostname(device_id, h.ip, h.hostname, h.t, h.source)
            else:
                if h.kind == "user" and h.workstation:
                    self.context.user_workstation(h.hostname, h.workstation, device_id, h.ip, h.t, h.source)
                self.inventory.bind(device_id, "users" if h.kind == "user" else "dns_names", h.hostname, h.t)
        # Evaluate every window that grew, open ones included: a scan is caught while it is going on.
        for device_id, state in self.windows.items():
            for window in state.dirty_windows():
                self._score(device_id, window)
        for detector in FINISH_HOOKS:
            detector.finish(self)
        late = 0
        for device_id, state in self.windows.items():
            late += state.late_records - self.late_at_load[device_id]
            self.ws.put(self.keys.count_windows(device_id), state.to_dict())
            # Models only change when a window closes: the others would be written back byte for byte.
            if self.models[device_id].unsaved:
                self.ws.put(self.keys.count_model(device_id), self.models[device_id].to_dict())
        if self.windows and self.population.unsaved:
            self.ws.put(self.keys.count_population, self.population.to_dict())
        for device_id, beacons in self.beacons.items():
            self.ws.put(self.keys.beacons(device_id), beacons.to_dict())
        for name, group in self.groups.items():
            if name not in self.unloaded_groups and group.unsaved:
                self.ws.put(self.keys.peer_group(name), group.to_dict())
        refs = [self.context.ref(d) for d in sorted(self.inventory.new_devices)]
        return Outcome(self.breaches, set(self.inventory.new_devices), ex.kinds, late, refs)
