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
    assert res["commit"] and res["date"].endswith("Z")
    assert res["machine"]["nproc"] >= 1
    # The table went to stdout and the file is the committed-friendly form (sorted keys, indent 2).
    assert "vigil sensor" in proc.stdout
    assert out.read_text() == json.dumps(res, indent=2, sort_keys=True) + "\n"
