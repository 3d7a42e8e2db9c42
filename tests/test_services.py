"""Each service on its own, as a process: /metrics, /healthz, /readyz, and a clean exit on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from vigil import embedded

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str, accept: str | None = None) -> tuple[int, str]:
    return _fetch(port, path, accept)[::2]


def _fetch(port: int, path: str, accept: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if accept is not None:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


# Series each service must show from its start, at zero, so dashboards and alerts see them before the
# first event (label values known up front), and the gauges that say how far behind the master is.
_UP_FRONT = {
    "master": (
        'vigil_master_breaches_total{model_id="device-network-scan",severity="critical"} 0.0',
        'vigil_master_breaches_total{model_id="compromise-known-c2-framework-traffic",severity="low"} 0.0',
        'vigil_master_actions_total{kind="block_connection",mode="confirm"} 0.0',
        'vigil_master_actions_total{kind="block_all_outgoing",mode="autonomous"} 0.0',
        'vigil_master_actions_skipped_total{reason="rate_limited"} 0.0',
        'vigil_master_action_deliveries_total{outcome="applied"} 0.0',
        "vigil_master_fetch_errors_total 0.0",
        "vigil_master_consumer_pending_messages 0.0",
        "vigil_master_consumer_ack_pending_messages 0.0",
        "vigil_master_event_time_lag_seconds NaN",
    ),
    "responder": (
        'vigil_responder_actions_applied_total{kind="block_port"} 0.0',
        'vigil_responder_actions_refused_total{reason="protected"} 0.0',
    ),
    "sensor": (
        'vigil_sensor_dropped_records_total{reason="spool_full"} 0.0',
        'vigil_sensor_decapsulated_packets_total{tunnel="geneve"} 0.0',
        'vigil_sensor_ip_fragments_total{outcome="overlap"} 0.0',
    ),
}


def _check_exposition(port: int, component: str) -> None:
    """/metrics as Prometheus scrapes it: valid for promtool, no *_created series, process metrics, the
    series known up front; and OpenMetrics when the scraper asks for it."""
    status, content_type, body = _fetch(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4"), content_type
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/install.sh installs Debian's prometheus package"
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body.encode(), capture_output=True, timeout=30
    )
    assert check.returncode == 0 and not check.stdout and not check.stderr, check.stdout + check.stderr
    assert f"vigil_{component}_build_info" in body
    assert "_created" not in body
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_info",
    ):
        assert f"\n{name}" in body, name
    lines = set(body.splitlines())
    missing = [series for series in _UP_FRONT[component] if series not in lines]
    assert not missing, missing
    status, content_type, body = _fetch(
        port, "/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200 and content_type.startswith("application/openmetrics-text; version=1.0.0"), (
        content_type
    )
    assert body.endswith("# EOF\n") and "_created" not in body
    families = {family.name for family in text_string_to_metric_families(body)}  # type: ignore[no-untyped-call]
    assert f"vigil_{component}_build_info" in families and "process_cpu_seconds" in families


def _wait_ready(proc: subprocess.Popen[bytes], port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "service exited early"
        try:
            if _get(port, "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("service never became ready")


@pytest.mark.parametrize("component", ["responder", "master", "sensor"])
def test_service_endpoints_and_sigterm(
    component: str, nats_server: embedded.EmbeddedNats, redis_server: embedded.EmbeddedRedis, short_tmp: Path
) -> None:
    http_port = _free_port()
    args = [
        sys.executable,
        "-m",
        "vigil.cli",
        "--set",
        f"nats.url={nats_server.url}",
        "--set",
        f"redis.url={redis_server.url}",
        "--set",
        f"{component}.http.port={http_port}",
        "--set",
        f"responder.listen=127.0.0.1:{_free_port()}",
        "--set",
        f"sensor.spool_dir={short_tmp / 'spool'}",
        "--set",
        "sensor.source=tap",
        "--set",
        "sensor.interface=lo",
        component,
    ]
    if component == "sensor" and os.geteuid() != 0:
        pytest.skip("live capture on lo needs root")
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, http_port)
        _check_exposition(http_port, component)
        assert _get(http_port, "/healthz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = proc.stdout.read().decode() if proc.stdout else ""
    assert code == 0, out
    assert "shutdown_requested" in out and '"stopped"' in out, out
