"""Each service on its own, as a process: /metrics, /healthz, /readyz, and a clean exit on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from vigil import embedded

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


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
        status, body = _get(http_port, "/metrics")
        assert status == 200
        assert f"vigil_{component}_build_info" in body
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
