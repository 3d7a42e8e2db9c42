"""The detector wing: every detector of the master in one table, each naming the catalog models it raises.

A detector turns what a batch shows into breaches. It sees the batch through hooks, called by the batch
run (:class:`master.pipeline.BatchRun`) in this order:

* ``act(run, device_id, act)`` for every act (a flow or an application record) in event-time order,
  after the device's windows have advanced; it may return observations for the device's current window
  (a volume to a rare endpoint is counted there, for the count models to judge);
* ``window(run, device_id, window)`` for every window that grew (open ones included: a scan is caught
  while it is going on) and for every window before it closes and teaches the beliefs;
* ``finish(run)`` once, after everything else (breaches made of other breaches).

The models themselves - what makes them breach, their ATT&CK ids, their response - are in
:mod:`master.catalog`; the beliefs the detectors read live on the run (count models per device, peer
group and network; endpoint rarity; beacon series; the context models). A test checks that every catalog
model is raised by exactly one detector of :data:`WING`.

To add a detector: register its models in the catalog, write a subclass of :class:`Detector` with the
hooks it needs, and append an instance to :data:`WING`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from master.beacon import (
    INFRASTRUCTURE_PORTS,
    beacon_breach,
    flow_beacon,
    http_c2,
    known_c2_breach,
    session_beacon,
    session_beacon_breach,
)
from master.breaches import count_breach
from master.catalog import (
    CLEAR_UPLOADS,
    DETECTORS,
    FEATURE_BY_NAME,
    FLOW_BEACON,
    HTTP_BEACON,
    HTTP_C2,
    INTERNAL_BEACON,
    KNOWN_C2,
    LARGE_NUMBER_OF_BREACHES,
    MULTIPLE_LATERAL,
    NEW_DEVICE,
    NEW_DEVICE_WITH_TOOLS,
    RARE_EXTERNAL,
    RARE_UPLOAD,
    SIGNIFICANT_ANOMALY,
    SUSPICIOUS_SMB,
    UNUSUAL_HOSTNAME,
    VPN_RARE,
    CountDetector,
)
from master.endpoints import Rarity, rare_external_breach
from master.features import Window
from master.models.counts import CountScore, FeatureScore, score_from_surprise
from master.models.intervals import Contact, PairStats
from master.observe import Act, FlowObs, Observation, UploadObs, is_vpn

if TYPE_CHECKING:
    from master.pipeline import BatchRun

# Unusual Activity / Significant Anomaly: at least this many behaviours, each at least this improbable
# (and observed at least this many times), jointly at least this many decades of surprise.
SIGNIFICANT_MIN_FEATURES = 3
SIGNIFICANT_FEATURE_P = 1e-2
SIGNIFICANT_MIN_OBSERVED = 3
SIGNIFICANT_SURPRISE = 8.0

_NO_OBSERVATIONS: tuple[Observation, ...] = ()


class Detector:
    """One detector: the catalog models it raises, and the hooks it needs (each does nothing by default).

    ``reads`` names the parts of an act its ``act`` hook looks at ("flow", "http", "c2", "smb"): the run
    calls it only for acts that have one (a batch is mostly flows, and most detectors want none)."""

    models: tuple[str, ...] = ()
    reads: frozenset[str] = frozenset()

    def act(self, run: BatchRun, device_id: str, act: Act) -> Sequence[Observation]:
        return _NO_OBSERVATIONS

    def window(self, run: BatchRun, device_id: str, window: Window) -> None:
        return None

    def finish(self, run: BatchRun) -> None:
        return None


class ExternalEndpoints(Detector):
    """Flows to external addresses: the first contact any device makes once the network is learned, the
    volume sent to rare endpoints and VPNs to them (for the count models), and beacons of any protocol."""

    models = (RARE_EXTERNAL, FLOW_BEACON)
    reads = frozenset({"flow", "upload"})

    def act(self, run: BatchRun, device_id: str, act: Act) -> Sequence[Observation]:
        if act.upload is not None:
            return self._clear_upload(run, device_id, act, act.upload)
        f = act.flow
        if f is None or f.resp_internal or not f.answered:
            return _NO_OBSERVATIONS
        items: list[Observation] = []
        rarity = run.endpoints.rarity(f.resp_ip, device_id, act.t, run.context.known_devices())
        learned = run.context.learned(act.t)
        if rarity.new and learned >= run.p.params.new_device_grace_s:
            ref = run.context.ref(device_id, act.ip)
            run.breaches.append(rare_external_breach(ref, rarity, act.t, f.resp_port, learned, f.uid))
        endpoint = f"{f.resp_ip}:{f.resp_port}"
        if rarity.rare and f.orig_bytes >= 1024:
            sent = f"{f.orig_bytes / 1e6:.1f} MB to {endpoint}; {rarity.text()}"
            items.append(Observation(RARE_UPLOAD, None, sent, f.orig_bytes // 1024, endpoint))
        if rarity.rare and is_vpn(f):
            target = endpoint if f.resp_port else f"{f.resp_ip} (IP protocol {f.ip_proto})"
            if f.vpn_protocol:
                target += f" ({f.vpn_protocol} handshake seen)"
            items.append(Observation(VPN_RARE, endpoint, f"{target}; {rarity.text()}", 1, endpoint))
        stats = run.beacons_of(device_id).learn_one(
            Contact(f"flow:{f.resp_ip}", float(f.orig_bytes + f.resp_bytes)), at=act.t
        )
        if flow_beacon(stats, rarity) and stats.due(FLOW_BEACON, act.t):
            stats.mark(FLOW_BEACON, act.t)
            ref = run.context.ref(device_id, act.ip)
            run.breaches.append(
                beacon_breach(FLOW_BEACON, ref, endpoint, stats, rarity, act.t, f.uid, peer=endpoint)
            )
        timer = f.timer
        if (
            timer is not None
            and session_beacon(timer, rarity, f.service_known)
            and stats.due(FLOW_BEACON, act.t)
        ):
            stats.mark(FLOW_BEACON, act.t)
            ref = run.context.ref(device_id, act.ip)
            run.breaches.append(session_beacon_breach(ref, endpoint, timer, rarity, act.t, f.uid))
        run.endpoints.contact(f.resp_ip, device_id, act.t)
        return items

    @staticmethod
    def _clear_upload(run: BatchRun, device_id: str, act: Act, up: UploadObs) -> Sequence[Observation]:
        """A mail or a file sent in clear text to an external server: counted when the server is rare."""
        rarity = run.endpoints.rarity(up.resp_ip, device_id, act.t, run.context.known_devices())
        if not rarity.rare:
            return _NO_OBSERVATIONS
        endpoint = f"{up.resp_ip}:{up.resp_port}"
        return (Observation(CLEAR_UPLOADS, None, up.text(), 1, endpoint),)


def internal_peer(f: FlowObs) -> bool:
    """An answered connection to an internal endpoint outside the network's own plumbing (for the internal
    beacon model)."""
    return f.resp_internal and f.answered and f.resp_port not in INFRASTRUCTURE_PORTS


class InternalBeacons(Detector):
    """The beacon rule on connections and HTTP requests to internal endpoints few devices reach: an
    implant polling a listener inside the network (a pivot, a compromised server)."""

    models = (INTERNAL_BEACON,)
    reads = frozenset({"flow", "http"})

    def act(self, run: BatchRun, device_id: str, act: Act) -> Sequence[Observation]:
        f = act.flow
        if f is not None and internal_peer(f):
            rarity = run.endpoints.rarity(f.resp_ip, device_id, act.t, run.context.known_devices())
            stats = run.beacons_of(device_id).learn_one(
                Contact(f"flow:{f.resp_ip}", float(f.orig_bytes + f.resp_bytes)), at=act.t
            )
            endpoint = f"{f.resp_ip}:{f.resp_port}"
            self._beacon(run, device_id, act, stats, rarity, endpoint, f.uid, endpoint)
            run.endpoints.contact(f.resp_ip, device_id, act.t)
        h = act.http
        if h is not None and h.internal:
            rarity, stats = http_series(run, device_id, act)
            self._beacon(run, device_id, act, stats, rarity, f"http://{h.host}", act.uid, h.peer)
            run.endpoints.contact(h.resp_ip, device_id, act.t)
        return _NO_OBSERVATIONS

    @staticmethod
    def _beacon(
        run: BatchRun,
        device_id: str,
        act: Act,
        stats: PairStats,
        rarity: Rarity,
        endpoint: str,
        uid: str,
        peer: str,
    ) -> None:
        if flow_beacon(stats, rarity) and stats.due(INTERNAL_BEACON, act.t):
            stats.mark(INTERNAL_BEACON, act.t)
            ref = run.context.ref(device_id, act.ip)
            run.breaches.append(
                beacon_breach(INTERNAL_BEACON, ref, endpoint, stats, rarity, act.t, uid, peer=peer)
            )


def http_series(run: BatchRun, device_id: str, act: Act) -> tuple[Rarity, PairStats]:
    """The request's server's rarity, and the (device, host) series it joins."""
    h = act.http
    assert h is not None
    rarity = run.endpoints.rarity(h.resp_ip, device_id, act.t, run.context.known_devices())
    stats = run.beacons_of(device_id).learn_one(Contact(f"http:{h.host}", float(h.response_bytes)), at=act.t)
    return rarity, stats


class HttpCommandAndControl(Detector):
    """HTTP requests to external hosts: regular ones to a rare host (a beacon), and regular non-browser
    requests fetching binaries (command and control)."""

    models = (HTTP_BEACON, HTTP_C2)
    reads = frozenset({"http"})

    def act(self, run: BatchRun, device_id: str, act: Act) -> Sequence[Observation]:
        h = act.http
        if h is None or h.internal:
            return _NO_OBSERVATIONS
        rarity, stats = http_series(run, device_id, act)
        stats.octet += int(h.octet_stream)
        stats.browser = stats.browser or h.browser
        ref = None
        if flow_beacon(stats, rarity) and stats.due(HTTP_BEACON, act.t):
            stats.mark(HTTP_BEACON, act.t)
            ref = run.context.ref(device_id, act.ip)
            run.breaches.append(
                beacon_breach(
                    HTTP_BEACON, ref, f"http://{h.host}", stats, rarity, act.t, act.uid, peer=h.peer
                )
            )
        if http_c2(stats, rarity) and stats.due(HTTP_C2, act.t):
            stats.mark(HTTP_C2, act.t)
            ref = ref or run.context.ref(device_id, act.ip)
            extra = f", {stats.octet} application/octet-stream responses to user agent {h.user_agent[:60]!r}"
            run.breaches.append(
                beacon_breach(HTTP_C2, ref, f"http://{h.host}", stats, rarity, act.t, act.uid, extra, h.peer)
            )
        return _NO_OBSERVATIONS


class KnownC2(Detector):
    """A C2 framework's default fingerprint: a certificate or a stager breaches at once, profile requests
    from their second check-in (one request alone is something a real site may show)."""

    models = (KNOWN_C2,)
    reads = frozenset({"c2"})

    def act(self, run: BatchRun, device_id: str, act: Act) -> Sequence[Observation]:
        c2 = act.c2
        if c2 is None:
            return _NO_OBSERVATIONS
        server = c2.peer.rpartition(":")[0]
        stats = run.beacons_of(device_id).learn_one(Contact(f"c2:{server}", 0.0), at=act.t)
        if (c2.fingerprint.conclusive or stats.n >= 2) and stats.due(KNOWN_C2, act.t):
            stats.mark(KNOWN_C2, act.t)
            ref = run.context.ref(device_id, act.ip)
            run.breaches.append(known_c2_breach(ref, c2, stats.n, stats.first, act.t, act.uid))
        return _NO_OBSERVATIONS


class ContextDetector(Detector):
    """The context models (master/context.py): a new device, a hostname new for its address or user, SMBv1
    where the network has none, and the models made of other breaches. Hostnames are scored as the batch's
    entities are resolved (DHCP, NTLM, Kerberos names); the rest here."""

    models = (
        NEW_DEVICE,
        NEW_DEVICE_WITH_TOOLS,
        UNUSUAL_HOSTNAME,
        SUSPICIOUS_SMB,
        LARGE_NUMBER_OF_BREACHES,
        MULTIPLE_LATERAL,
    )
    reads = frozenset({"smb"})

    def act(self, run: BatchRun, device_id: str, act: Act) -> Sequence[Observation]:
        if act.smb is not None:
            run.context.smb_dialect(device_id, act.ip, act.smb, act.t, act.uid)
        return _NO_OBSERVATIONS

    def finish(self, run: BatchRun) -> None:
        run.breaches += run.context.finish(run.breaches)


class CountModels(Detector):
    """Every count detector of the catalog over the device's window (its belief, its peer group's, the
    network's), and the joint surprise of several improbable behaviours when none of them breached."""

    models = (*(d.name for d in DETECTORS), SIGNIFICANT_ANOMALY)

    def window(self, run: BatchRun, device_id: str, window: Window) -> None:
        window.dirty = False
        x = window.features()
        model = run.models[device_id]
        for detector in DETECTORS:
            if detector.name in window.breached or not model.may_breach(detector, x):
                continue
            result = model.score_detector(
                detector,
                x,
                window=window.index,
                population=run.population,
                group=run.group_of_device(device_id),
            )
            if not result.breach:
                continue
            window.breached.add(detector.name)
            when = run.breach_time(device_id, window)
            ref = run.context.ref(device_id, run.last_ip[device_id])
            run.breaches.append(count_breach(detector, ref, window, result, run.p.params.window_s, when))
        if not window.breached:
            self._significant_anomaly(run, device_id, window, x)

    @staticmethod
    def _significant_anomaly(run: BatchRun, device_id: str, window: Window, x: dict[str, float]) -> None:
        """Several behaviours each improbable, none a specific model's: the device's joint surprise."""
        model = run.models[device_id]
        unusual = []
        for feature, observed in x.items():
            if observed < SIGNIFICANT_MIN_OBSERVED:
                continue
            fs = model.feature_score(
                feature,
                observed,
                window=window.index,
                population=run.population,
                group=run.group_of_device(device_id),
            )
            if fs.probability < SIGNIFICANT_FEATURE_P:
                unusual.append(fs)
        # One number per family (its most improbable feature): correlated views of one behaviour count once.
        by_family: dict[str, FeatureScore] = {}
        for fs in unusual:
            family = FEATURE_BY_NAME[fs.feature].family or fs.feature
            if family not in by_family or fs.probability < by_family[family].probability:
                by_family[family] = fs
        unusual = sorted(by_family.values(), key=lambda f: f.probability)
        if len(unusual) < SIGNIFICANT_MIN_FEATURES:
            return
        surprise = sum(-math.log10(max(f.probability, 1e-300)) for f in unusual)
        if surprise < SIGNIFICANT_SURPRISE:
            return
        window.breached.add(SIGNIFICANT_ANOMALY)
        score = score_from_surprise(surprise, 10.0**-SIGNIFICANT_SURPRISE)
        when = run.breach_time(device_id, window)
        ref = run.context.ref(device_id, run.last_ip[device_id])
        result = CountScore(
            probability=10.0**-surprise, breach=True, features=tuple(unusual), surprise=surprise, score=score
        )
        spec = CountDetector(
            SIGNIFICANT_ANOMALY, (), tuple(f.feature for f in unusual), ("T1078",), lateral=False
        )
        run.breaches.append(count_breach(spec, ref, window, result, run.p.params.window_s, when))


# The wing, in the order the batch run calls them on each act (the count models' observations first
# reach the window after every act hook has added its own).
WING: tuple[Detector, ...] = (
    ExternalEndpoints(),
    InternalBeacons(),
    HttpCommandAndControl(),
    KnownC2(),
    ContextDetector(),
    CountModels(),
)
ACT_HOOKS = tuple(d for d in WING if type(d).act is not Detector.act)
# The act hooks by what they read, in the wing's order.
HOOKS_BY_PART = {
    part: tuple(d for d in ACT_HOOKS if part in d.reads) for part in ("flow", "http", "c2", "smb", "upload")
}
WINDOW_HOOKS = tuple(d for d in WING if type(d).window is not Detector.window)
FINISH_HOOKS = tuple(d for d in WING if type(d).finish is not Detector.finish)
