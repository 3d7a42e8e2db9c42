"""One batch of records through entities → features → models → breaches, over a working set.

The pipeline does no I/O. A driver (the JetStream consumer, or the offline replay) asks it which keys a
batch needs (:meth:`Pipeline.address_keys`, then :meth:`Pipeline.state_keys`), loads them into a
:class:`~master.store.WorkingSet`, calls :meth:`Pipeline.run`, and commits the working set's writes with
the breaches. Both drivers therefore learn and score identically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from master.breaches import scan_breach
from master.entities import Inventory, device_id_for
from master.features import DeviceWindows, Networks, Window, answered, ip_text, is_failed, mac_text
from master.models.scan import NetworkScanModel, PopulationScanModel, ScanParams
from master.store import Keys, WorkingSet
from vigil.alert.v1 import alert_pb2
from vigil.sensor.v1 import sensor_pb2

# Default allowance for flows that arrive after their window's end: a failed TCP attempt is emitted only
# when the sensor's idle timeout (300 s by default) fires, plus batching delay.
DEFAULT_ALLOWED_LATENESS_S = 360.0


def _seconds(ts: object) -> float:
    seconds = getattr(ts, "seconds", 0)
    nanos = getattr(ts, "nanos", 0)
    return float(seconds) + float(nanos) / 1e9


@dataclass(frozen=True)
class FlowObs:
    t: float
    uid: str
    orig_ip: str
    orig_mac: str | None
    resp_ip: str
    resp_mac: str | None
    resp_port: int
    failed: bool
    answered: bool
    orig_internal: bool
    resp_internal: bool


@dataclass(frozen=True)
class DhcpObs:
    t: float
    mac: str
    ip: str | None
    hostname: str


@dataclass(frozen=True)
class NtlmObs:
    uid: str
    hostname: str


@dataclass
class Extracted:
    """The parts of a batch the pipeline uses, decoded once."""

    flows: list[FlowObs] = field(default_factory=list)
    dhcp: list[DhcpObs] = field(default_factory=list)
    ntlm: list[NtlmObs] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    # Records that were structurally unusable (bad address length, ...): counted, skipped.
    skipped: int = 0

    def ips(self) -> set[str]:
        out: set[str] = set()
        for f in self.flows:
            if f.orig_internal:
                out.add(f.orig_ip)
            if f.resp_internal and f.answered:
                out.add(f.resp_ip)
        out.update(d.ip for d in self.dhcp if d.ip is not None)
        return out

    def macs(self) -> set[str]:
        return {d.mac for d in self.dhcp}


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
        params: ScanParams,
        internal_networks: Iterable[str],
        keys: Keys,
        allowed_lateness_s: float = DEFAULT_ALLOWED_LATENESS_S,
    ) -> None:
        self.params = params
        self.internal = Networks(internal_networks)
        self.keys = keys
        self.allowed_lateness_s = allowed_lateness_s

    def extract(self, records: Sequence[sensor_pb2.Record]) -> Extracted:
        out = Extracted()
        for record in records:
            kind = record.WhichOneof("kind")
            if kind is None:
                out.skipped += 1
                continue
            out.kinds[kind] += 1
            if kind == "flow":
                flow = record.flow
                orig, resp = ip_text(flow.orig.ip), ip_text(flow.resp.ip)
                if orig is None or resp is None:
                    out.skipped += 1
                    continue
                out.flows.append(
                    FlowObs(
                        t=_seconds(flow.start_time),
                        uid=flow.uid,
                        orig_ip=orig,
                        orig_mac=mac_text(flow.orig.mac),
                        resp_ip=resp,
                        resp_mac=mac_text(flow.resp.mac),
                        resp_port=flow.resp.port,
                        failed=is_failed(flow),
                        answered=answered(flow),
                        orig_internal=orig in self.internal,
                        resp_internal=resp in self.internal,
                    )
                )
            elif kind == "dhcp":
                dhcp = record.dhcp
                mac = mac_text(dhcp.mac)
                if mac is None:
                    out.skipped += 1
                    continue
                ip = ip_text(dhcp.assigned_addr) or ip_text(dhcp.client_addr)
                if ip is not None and ip not in self.internal:
                    ip = None
                out.dhcp.append(DhcpObs(_seconds(dhcp.time), mac, ip, dhcp.host_name))
            elif kind == "ntlm" and record.ntlm.hostname:
                out.ntlm.append(NtlmObs(record.ntlm.uid, record.ntlm.hostname))
        return out

    def address_keys(self, ex: Extracted) -> list[str]:
        return Inventory(WorkingSet(), self.keys).address_keys(ex.ips(), ex.macs())

    def state_keys(self, ex: Extracted, ws: WorkingSet) -> list[str]:
        inventory = Inventory(ws, self.keys)
        keys = inventory.device_keys(ex.ips(), ex.macs())
        scanners = {inventory.lookup(f.orig_ip) for f in ex.flows if f.orig_internal}
        # A DHCP record in the same batch may move an address to its MAC's device before the flows run:
        # load the scan state of every device the address could end up with.
        origins = {f.orig_ip for f in ex.flows if f.orig_internal}
        for d in ex.dhcp:
            if d.ip in origins:
                bound = ws.get(self.keys.mac(d.mac))
                scanners.add(str(bound["device_id"]) if bound else device_id_for("mac", d.mac))
        for device_id in scanners:
            keys += [self.keys.scan_features(device_id), self.keys.scan_model(device_id)]
        keys.append(self.keys.scan_population)
        return keys

    def run(self, ex: Extracted, ws: WorkingSet) -> Outcome:
        return _BatchRun(self, ws).run(ex)


class _BatchRun:
    """One batch run: the devices touched, their windows and models; written back at the end."""

    def __init__(self, pipeline: Pipeline, ws: WorkingSet) -> None:
        self.p = pipeline
        self.ws = ws
        self.keys = pipeline.keys
        self.inventory = Inventory(ws, pipeline.keys)
        self.windows: dict[str, DeviceWindows] = {}
        self.models: dict[str, NetworkScanModel] = {}
        self.last_ip: dict[str, str] = {}
        self.late_at_load: dict[str, int] = {}
        self.breaches: list[alert_pb2.ModelBreach] = []
        doc = ws.get(self.keys.scan_population)
        self.population = (
            PopulationScanModel.from_dict(doc, pipeline.params)
            if doc
            else PopulationScanModel(pipeline.params)
        )

    def _device(self, device_id: str) -> tuple[DeviceWindows, NetworkScanModel]:
        if device_id not in self.windows:
            params = self.p.params
            fdoc = self.ws.get(self.keys.scan_features(device_id))
            mdoc = self.ws.get(self.keys.scan_model(device_id))
            self.windows[device_id] = (
                DeviceWindows.from_dict(fdoc, params.window_s, self.p.allowed_lateness_s)
                if fdoc
                else DeviceWindows(params.window_s, self.p.allowed_lateness_s)
            )
            self.models[device_id] = (
                NetworkScanModel.from_dict(mdoc, params) if mdoc else NetworkScanModel(params)
            )
            self.late_at_load[device_id] = self.windows[device_id].late_records
        return self.windows[device_id], self.models[device_id]

    def _score(self, device_id: str, window: Window) -> None:
        window.dirty = False
        if window.breached:
            return
        model = self.models[device_id]
        result = model.score_one(window.features(), window=window.index, population=self.population)
        if not result.breach:
            return
        window.breached = True
        state = self.windows[device_id]
        # The observation that completed the breach happened at the device's newest flow time, at most at
        # the window's end (a late flow may complete an older window).
        end = (window.index + 1) * self.p.params.window_s
        when = min(state.watermark if state.watermark is not None else end, end)
        ref = self.inventory.ref(device_id, self.last_ip[device_id])
        self.breaches.append(scan_breach(ref, window, result, self.p.params.window_s, when))

    def _close(self, device_id: str, window: Window) -> None:
        # Score before learning: a window closed within one batch must still get its chance to breach.
        if window.dirty:
            self._score(device_id, window)
        x = window.features()
        zeros = self.models[device_id].learn_one(x, window=window.index)
        # A breaching window does not teach the network what normal is: one scanner must not raise every
        # new device's prior. The device itself does learn it, so a scanner that scans daily becomes normal.
        if not window.breached:
            self.population.learn_one(x, window=window.index, zeros=zeros)

    def run(self, ex: Extracted) -> Outcome:
        for d in ex.dhcp:
            self.inventory.observe_dhcp(d.mac, d.ip, d.t, d.hostname)
        for f in ex.flows:
            if f.orig_internal:
                device_id = self.inventory.observe(f.orig_ip, f.t, f.orig_mac)
                self.last_ip[device_id] = f.orig_ip
                state, _ = self._device(device_id)
                for closed in state.advance(f.t):
                    self._close(device_id, closed)
                destination = f.resp_ip if f.resp_internal and f.resp_ip != f.orig_ip else None
                state.add(f.t, destination, f.resp_port, f.failed, f.uid)
            if f.resp_internal and f.answered:
                self.inventory.observe(f.resp_ip, f.t, f.resp_mac)
        if ex.ntlm:
            orig_by_uid = {f.uid: f for f in ex.flows if f.orig_internal}
            for n in ex.ntlm:
                flow = orig_by_uid.get(n.uid)
                if flow is not None:
                    self.inventory.set_hostname(flow.orig_ip, n.hostname, flow.t, "ntlm")
        # Evaluate every window that grew, open ones included: a scan is caught while it is going on.
        for device_id, state in self.windows.items():
            for window in sorted(state.windows.values(), key=lambda w: w.index):
                if window.dirty:
                    self._score(device_id, window)
        late = 0
        for device_id, state in self.windows.items():
            late += state.late_records - self.late_at_load[device_id]
            self.ws.put(self.keys.scan_features(device_id), state.to_dict())
            self.ws.put(self.keys.scan_model(device_id), self.models[device_id].to_dict())
        if self.windows:
            self.ws.put(self.keys.scan_population, self.population.to_dict())
        refs = [self.inventory.ref(d) for d in sorted(self.inventory.new_devices)]
        return Outcome(self.breaches, set(self.inventory.new_devices), ex.kinds, late, refs)
