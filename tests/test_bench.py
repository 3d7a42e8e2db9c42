"""Smoke test of ``make bench``: the harness runs end to end and writes every stable key.

No speed is asserted here (speed targets live in the benchmark's results, not in timed tests): only that
each figure that was measured is a positive number and the skipped ones are null.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import STABLE_KEYS
from bench.sensor_speed import AnalyzerClock, default_registry, timed_registry
from sensor.capture import read_capture
from sensor.pipeline import SensorPipeline
from sensor.registry import Registry
from vigil.config import SensorConfig

REPO = Path(__file__).resolve().parent.parent

# Measured in a --quick run that skips tshark, nfstream and the previous commit.
MEASURED = (
    "sensor.vigil_pps",
    "sensor.vigil_flows_only_pps",
    "sensor.vigil_peak_rss_mb",
    "sensor.packets",
    "sensor.capture_bytes",
    "master.records_per_s",
    "master.records_per_s_memory",
    "master.state_bytes_per_device",
    "master.devices",
    "master.ceiling_records_per_s_decode_extract",
    "sensor.ceiling_pps_analyzers_only",
)
SKIPPED = (
    "sensor.tshark_pps",
    "sensor.nfstream_pps",
    "sensor.prev_commit_pps",
    "sensor.ratio_vs_tshark",
    "sensor.ratio_vs_nfstream",
    "sensor.ratio_vs_prev_commit",
    "sensor.tshark_peak_rss_mb",
    "sensor.nfstream_peak_rss_mb",
)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_bench_writes_stable_keys(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--skip", "tshark,nfstream,prev", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(STABLE_KEYS) <= set(res)
    for key in MEASURED:
        value = res[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)
    for key in SKIPPED:
        assert res[key] is None, (key, res[key])
    assert res["sensor.packets"] == 100_000
    # Analyzer code is part of the pass it was timed in, and the ceiling lies above what was reached.
    assert 0 < res["sensor.analyzer_share"] < 1
    assert res["sensor.ceiling_pps_analyzers_only"] > res["sensor.vigil_pps"]
    assert res["commit"] and res["date"].endswith("Z")
    assert res["machine"]["nproc"] >= 1
    # The table went to stdout and the file is the committed-friendly form (sorted keys, indent 2).
    assert "vigil sensor" in proc.stdout
    assert out.read_text() == json.dumps(res, indent=2, sort_keys=True) + "\n"


def _records(capture: Path, registry: Registry) -> list[bytes]:
    pipe = SensorPipeline(SensorConfig(), registry, seed=1)
    out = [r for block in read_capture(capture) for r in pipe.feed(block)] + pipe.flush()
    return [r.SerializeToString(deterministic=True) for r in out]


@pytest.mark.parametrize(
    "name", ["scenarios/internal-recon.pcap", "scenarios/external-c2.pcap", "dtls-openssl.pcap"]
)
def test_timing_the_analyzers_changes_none_of_their_records(name: str) -> None:
    """The analyzer share is measured on the real analyzers: the timing proxies (built through
    Registry.wrapped, which keeps ports, server ports and heuristics) must not change a single record."""
    capture = REPO / "tests" / "data" / name
    clock = AnalyzerClock()
    timed = _records(capture, timed_registry(clock))
    plain = _records(capture, default_registry())
    assert len(plain) >= 3
    assert timed == plain
    assert clock.calls > 0 and clock.ns > 0


def test_timing_keeps_confirmation_and_fallback(corpus: Path) -> None:
    """OpenVPN flows are named only when confirmed, and on 443/tcp only after TLS rejected the payload:
    both read session attributes the timing proxies must pass through."""
    capture = corpus / "ndpi" / "openvpn.pcap"
    timed = _records(capture, timed_registry(AnalyzerClock()))
    assert timed == _records(capture, default_registry())
    assert sum(b"openvpn" in r for r in timed) >= 7
