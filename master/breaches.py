"""The model catalog's breach messages: a scored window (or a context rule) becomes a ModelBreach that
explains itself in numbers."""

from __future__ import annotations

import hashlib

from google.protobuf.timestamp_pb2 import Timestamp

from master.catalog import (
    CATALOG,
    FEATURE_BY_NAME,
    INTERNAL_DESTINATIONS,
    MAX_EXPLAINED,
    CountDetector,
    severity,
)
from master.features import Window
from master.models.counts import CountScore
from vigil.alert.v1 import alert_pb2


def breach_id(model: str, device_id: str, window: int) -> str:
    """Deterministic: the same device, model and window always give the same id (idempotent downstream)."""
    return "brc-" + hashlib.sha256(f"{model}|{device_id}|{window}".encode()).hexdigest()[:20]


def model_id(model: str) -> str:
    """ "Device / Network Scan" -> "device-network-scan"."""
    return CATALOG[model].model_id


def _p(value: float) -> str:
    return f"{value:.1g}" if value < 0.01 else f"{value:.2f}"


def _n(value: float) -> str:
    if value < 0.1:
        return f"{value:.1g}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def seconds(ts: Timestamp) -> float:
    """Event time of a protobuf Timestamp, as the master counts it (seconds since the epoch)."""
    return float(ts.seconds) + float(ts.nanos) / 1e9


def timestamp(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


def make_breach(
    model: str,
    device: alert_pb2.DeviceRef,
    *,
    key: int,
    score: int,
    when: float,
    window: tuple[float, float],
    explanation: str,
    evidence: list[alert_pb2.Evidence],
    techniques: tuple[str, ...],
    uids: list[str],
    peer: str = "",
) -> alert_pb2.ModelBreach:
    """``peer``: "ip:port" (or "ip") of the one remote endpoint the behaviour is about, if there is one."""
    if model not in CATALOG:
        # Every model is registered once in master.catalog with its response; one that is not is a bug.
        raise ValueError(f"model {model!r} is not in the catalog")
    peer_ip, _, peer_port = peer.rpartition(":") if peer.count(":") == 1 else (peer, "", "")
    return alert_pb2.ModelBreach(
        peer_ip=peer_ip,
        peer_port=int(peer_port) if peer_port.isdigit() else 0,
        breach_id=breach_id(model, device.device_id, key),
        model=model,
        model_id=model_id(model),
        device=device,
        time=timestamp(when),
        score=score,
        severity=severity(score),
        evidence=evidence,
        explanation=explanation,
        mitre_techniques=techniques,
        uids=uids[:20],
        window_start=timestamp(window[0]),
        window_end=timestamp(window[1]),
    )


def _peer(detector: CountDetector, window: Window) -> str:
    """The one remote endpoint behind a breach: the largest contributor to a volume, or the endpoint of a
    set that has exactly one (several endpoints: no single peer to name)."""
    for feature, _ in detector.triggers:
        top = window.top.get(feature)
        if top is None:
            continue
        if feature in window.distinct and len(window.distinct[feature]) != 1:
            continue
        return str(top[1])
    return ""


def count_breach(
    detector: CountDetector,
    device: alert_pb2.DeviceRef,
    window: Window,
    score: CountScore,
    window_s: float,
    event_time: float,
) -> alert_pb2.ModelBreach:
    evidence = []
    parts = []
    uids: list[str] = []
    for fs in score.features[:MAX_EXPLAINED]:
        spec = FEATURE_BY_NAME[fs.feature]
        at_least = "about " if fs.feature in window.sketched else ""
        evidence.append(
            alert_pb2.Evidence(
                feature=fs.feature,
                observed=fs.observed,
                expected=fs.expected,
                probability=fs.probability,
                window_seconds=window_s,
                examples=window.examples.get(fs.feature, []),
            )
        )
        numbers = f"(expected {_n(fs.expected)}, P={_p(fs.probability)})"
        if fs.feature == INTERNAL_DESTINATIONS:
            text = (
                f"contacted {at_least}{fs.observed:.0f} distinct internal hosts in {window_s:.0f} s {numbers}"
            )
        else:
            text = f"{at_least}{fs.observed:.0f} {spec.unit} in {window_s:.0f} s {numbers}"
        examples = window.examples.get(fs.feature)
        if spec.quote_example and examples:
            text += f" (first: {examples[0][:120]})"
        parts.append(text)
        uids += [u for u in window.uids.get(fs.feature, []) if u not in uids]
    start = window.index * window_s
    return make_breach(
        detector.name,
        device,
        key=window.index,
        score=score.score,
        when=event_time,
        window=(start, start + window_s),
        explanation=f"{device.ip}{'' if parts and parts[0].startswith('contacted') else ':'} "
        + "; ".join(parts)
        + f"; score {score.score}",
        evidence=evidence,
        techniques=detector.techniques,
        uids=uids,
        peer=_peer(detector, window),
    )
