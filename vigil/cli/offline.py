"""`vigil analyze`: captures -> the sensor pipeline -> the master pipeline, all in event time, in memory.

The same code as the live services, without NATS or Redis: a week of capture replayed here learns the
same baselines the live master would have, and prints the breaches and the actions policy would take.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from google.protobuf.timestamp_pb2 import Timestamp

from master.analyst.incidents import status_name
from master.attack import TACTICS
from master.offline import OfflineMaster, OfflineResult
from master.store import ActionRecord
from responder.client import scope_text
from sensor.analyzers import default_registry
from sensor.capture import CaptureError
from sensor.logwriter import pipeline_records
from sensor.pipeline import SensorPipeline, tune_gc
from sensor.sources.pcap import capture_problems
from vigil.action_kinds import action_kind_name
from vigil.alert.v1 import alert_pb2
from vigil.config import VigilConfig
from vigil.exitcodes import Exit
from vigil.responder.v1 import responder_pb2
from vigil.sensor.v1 import sensor_pb2


def rfc3339(ts: Timestamp) -> str:
    when = datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def action_json(record: ActionRecord) -> dict[str, Any]:
    act = record.action
    return {
        "action_id": act.action_id,
        "kind": action_kind_name(act.kind),
        "target_ip": act.target_ip,
        "scopes": [
            {"peer_ip": s.peer_ip, "port": s.port, "protocol": responder_pb2.IpProtocol.Name(s.protocol)}
            for s in act.scopes
        ],
        "expire_time": rfc3339(act.expire_time),
        "mode": record.mode,
        "state": record.state,
        "reason": act.reason,
    }


def breach_json(breach: alert_pb2.ModelBreach, actions: Sequence[ActionRecord]) -> dict[str, Any]:
    return {
        "model": breach.model,
        "model_id": breach.model_id,
        "time": rfc3339(breach.time),
        "window_start": rfc3339(breach.window_start),
        "window_end": rfc3339(breach.window_end),
        "score": breach.score,
        "severity": breach.severity,
        "device": {
            "id": breach.device.device_id,
            "ip": breach.device.ip,
            "mac": breach.device.mac,
            "hostname": breach.device.hostname,
            "tags": list(breach.device.tags),
        },
        "explanation": breach.explanation,
        "evidence": [
            {
                "feature": e.feature,
                "observed": e.observed,
                "expected": e.expected,
                "probability": e.probability,
                "window_seconds": e.window_seconds,
                "examples": list(e.examples),
            }
            for e in breach.evidence
        ],
        "mitre_techniques": list(breach.mitre_techniques),
        "breach_id": breach.breach_id,
        "uids": list(breach.uids),
        "actions": [action_json(a) for a in actions],
    }


_TACTIC_NAME = {t.uid: t.slug for t in TACTICS}


def device_json(device: alert_pb2.DeviceRef) -> dict[str, Any]:
    return {
        "id": device.device_id,
        "ip": device.ip,
        "mac": device.mac,
        "hostname": device.hostname,
        "tags": list(device.tags),
    }


def incident_json(incident: alert_pb2.Incident) -> dict[str, Any]:
    """An incident as one JSON object (``"kind": "incident"`` tells it from the breach lines)."""
    return {
        "kind": "incident",
        "incident_id": incident.incident_id,
        "status": status_name(incident.status),
        "score": incident.score,
        "start_time": rfc3339(incident.start_time),
        "update_time": rfc3339(incident.update_time),
        "devices": [device_json(d) for d in incident.devices],
        "phases": list(incident.phases),
        "tactics": [{"id": t, "name": _TACTIC_NAME.get(t, "")} for t in incident.tactics],
        "mitre_techniques": list(incident.mitre_techniques),
        "summary": incident.summary,
        "timeline": [
            {
                "time": rfc3339(e.time),
                "device_ip": e.device.ip,
                "model": e.model,
                "score": e.score,
                "phase": e.phase,
                "text": e.text,
                "explanation": e.explanation,
                "breach_id": e.breach_id,
            }
            for e in incident.timeline
        ],
        "breach_ids": list(incident.breach_ids),
        "version": incident.version,
    }


def print_incident(incident: alert_pb2.Incident, out: TextIO) -> None:
    devices = ", ".join(d.ip for d in incident.devices)
    print(
        f"incident {incident.incident_id}  score {incident.score}  {status_name(incident.status)}  "
        f"{rfc3339(incident.start_time)} .. {rfc3339(incident.update_time)}  {devices}",
        file=out,
    )
    tactics = ", ".join(f"{_TACTIC_NAME.get(t, t)} ({t})" for t in incident.tactics)
    print(f"    phases: {' -> '.join(incident.phases) or '-'}", file=out)
    print(f"    ATT&CK: {tactics or '-'}; {', '.join(incident.mitre_techniques) or '-'}", file=out)
    for line in textwrap.wrap(incident.summary, 100):
        print(f"    {line}", file=out)
    print(f"    {len(incident.timeline)} breaches on its timeline", file=out)


class CaptureRecords:
    """Iterates the records of captures in order; remembers capture errors (a truncated file, one with
    nothing decodable) instead of raising them, and goes on with the next file."""

    def __init__(self, cfg: VigilConfig, captures: Sequence[Path]) -> None:
        self.pipeline = SensorPipeline(cfg.sensor, default_registry())
        self.config = cfg.sensor
        self.captures = captures
        self.errors: list[CaptureError] = []

    @property
    def packets(self) -> int:
        return self.pipeline.packets_read

    def __iter__(self) -> Iterator[sensor_pb2.Record]:
        return pipeline_records(self.config, self.captures, errors=self.errors, pipeline=self.pipeline)


def analyze_captures(
    cfg: VigilConfig, captures: Sequence[Path], as_json: bool, out: TextIO, learn: Sequence[Path] = ()
) -> int:
    problems = capture_problems([*learn, *captures])
    if problems:
        for problem in problems:
            print(f"vigil analyze: {problem}", file=sys.stderr)
        return Exit.ENVIRONMENT
    tune_gc()
    master = OfflineMaster(cfg.master)
    learned: OfflineResult | None = None
    if learn:
        baseline = CaptureRecords(cfg, learn)
        learned = master.process(baseline)
        print(
            f"vigil analyze: learned from {baseline.packets} packets, {learned.records} records "
            f"({len(learned.breaches)} breaches while learning, not reported)",
            file=sys.stderr,
        )
        if baseline.errors:
            for exc in baseline.errors:
                print(f"vigil analyze: baseline {exc.path}: {exc.reason}", file=sys.stderr)
            return Exit.INPUT
    source = CaptureRecords(cfg, captures)
    result = master.process(source)
    by_breach: dict[str, list[ActionRecord]] = {}
    for action in result.actions:
        by_breach.setdefault(action.action.breach_id, []).append(action)
    for breach in sorted(result.breaches, key=lambda b: (b.time.seconds, b.time.nanos)):
        actions = by_breach.get(breach.breach_id, [])
        if as_json:
            print(json.dumps(breach_json(breach, actions), sort_keys=True), file=out)
            continue
        dev = breach.device
        who = " ".join(x for x in (dev.ip, dev.mac, dev.hostname) if x)
        print(f"{rfc3339(breach.time)}  {breach.model}  score {breach.score}  {who}", file=out)
        print(f"    {breach.explanation}", file=out)
        for act in actions:
            a = action_json(act)
            print(
                f"    action ({a['mode']}): {a['kind']} {a['target_ip']}{scope_text(act.action.scopes)} "
                f"until {a['expire_time']}",
                file=out,
            )
    reported = {b.breach_id for b in result.breaches}
    incidents = [i for i in master.incidents() if reported.intersection(i.breach_ids)]
    for incident in incidents:
        if as_json:
            print(json.dumps(incident_json(incident), sort_keys=True), file=out)
        else:
            print_incident(incident, out)
    summary = (
        f"vigil analyze: {source.packets} packets, {result.records} records, "
        f"{len(result.breaches)} breaches, {len(incidents)} incidents, {len(result.actions)} actions"
    )
    print(summary, file=sys.stderr)
    for what, outcome in (("baseline", learned), ("captures", result)):
        if outcome is not None and outcome.rejected:
            reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(outcome.rejected.items()))
            print(
                f"vigil analyze: {sum(outcome.rejected.values())} records of the {what} turned away at the "
                f"master's door ({reasons}); see master/door.py",
                file=sys.stderr,
            )
    if source.errors:
        for exc in source.errors:
            print(
                f"vigil analyze: {exc.path}: {exc.reason} (results above cover what could be read)",
                file=sys.stderr,
            )
        return Exit.INPUT
    return Exit.OK
