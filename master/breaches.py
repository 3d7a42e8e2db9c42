"""The model catalog's breach messages: a scored window becomes a ModelBreach that explains itself."""

from __future__ import annotations

import hashlib

from google.protobuf.timestamp_pb2 import Timestamp

from master.features import MAX_DESTINATIONS, Window
from master.models.scan import DESTINATIONS, FAILED, NAME, ScanScore
from vigil.alert.v1 import alert_pb2

SCAN_TECHNIQUES = ("T1046",)  # Network Service Discovery


def breach_id(model: str, device_id: str, window: int) -> str:
    """Deterministic: the same device, model and window always give the same id (idempotent downstream)."""
    return "brc-" + hashlib.sha256(f"{model}|{device_id}|{window}".encode()).hexdigest()[:20]


def _p(value: float) -> str:
    return f"{value:.1g}" if value < 0.01 else f"{value:.2f}"


def _n(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def scan_breach(
    device: alert_pb2.DeviceRef, window: Window, score: ScanScore, window_s: float, event_time: float
) -> alert_pb2.ModelBreach:
    dest = score.feature(DESTINATIONS)
    failed = score.feature(FAILED)
    evidence = []
    parts = []
    if dest is not None:
        at_least = "at least " if window.saturated or dest.observed >= MAX_DESTINATIONS else ""
        evidence.append(
            alert_pb2.Evidence(
                feature=DESTINATIONS,
                observed=dest.observed,
                expected=dest.expected,
                probability=dest.probability,
                window_seconds=window_s,
                examples=window.examples,
            )
        )
        parts.append(
            f"{device.ip} contacted {at_least}{dest.observed:.0f} distinct internal hosts "
            f"in {window_s:.0f} s (expected {_n(dest.expected)}, P={_p(dest.probability)})"
        )
    if failed is not None:
        evidence.append(
            alert_pb2.Evidence(
                feature=FAILED,
                observed=failed.observed,
                expected=failed.expected,
                probability=failed.probability,
                window_seconds=window_s,
            )
        )
        parts.append(
            f"{failed.observed:.0f} connections failed "
            f"(expected {_n(failed.expected)}, P={_p(failed.probability)})"
        )
    when = Timestamp()
    when.FromNanoseconds(int(event_time * 1e9))
    return alert_pb2.ModelBreach(
        breach_id=breach_id(NAME, device.device_id, window.index),
        model=NAME,
        device=device,
        time=when,
        score=score.score,
        evidence=evidence,
        explanation=" and ".join(parts) + f"; score {score.score}",
        mitre_techniques=SCAN_TECHNIQUES,
        uids=window.uids,
    )
