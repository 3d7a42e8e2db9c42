"""A model breach as an OCSF Detection Finding (class 2004, category Findings), one JSON object per breach.

Field names, enums and types follow the OCSF schema version in ``OCSF_VERSION`` exactly: timestamps are
milliseconds since the epoch, ``type_uid`` is ``class_uid * 100 + activity_id``, ATT&CK goes into
``finding_info.attacks`` (the class's own ``attacks`` belongs to the security_control profile, which a
detector that does not itself block is not). Tests validate every finding against the JSON Schema of the
class generated from the published schema.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from master.attack import ATTACK_VERSION, TACTIC_BY_ID, technique
from master.breaches import seconds
from vigil import __version__
from vigil.alert.v1 import alert_pb2

OCSF_VERSION = "1.5.0"
CLASS_UID = 2004
CATEGORY_UID = 2
ACTIVITY_CREATE = 1
TYPE_UID = CLASS_UID * 100 + ACTIVITY_CREATE

# The catalog's severity bands to OCSF severity_id (2 Low, 3 Medium, 4 High, 5 Critical).
SEVERITY_IDS = {"low": 2, "medium": 3, "high": 4, "critical": 5}
SEVERITY_NAMES = {2: "Low", 3: "Medium", 4: "High", 5: "Critical", 0: "Unknown"}
# analytic.type_id 3: Statistical (a posterior predictive probability is what decides).
ANALYTIC_STATISTICAL = 3
# observable.type_id: 1 Hostname, 2 IP Address, 3 MAC Address.
_OBSERVABLE_HOSTNAME, _OBSERVABLE_IP, _OBSERVABLE_MAC = 1, 2, 3


def _ms(ts: Any) -> int:
    return round(seconds(ts) * 1000)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _device(ref: alert_pb2.DeviceRef) -> dict[str, Any]:
    device: dict[str, Any] = {"type_id": 0, "type": "Unknown", "uid": ref.device_id or "unknown"}
    if _is_ip(ref.ip):
        device["ip"] = ref.ip
    if ref.mac:
        device["mac"] = ref.mac
    if ref.hostname:
        device["hostname"] = ref.hostname
    vendor = next((t.split(":", 1)[1] for t in ref.tags if t.startswith("vendor:")), "")
    if vendor:
        device["vendor_name"] = vendor
    return device


def _endpoint(ref: alert_pb2.DeviceRef) -> dict[str, Any]:
    endpoint: dict[str, Any] = {"uid": ref.device_id or "unknown"}
    if _is_ip(ref.ip):
        endpoint["ip"] = ref.ip
    if ref.mac:
        endpoint["mac"] = ref.mac
    if ref.hostname:
        endpoint["hostname"] = ref.hostname
    return endpoint


def attacks(technique_ids: list[str] | tuple[str, ...]) -> list[dict[str, Any]]:
    """One OCSF ``attack`` per technique and tactic; a sub-technique names its parent as the technique."""
    out: list[dict[str, Any]] = []
    for uid in technique_ids:
        tech = technique(uid)
        entry: dict[str, Any] = {"version": ATTACK_VERSION}
        if tech.parent != tech.uid:
            entry["technique"] = {"uid": tech.parent, "name": technique(tech.parent).name}
            entry["sub_technique"] = {"uid": tech.uid, "name": tech.name}
        else:
            entry["technique"] = {"uid": tech.uid, "name": tech.name}
        for tactic in tech.tactics or ("",):
            item = dict(entry)
            if tactic:
                item["tactic"] = {"uid": tactic, "name": TACTIC_BY_ID[tactic].name}
            out.append(item)
    return out


def _evidences(breach: alert_pb2.ModelBreach) -> list[dict[str, Any]]:
    src = _endpoint(breach.device)
    dst: dict[str, Any] | None = None
    if _is_ip(breach.peer_ip):
        dst = {"ip": breach.peer_ip}
        if breach.peer_port:
            dst["port"] = breach.peer_port
    out = []
    for ev in breach.evidence:
        item: dict[str, Any] = {
            "name": ev.feature,
            "src_endpoint": src,
            "data": {
                "feature": ev.feature,
                "observed": ev.observed,
                "expected": ev.expected,
                "probability": ev.probability,
                "window_seconds": ev.window_seconds,
                "examples": list(ev.examples),
            },
        }
        if dst is not None:
            item["dst_endpoint"] = dst
        out.append(item)
    if not out:
        # A context rule (a new device, a hostname) carries no numbers: the device is the evidence.
        out.append({"src_endpoint": src, **({"dst_endpoint": dst} if dst else {})})
    return out


def _observables(breach: alert_pb2.ModelBreach) -> list[dict[str, Any]]:
    out = []
    if _is_ip(breach.device.ip):
        out.append(
            {"name": "device.ip", "type_id": _OBSERVABLE_IP, "type": "IP Address", "value": breach.device.ip}
        )
    if breach.device.mac:
        out.append(
            {
                "name": "device.mac",
                "type_id": _OBSERVABLE_MAC,
                "type": "MAC Address",
                "value": breach.device.mac,
            }
        )
    if breach.device.hostname:
        out.append(
            {
                "name": "device.hostname",
                "type_id": _OBSERVABLE_HOSTNAME,
                "type": "Hostname",
                "value": breach.device.hostname,
            }
        )
    if _is_ip(breach.peer_ip):
        out.append(
            {
                "name": "evidences.dst_endpoint.ip",
                "type_id": _OBSERVABLE_IP,
                "type": "IP Address",
                "value": breach.peer_ip,
            }
        )
    return out


def detection_finding(breach: alert_pb2.ModelBreach) -> dict[str, Any]:
    """The OCSF Detection Finding (activity Create, status New) that reports ``breach``."""
    severity_id = SEVERITY_IDS.get(breach.severity, 0)
    finding_info: dict[str, Any] = {
        "uid": breach.breach_id,
        "title": breach.model,
        "desc": breach.explanation,
        "types": [breach.model.split(" / ", 1)[0]],
        "analytic": {
            "uid": breach.model_id,
            "name": breach.model,
            "type_id": ANALYTIC_STATISTICAL,
            "type": "Statistical",
        },
        "attacks": attacks(list(breach.mitre_techniques)),
        "created_time": _ms(breach.time),
    }
    if breach.HasField("window_start"):
        finding_info["first_seen_time"] = _ms(breach.window_start)
    if breach.HasField("window_end"):
        finding_info["last_seen_time"] = _ms(breach.window_end)
    if breach.uids:
        finding_info["related_events"] = [{"uid": uid} for uid in breach.uids]
    finding: dict[str, Any] = {
        "activity_id": ACTIVITY_CREATE,
        "activity_name": "Create",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": TYPE_UID,
        "type_name": "Detection Finding: Create",
        "time": _ms(breach.time),
        "severity_id": severity_id,
        "severity": SEVERITY_NAMES[severity_id],
        "risk_score": int(breach.score),
        "status_id": 1,
        "status": "New",
        "is_alert": True,
        "message": breach.explanation,
        "metadata": {
            "version": OCSF_VERSION,
            "uid": breach.breach_id,
            "log_name": "vigil.alert.v1.ModelBreach",
            "product": {"name": "Vigil", "vendor_name": "Vigil", "version": __version__},
        },
        "finding_info": finding_info,
        "device": _device(breach.device),
        "evidences": _evidences(breach),
    }
    observables = _observables(breach)
    if observables:
        finding["observables"] = observables
    return finding
