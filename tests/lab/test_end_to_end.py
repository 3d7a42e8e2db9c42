"""End to end on real components: live capture in a gateway, detection, an nftables block, its expiry.

An office LAN (ws1, ws2, attacker) talks to a server LAN (victim, web) through a gateway namespace.
`vigil up` runs inside the gateway: embedded nats-server and Valkey, the sensor capturing live on the
LAN bridge, the master, and the responder with the nftables backend. After a benign baseline the attacker
scans the server LAN with nmap. The test proves the master noticed, the responder installed a block in the
gateway, the attacker's next connections fail while the other hosts still connect, and that the block
lifts itself when it expires.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.lab.netns import Host, Lab, http_server, lab, tcp_listener, unavailable_reason
from tests.lab.traffic import benign, nmap_scan

pytestmark = [pytest.mark.lab, pytest.mark.slow]

BLOCK_S = 25
WINDOW_S = 5


@pytest.fixture(autouse=True)
def _need_lab() -> None:
    if reason := unavailable_reason(("nft", "nmap", "curl")):
        pytest.skip(reason)


def _check_blocked(built: Lab, attacker: Host, victim: Host, web: Host, ws1: Host) -> None:
    """The attacker's next connections fail; the other office hosts are untouched."""
    table = built.gateway_run("nft", "list", "ruleset").stdout
    assert attacker.ip in table, table
    assert not attacker.can_connect(victim.ip, 22)
    assert not attacker.can_connect(victim.ip, 445)
    assert ws1.can_connect(victim.ip, 22)
    assert ws1.can_connect(web.ip, 80)
    assert built.hosts["ws2"].can_connect(victim.ip, 445)


def _wait_for_line(log: Path, pattern: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if regex.search(line):
                return line
        time.sleep(0.2)
    raise AssertionError(f"no line matching {pattern!r} within {timeout_s}s; output:\n{log.read_text()}")


def test_scan_is_detected_blocked_and_block_expires(short_tmp: Path) -> None:
    with lab(["ws1", "ws2", "attacker"], ["victim", "web"]) as built:
        ws1, attacker = built.hosts["ws1"], built.hosts["attacker"]
        victim, web = built.hosts["victim"], built.hosts["web"]
        http_server(web, 80)
        for port in (22, 80, 445):
            tcp_listener(victim, port)
        built.wait_reachable("ws1", web.ip, 80)
        built.wait_reachable("attacker", victim.ip, 445)

        out = short_tmp / "up.out"
        settings = {
            "master.window_s": WINDOW_S,
            "master.block_duration_s": BLOCK_S,
            "master.internal_networks": "[10.231.0.0/16]",
            "master.protected.networks": f"[{web.ip}/32]",
            "responder.protected.networks": f"[{web.ip}/32]",
            "sensor.idle_timeout_tcp_s": 5,
            "sensor.batch_max_delay_s": 0.2,
            "responder.reconcile_interval_s": 1,
        }
        args = [sys.executable, "-m", "vigil.cli"]
        for key, value in settings.items():
            args += ["--set", f"{key}={value}"]
        args += ["up", "--interface", "br-a", "--backend", "nftables", "--data-dir", str(short_tmp / "up")]
        with open(out, "wb") as fh:
            up = built.gateway_spawn(*args, stdout=fh, stderr=subprocess.STDOUT, cwd=os.getcwd())
        try:
            _wait_for_line(out, r"sensor reading", 30)
            # Benign baseline: several windows of ordinary requests from every office host.
            benign(
                built,
                ["ws1", "ws2", "attacker"],
                [(web.ip, 80), (victim.ip, 445)],
                duration_s=WINDOW_S * 5,
                interval_s=1.0,
            )
            assert attacker.can_connect(victim.ip, 22), "before the scan the attacker reaches the victim"

            # The scan runs in the background: the block lands while it is still going on (nmap waits out
            # its timeouts on the probes the block drops), and must be checked before it expires.
            with ThreadPoolExecutor(max_workers=1) as pool:
                scanning = pool.submit(
                    nmap_scan, attacker, [victim.ip, f"{web.ip[:-3]}.30-60"], ports="1-200", timeout_s=30
                )
                breach = _wait_for_line(out, r"breach\s+10\.231\.1\.\d+\s+Device / Network Scan", 60)
                assert attacker.ip in breach
                action = _wait_for_line(out, rf"action\s+{re.escape(attacker.ip)}\s.*active via nftables", 60)
                assert "block" in action
                blocked_at = time.monotonic()
                _check_blocked(built, attacker, victim, web, ws1)
                scan = scanning.result(timeout=120)
            assert "Nmap done" in scan.stdout, scan.stdout + scan.stderr

            # The block lifts itself at expiry (kernel set-element timeout), with no one revoking it.
            deadline = blocked_at + BLOCK_S + 30
            while not attacker.can_connect(victim.ip, 22):
                assert time.monotonic() < deadline, "block did not lift after its expiry"
                time.sleep(1.0)
            assert time.monotonic() - blocked_at >= BLOCK_S - 6, "block lifted long before its expiry"
        finally:
            if up.poll() is None:
                os.killpg(up.pid, signal.SIGTERM)
                try:
                    up.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(up.pid, signal.SIGKILL)
                    up.wait(timeout=10)
