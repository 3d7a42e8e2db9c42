"""A capture through the real sensor pipeline, for tests that assert on its records and its counted
parse errors (the corpus' captures are read as Zeek -C reads them: checksums not verified)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sensor.analyzers import default_registry
from sensor.logwriter import pipeline_records
from vigil.config import SensorConfig
from vigil.sensor.v1 import sensor_pb2

ParseErrors = dict[tuple[str, str], float]


def parse_errors(metrics: CollectorRegistry) -> ParseErrors:
    """(protocol, reason) -> count of every parse error the sensor counted (zeros left out)."""
    return {
        (s.labels["protocol"], s.labels["reason"]): s.value
        for m in metrics.collect()
        if m.name == "vigil_sensor_parse_errors"
        for s in m.samples
        if s.name.endswith("_total") and s.value
    }


def capture_records(pcap: Path) -> tuple[list[sensor_pb2.Record], ParseErrors]:
    """The records of ``pcap`` and the parse errors counted on the way; the test is skipped when the
    shared corpus does not hold the capture."""
    if not pcap.exists():
        pytest.skip(f"corpus capture {pcap.name} not found")
    metrics = CollectorRegistry()
    config = SensorConfig(verify_ip_checksums=False, verify_l4_checksums="off")
    records = list(pipeline_records(config, [pcap], default_registry(), errors=[], metrics_registry=metrics))
    return records, parse_errors(metrics)
