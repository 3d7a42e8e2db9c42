"""`vigil up` as an operator meets it: one run per data directory, bounded shutdown, stale files from a
killed run, and what a second run on the same data shows."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.allinone import LAB_CAPTURE, alive, children, find_child, finish, kill_group, start_up
from tests.conftest import REPO
from vigil import config
from vigil.cli.up import AllInOne, DataDir, LiveView, Service
from vigil.exitcodes import Exit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
SCANNER = "10.231.1.12"


def test_one_run_per_data_directory_and_sigterm_ends_it_in_bounded_time(short_tmp: Path) -> None:
    first = start_up(short_tmp / "up", "--speed", "2")  # a replay of about 95 s: still going when stopped
    try:
        find_child(first, "vigil.cli sensor")
        started_children = set(children(first.pid))
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "vigil.cli",
                "up",
                "--pcap",
                str(LAB_CAPTURE),
                "--data-dir",
                str(short_tmp / "up"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert second.returncode == Exit.ENVIRONMENT, second.stdout + second.stderr
        assert f"is in use by another `vigil up` (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the refused run touched nothing of the first"
        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        out = finish(first, timeout_s=60)
        took = time.monotonic() - started
    finally:
        kill_group(first)
    assert first.returncode == Exit.OK, out
    # The sensor's drain (10 s) + the services' deadline (10 s) + the servers' (5 s) bound it; it is quick.
    assert took < 30, f"SIGTERM took {took:.1f} s"
    assert "stopped (done)" in out
    assert not [p for p in started_children if alive(p)]
    assert not list((short_tmp / "up").rglob("*.sock"))


def test_stale_files_of_a_killed_run_are_cleaned(short_tmp: Path) -> None:
    data = short_tmp / "up"
    (data / "redis").mkdir(parents=True)
    (data / "nats" / "ports").mkdir(parents=True)
    # What SIGKILL leaves: a socket nobody listens on, a ports file of a dead server, a lock file.
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(data / "redis" / "valkey.sock"))
    stale.close()
    (data / "nats" / "ports" / "nats-server_999999.ports").write_text('{"nats": ["nats://127.0.0.1:1"]}')
    (data / "vigil-up.lock").write_text("999999\n")
    up = start_up(data, "--exit-when-done")
    out = finish(up, timeout_s=120)
    assert up.returncode == Exit.OK, out
    assert re.search(rf"breach\s+{re.escape(SCANNER)}\s+Device / Network Scan", out), out
    assert not list((data / "nats" / "ports").glob("*.ports"))
    # The sensor's Zeek logs, where `vigil up` said they go: rotated when the sensor stopped.
    zeek = data.resolve() / "zeek-logs"
    assert f"zeek logs {zeek} (json, rotated every 1 h or at 100 MiB" in out, out
    conns = [json.loads(line) for p in zeek.glob("conn.*.log") for line in p.read_text().splitlines()]
    # The scanner's 440 probed services (host, port), as `vigil sensor read` finds them in the capture.
    assert len({(c["id.resp_h"], c["id.resp_p"]) for c in conns if c["id.orig_h"] == SCANNER}) == 440


def test_a_second_run_says_what_it_continues_from_and_fresh_starts_over(short_tmp: Path) -> None:
    data = short_tmp / "up"
    # What `make demo` shows: devices, the breach with its numbers, the action, on real servers.
    first = finish(start_up(data, "--exit-when-done"))
    assert re.search(rf"device\s+{re.escape(SCANNER)}\s+new device", first), first
    assert re.search(rf"breach\s+{re.escape(SCANNER)}\s+Device / Network Scan\s+score \d+", first), first
    assert re.search(
        rf"action\s+{re.escape(SCANNER)}\s+block_connection \[10\.0\.0\.0/8:\*.*active via dryrun", first
    ), first
    assert re.search(r"stopped \(done\): \d+ devices, \d+ breaches, 1 actions", first), first
    again = start_up(data, "--exit-when-done")
    second = finish(again)
    assert again.returncode == Exit.OK, second
    assert "continuing from the state in" in second and "--fresh" in second, second
    assert "new device" not in second, "the devices were learned by the first run"
    lines = re.findall(
        r"(\d+) devices, (\d+) breaches, (\d+) actions, (\d+) batches committed", first + second
    )
    assert len(lines) == 3 and len(set(lines)) == 1, "the same capture again adds nothing"
    fresh = start_up(data, "--exit-when-done", "--fresh")
    third = finish(fresh)
    assert fresh.returncode == Exit.OK, third
    assert "--fresh: forgot what earlier runs" in third
    assert re.search(rf"device\s+{re.escape(SCANNER)}\s+new device", third), third
    assert re.search(rf"breach\s+{re.escape(SCANNER)}\s+Device / Network Scan", third), third


def test_what_a_sensor_exit_means_to_vigil_up(tmp_path: Path) -> None:
    """The sensor's exit code decides: input read (wait for the master), damaged input or telemetry left in
    the spool (said, and the run's exit code), the operator's problem (end now), anything else (restart)."""
    cfg = config.build({"sensor": {"pcap_files": [str(LAB_CAPTURE)]}}, environ={})
    out = io.StringIO()
    run = AllInOne(cfg, DataDir(tmp_path), LiveView(out), exit_when_done=True)
    done = subprocess.Popen(["true"])
    done.wait()
    for code, verdict, finished, said in [
        (Exit.OK, None, Exit.OK, "capture fully read"),
        (Exit.INPUT, None, Exit.INPUT, "could not be read entirely"),
        (Exit.UNDELIVERED, None, Exit.UNDELIVERED, "telemetry undelivered; it is kept in"),
        (Exit.ENVIRONMENT, Exit.ENVIRONMENT, None, "sensor cannot run"),
        (-9, None, None, ""),
    ]:
        service = Service("sensor", done)
        assert run._on_exit(service, code) == verdict, code
        assert service.finished == finished, code
        assert said in out.getvalue(), code


LISTENING = re.compile(r"listening  (?P<what>.+?)\s{2,}(?P<where>\S+)$")


def _http_status(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as resp:
        return int(resp.status)


def _answers(what: str, where: str) -> bool:
    """Whether what `vigil up` printed really listens there, asked in its own protocol."""
    import urllib.parse

    try:
        if what == "console HTTP API":  # its OpenAPI document, served to anyone
            return _http_status(where) == 200
        if where.startswith("http://"):
            url = where if what == "nats monitoring" else where.removesuffix("/metrics") + "/healthz"
            return _http_status(url) == 200
        parsed = urllib.parse.urlparse(where)
        if parsed.scheme == "unix":  # valkey: PING on its socket
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(parsed.path)
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        with socket.create_connection((parsed.hostname or "", parsed.port or 0), timeout=2) as s:
            if parsed.scheme == "nats":  # the server greets every client with INFO
                s.settimeout(2)
                return s.recv(5) == b"INFO "
            return True  # gRPC: the responder (or the console) accepts the connection
    except OSError:
        return False


def test_up_prints_where_every_endpoint_listens_and_each_answers_there(short_tmp: Path) -> None:
    up = start_up(short_tmp / "up", "--speed", "2")
    printed: dict[str, str] = {}
    try:
        assert up.stdout is not None
        deadline = time.monotonic() + 60
        while "console HTTP API" not in printed and time.monotonic() < deadline:
            line = up.stdout.readline()
            if not line:
                break
            found = LISTENING.search(line.rstrip("\n"))
            if found:
                printed[found["what"]] = found["where"]
        assert set(printed) == {
            "nats",
            "nats monitoring",
            "valkey",
            "sensor metrics",
            "master metrics",
            "responder metrics",
            "console metrics",
            "responder gRPC",
            "console gRPC",
            "console HTTP API",
        }, printed
        # The services start after the lines are printed: each answers within a bounded wait.
        waiting = dict(printed)
        deadline = time.monotonic() + 30
        while waiting and time.monotonic() < deadline:
            waiting = {what: where for what, where in waiting.items() if not _answers(what, where)}
            time.sleep(0.2)
        assert not waiting, f"printed but not answering: {waiting}"
        up.send_signal(signal.SIGTERM)
        finish(up, timeout_s=60)
    finally:
        kill_group(up)
    assert up.returncode == Exit.OK
