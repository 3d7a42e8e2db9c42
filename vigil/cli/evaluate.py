"""``vigil eval DIR``: how well the catalog does on scenarios whose truth is known.

``DIR`` holds captures and one ``NAME.truth.yaml`` per scenario::

    # what happens in the capture
    learn: [baseline.pcap]          # optional: learned first (event time); nothing may fire above quiet_above
    captures: [recon.pcap]          # reported on
    quiet_above: low                # severity above which an unexpected breach is a false positive
    expect:
      - device: 10.231.1.12         # an IP or a MAC address
        models: ["Device / Network Scan", "Device / RDP Scan"]
        start: 2026-11-05T10:00:00Z # optional; default: the captures' first record
        end: 2026-11-05T11:00:00Z   # optional; default: the captures' last record + 10 min
      - device: 172.16.66.1         # a capture from elsewhere: what it shows, described by the models
        any_of: ["Device / Kerberos Password Spray", "Device / SMB Session Brute Force (Admin)"]
        min_severity: medium        # optional; a breach counts at this severity or above (default: any)

``models``: every model listed must breach (one detection each). ``any_of``: one detection, met when any of
the models listed breaches at ``min_severity`` or above; the device is then the actor of the scenario and
none of its breaches is a false positive (an attacker's extra alarms are not mistakes about a benign
device). Each scenario runs on a fresh master (the code ``vigil analyze --learn`` runs). Reported per
scenario and in total:

* recall: expected detections met inside their window / all expected detections;
* precision: breaches that match an expectation / (those + false positives);
* time to detect: first matching breach minus window start, per detection (median and worst);
* false positives: breaches above ``quiet_above`` that match no expectation — during learning or after —
  and the same per device-day and per device-hour (distinct internal originators times the UTC days, or
  hours, they were active).

The exit code is 0 when every expectation is met and there is no false positive, 6 otherwise; 1 when the
directory is missing or holds no truth file, 3 when a truth file is unusable (vigil/exitcodes.py).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

from master.breaches import seconds
from master.catalog import severity
from master.features import Networks, ip_text
from master.offline import OfflineMaster
from sensor.pipeline import tune_gc
from vigil.alert.v1 import alert_pb2
from vigil.cli.offline import CaptureRecords
from vigil.config import VigilConfig
from vigil.exitcodes import Exit
from vigil.sensor.v1 import sensor_pb2

SEVERITIES = ("low", "medium", "high", "critical")
# Default grace after the last record of the captures for a breach to count (windows close late).
DEFAULT_TAIL_S = 600.0


class TruthError(ValueError):
    """A truth file that cannot be used, with the file and the reason."""


@dataclass(frozen=True)
class Expectation:
    device: str
    models: tuple[str, ...]
    start: float | None = None
    end: float | None = None
    # True: one detection met by any of ``models``; the device's breaches are all the scenario's own.
    any_of: bool = False
    min_severity: str = "low"


@dataclass(frozen=True)
class Truth:
    name: str
    learn: tuple[Path, ...]
    captures: tuple[Path, ...]
    quiet_above: str
    expect: tuple[Expectation, ...]


def _time(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise TruthError(f"{where}: not an RFC 3339 time: {value!r}") from exc


def _paths(doc: dict[str, Any], key: str, base: Path, where: str) -> tuple[Path, ...]:
    raw = doc.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise TruthError(f"{where}: {key} must be a list of file names")
    paths = tuple(base / p for p in raw)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise TruthError(f"{where}: {key}: no such file: {', '.join(missing)}")
    return paths


def load_truth(path: Path) -> Truth:
    where = str(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise TruthError(f"{where}: {exc}") from exc
    if not isinstance(doc, dict):
        raise TruthError(f"{where}: expected a mapping")
    unknown = set(doc) - {"learn", "captures", "quiet_above", "expect"}
    if unknown:
        raise TruthError(f"{where}: unknown keys {sorted(unknown)}")
    captures = _paths(doc, "captures", path.parent, where)
    if not captures:
        raise TruthError(f"{where}: captures is empty")
    quiet = str(doc.get("quiet_above", "low"))
    if quiet not in SEVERITIES:
        raise TruthError(f"{where}: quiet_above must be one of {', '.join(SEVERITIES)}")
    expect = []
    for i, item in enumerate(doc.get("expect") or []):
        at = f"{where}: expect[{i}]"
        if (
            not isinstance(item, dict)
            or not item.get("device")
            or not (item.get("models") or item.get("any_of"))
        ):
            raise TruthError(f"{at}: needs device and models (or any_of)")
        if item.get("models") and item.get("any_of"):
            raise TruthError(f"{at}: models and any_of exclude each other")
        models = item.get("models") or item.get("any_of")
        if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
            raise TruthError(f"{at}: models must be a list of model names")
        floor = str(item.get("min_severity", "low"))
        if floor not in SEVERITIES:
            raise TruthError(f"{at}: min_severity must be one of {', '.join(SEVERITIES)}")
        unknown_keys = set(item) - {"device", "models", "any_of", "min_severity", "start", "end"}
        if unknown_keys:
            raise TruthError(f"{at}: unknown keys {sorted(unknown_keys)}")
        expect.append(
            Expectation(
                device=str(item["device"]).lower(),
                models=tuple(models),
                start=_time(item.get("start"), at),
                end=_time(item.get("end"), at),
                any_of=bool(item.get("any_of")),
                min_severity=floor,
            )
        )
    name = path.name.removesuffix(".truth.yaml")
    return Truth(name, _paths(doc, "learn", path.parent, where), captures, quiet, tuple(expect))


@dataclass
class _Activity:
    """Which internal devices originated flows on which UTC days, and the span of event time."""

    internal: Networks
    device_days: set[tuple[str, int]] = field(default_factory=set)
    device_hours: set[tuple[str, int]] = field(default_factory=set)
    first: float | None = None
    last: float | None = None

    def watch(self, records: Iterable[sensor_pb2.Record]) -> Iterator[sensor_pb2.Record]:
        for record in records:
            if record.WhichOneof("kind") == "flow":
                flow = record.flow
                t = seconds(flow.start_time)
                self.first = t if self.first is None else min(self.first, t)
                end = seconds(flow.end_time)
                self.last = end if self.last is None else max(self.last, end)
                ip = ip_text(flow.orig.ip)
                if ip is not None and ip in self.internal:
                    self.device_days.add((ip, int(t // 86400)))
                    self.device_hours.add((ip, int(t // 3600)))
            yield record


@dataclass
class Detection:
    device: str
    model: str
    detected: bool
    time_to_detect_s: float | None


@dataclass
class ScenarioResult:
    name: str
    detections: list[Detection]
    true_positives: int
    false_positives: list[alert_pb2.ModelBreach]
    device_days: int
    breaches: int
    device_hours: int = 0

    @property
    def recall(self) -> float | None:
        return sum(d.detected for d in self.detections) / len(self.detections) if self.detections else None

    @property
    def precision(self) -> float | None:
        flagged = self.true_positives + len(self.false_positives)
        return self.true_positives / flagged if flagged else None

    @property
    def fp_per_device_day(self) -> float:
        return len(self.false_positives) / self.device_days if self.device_days else 0.0

    @property
    def fp_per_device_hour(self) -> float:
        return len(self.false_positives) / self.device_hours if self.device_hours else 0.0


def _matches(breach: alert_pb2.ModelBreach, exp: Expectation, start: float, end: float) -> bool:
    """The breach is one this expectation accounts for (not a false positive)."""
    who = {breach.device.ip.lower(), breach.device.mac.lower()}
    if exp.device not in who or not start <= seconds(breach.time) <= end:
        return False
    return exp.any_of or breach.model in exp.models


def _detects(breach: alert_pb2.ModelBreach, exp: Expectation, model: str) -> bool:
    return breach.model == model and SEVERITIES.index(_severity(breach)) >= SEVERITIES.index(exp.min_severity)


def _severity(breach: alert_pb2.ModelBreach) -> str:
    return breach.severity or severity(breach.score)


def _above(breach: alert_pb2.ModelBreach, quiet: str) -> bool:
    return SEVERITIES.index(_severity(breach)) > SEVERITIES.index(quiet)


@dataclass
class Learned:
    """A master after learning a set of captures, kept so scenarios sharing a baseline learn it once."""

    master: OfflineMaster
    breaches: list[alert_pb2.ModelBreach]
    device_days: set[tuple[str, int]]
    device_hours: set[tuple[str, int]] = field(default_factory=set)


def learn(cfg: VigilConfig, captures: tuple[Path, ...]) -> Learned:
    master = OfflineMaster(cfg.master)
    activity = _Activity(Networks(cfg.master.internal_networks))
    breaches = master.process(activity.watch(CaptureRecords(cfg, captures))).breaches if captures else []
    return Learned(master, breaches, activity.device_days, activity.device_hours)


def run_scenario(cfg: VigilConfig, truth: Truth, learned_from: Learned | None = None) -> ScenarioResult:
    base = learned_from if learned_from is not None else learn(cfg, truth.learn)
    master = base.master.fork()
    learned = base.breaches
    activity = _Activity(
        Networks(cfg.master.internal_networks), set(base.device_days), set(base.device_hours)
    )
    source = CaptureRecords(cfg, truth.captures)
    breaches = master.process(activity.watch(source)).breaches
    first = activity.first or 0.0
    last = (activity.last or first) + DEFAULT_TAIL_S
    detections = []
    matched: set[str] = set()
    for exp in truth.expect:
        start = exp.start if exp.start is not None else first
        end = exp.end if exp.end is not None else last
        mine = [b for b in breaches if _matches(b, exp, start, end)]
        matched.update(b.breach_id for b in mine)
        wanted = [exp.models] if exp.any_of else [(model,) for model in exp.models]
        for models in wanted:
            hits = sorted(seconds(b.time) for b in mine for m in models if _detects(b, exp, m))
            name = " | ".join(models)
            detections.append(Detection(exp.device, name, bool(hits), hits[0] - start if hits else None))
    false_positives = [
        b for b in (*learned, *breaches) if b.breach_id not in matched and _above(b, truth.quiet_above)
    ]
    return ScenarioResult(
        truth.name,
        detections,
        true_positives=len(matched),
        false_positives=false_positives,
        device_days=len(activity.device_days),
        breaches=len(learned) + len(breaches),
        device_hours=len(activity.device_hours),
    )


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def summary(results: list[ScenarioResult]) -> dict[str, Any]:
    detections = [d for r in results for d in r.detections]
    ttd = [d.time_to_detect_s for d in detections if d.time_to_detect_s is not None]
    tp = sum(r.true_positives for r in results)
    fp = sum(len(r.false_positives) for r in results)
    device_days = sum(r.device_days for r in results)
    device_hours = sum(r.device_hours for r in results)
    return {
        "scenarios": [
            {
                "name": r.name,
                "recall": r.recall,
                "precision": r.precision,
                "time_to_detect_s": {f"{d.device} {d.model}": d.time_to_detect_s for d in r.detections},
                "missed": [f"{d.device} {d.model}" for d in r.detections if not d.detected],
                "false_positives": [
                    {"model": b.model, "device": b.device.ip, "score": b.score, "explanation": b.explanation}
                    for b in r.false_positives
                ],
                "device_days": r.device_days,
                "fp_per_device_day": r.fp_per_device_day,
                "device_hours": r.device_hours,
                "fp_per_device_hour": r.fp_per_device_hour,
                "breaches": r.breaches,
            }
            for r in results
        ],
        "recall": sum(d.detected for d in detections) / len(detections) if detections else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "median_time_to_detect_s": statistics.median(ttd) if ttd else None,
        "max_time_to_detect_s": max(ttd) if ttd else None,
        "false_positives": fp,
        "device_days": device_days,
        "fp_per_device_day": fp / device_days if device_days else 0.0,
        "device_hours": device_hours,
        "fp_per_device_hour": fp / device_hours if device_hours else 0.0,
    }


def table(results: list[ScenarioResult], total: dict[str, Any]) -> str:
    columns = (
        ("recall", 7),
        ("precision", 9),
        ("TTD med s", 9),
        ("FP", 4),
        ("dev-days", 8),
        ("FP/dd", 6),
        ("dev-hours", 9),
        ("FP/dh", 6),
    )
    head = f"{'scenario':28} " + " ".join(f"{name:>{width}}" for name, width in columns)
    lines = [head, "-" * len(head)]
    for r in results:
        ttd = [d.time_to_detect_s for d in r.detections if d.time_to_detect_s is not None]
        lines.append(
            f"{r.name:28} {_fmt(r.recall):>7} {_fmt(r.precision):>9} "
            f"{_fmt(statistics.median(ttd) if ttd else None, '{:.0f}'):>9} {len(r.false_positives):>4} "
            f"{r.device_days:>8} {r.fp_per_device_day:>6.3f} {r.device_hours:>9} {r.fp_per_device_hour:>6.3f}"
        )
        for d in r.detections:
            if not d.detected:
                lines.append(f"    missed: {d.device} {d.model}")
        for b in r.false_positives:
            lines.append(f"    false positive: {b.device.ip} {b.model} score {b.score}")
    lines.append("-" * len(head))
    lines.append(
        f"{'total':28} {_fmt(total['recall']):>7} {_fmt(total['precision']):>9} "
        f"{_fmt(total['median_time_to_detect_s'], '{:.0f}'):>9} {total['false_positives']:>4} "
        f"{total['device_days']:>8} {total['fp_per_device_day']:>6.3f} {total['device_hours']:>9} "
        f"{total['fp_per_device_hour']:>6.3f}"
    )
    return "\n".join(lines)


def evaluate_directory(cfg: VigilConfig, directory: Path, as_json: bool, out: TextIO) -> int:
    if not directory.is_dir():
        print(f"vigil eval: no such directory: {directory}", file=sys.stderr)
        return Exit.ENVIRONMENT
    files = sorted(directory.glob("*.truth.yaml"))
    if not files:
        print(f"vigil eval: no *.truth.yaml in {directory}", file=sys.stderr)
        return Exit.ENVIRONMENT
    try:
        truths = [load_truth(f) for f in files]
    except TruthError as exc:
        print(f"vigil eval: {exc}", file=sys.stderr)
        return Exit.INPUT
    tune_gc()
    baselines: dict[tuple[Path, ...], Learned] = {}
    results = []
    for truth in truths:
        if truth.learn not in baselines:
            baselines[truth.learn] = learn(cfg, truth.learn)
        results.append(run_scenario(cfg, truth, baselines[truth.learn]))
    total = summary(results)
    print(json.dumps(total, indent=2, sort_keys=True) if as_json else table(results, total), file=out)
    perfect = total["recall"] in (None, 1.0) and total["false_positives"] == 0
    return Exit.OK if perfect else Exit.EVAL_BELOW_TARGET
