"""The fault suite: each process of `vigil up` killed with SIGKILL in the middle of a replay.

`vigil up` replays the shipped lab capture paced at 20x (about 10 s), with small batches so that a kill
lands between many of them. For each of nats-server, Valkey, the sensor, the master and the responder, the
test kills it a few seconds in and asserts what the README documents: `vigil up` says so, brings it back,
finishes with exit 0, and the store's totals (devices, breaches, actions, batches committed) are those of
a clean run; afterwards no process it started is left and no socket or ports file remains. Killing
`vigil up` itself leaves nothing running either. A server that cannot be restarted ends the run with exit 5.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from vigil.exitcodes import Exit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
LAB_CAPTURE = REPO / "tests" / "data" / "lab-scan.pcap"
TOTALS = re.compile(
    r"stopped \((?P<how>[^)]*\)?)\): (?P<devices>\d+) devices, (?P<breaches>\d+) breaches, "
    r"(?P<actions>\d+) actions, (?P<batches>\d+) batches committed"
)
# Where each victim is found among `vigil up`'s children, by its command line.
VICTIMS = {
    "nats-server": "nats-server",
    "valkey-server": "valkey-server",
    "sensor": "vigil.cli sensor",
    "master": "vigil.cli master",
    "responder": "vigil.cli responder",
}


def _up(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vigil.cli",
            "up",
            "--pcap",
            str(LAB_CAPTURE),
            "--exit-when-done",
            "--speed",
            "20",
            "--data-dir",
            str(data_dir),
            "--set",
            "sensor.batch_max_records=20",
            "--set",
            "master.ack_wait_s=3",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of every process whose parent is ``pid``."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[int(entry.name)] = cmdline
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _find(up: subprocess.Popen[str], needle: str, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid, cmd in _children(up.pid).items():
            if needle in cmd:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no child of vigil up runs {needle!r}")


def _finish(up: subprocess.Popen[str], timeout_s: float = 150.0) -> str:
    try:
        out, _ = up.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        out, _ = up.communicate()
        raise AssertionError(f"vigil up did not finish:\n{out}") from None
    return out


def _totals(out: str) -> dict[str, int]:
    found = TOTALS.search(out)
    assert found, out
    return {k: int(v) for k, v in found.groupdict().items() if k != "how"}


def _leftovers(data_dir: Path, seen: set[int]) -> list[str]:
    problems = [f"process {pid} still running" for pid in sorted(seen) if _alive(pid)]
    problems += [f"{p} left behind" for p in data_dir.rglob("*.sock")]
    problems += [f"{p} left behind" for p in (data_dir / "nats" / "ports").glob("*.ports")]
    return problems


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    data = Path(tmp_path_factory.mktemp("clean", numbered=True))
    up = _up(data)
    out = _finish(up)
    assert up.returncode == Exit.OK, out
    totals = _totals(out)
    assert totals["breaches"] >= 5 and totals["actions"] == 1, out
    yield totals


@pytest.mark.parametrize("victim", list(VICTIMS))
def test_sigkill_mid_replay_is_recovered_with_the_clean_runs_counts(
    victim: str, clean: dict[str, int], short_tmp: Path
) -> None:
    up = _up(short_tmp / "up")
    try:
        seen = set()
        pid = _find(up, VICTIMS[victim])
        time.sleep(3.0)  # about a third of the replay
        seen |= set(_children(up.pid))
        assert up.poll() is None, "vigil up ended before the fault"
        os.kill(pid, signal.SIGKILL)
        # The replacement gets its own pid; remember every child seen until the end.
        deadline = time.monotonic() + 150
        while up.poll() is None and time.monotonic() < deadline:
            seen |= set(_children(up.pid))
            time.sleep(0.2)
        out = _finish(up)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    assert up.returncode == Exit.OK, out
    assert re.search(rf"{re.escape(victim)} died \(killed by SIGKILL\)", out), out
    assert "capture fully read" in out
    assert _totals(out) == clean, out
    assert not _leftovers(short_tmp / "up", seen), _leftovers(short_tmp / "up", seen)


def test_killing_vigil_up_itself_leaves_nothing_running(short_tmp: Path) -> None:
    up = _up(short_tmp / "up")
    try:
        _find(up, "vigil.cli sensor")
        time.sleep(1.0)
        children = set(_children(up.pid))
        assert len(children) == 5, children
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in children if _alive(p)], "orphans of a killed vigil up"
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        if up.stdout is not None:
            up.stdout.close()
    # The next run on the same data starts: the lock died with its holder, stale sockets are cleaned.
    again = _up(short_tmp / "up", "--fresh")
    out = _finish(again)
    assert again.returncode == Exit.OK, out


def test_a_server_that_cannot_come_back_ends_the_run_with_exit_5(short_tmp: Path) -> None:
    up = _up(short_tmp / "up")
    holder = socket.socket()
    try:
        pid = _find(up, "nats-server")
        _find(up, "vigil.cli sensor")  # started after the configuration is written
        url = yaml.safe_load((short_tmp / "up" / "config.yaml").read_text())["nats"]["url"]
        port = int(url.rsplit(":", 1)[1])
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        # Another program takes its port meanwhile: every restart fails to listen there.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 5
        while True:
            try:
                holder.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline, "the port never came free"
                time.sleep(0.01)
        holder.listen()
        out = _finish(up, timeout_s=120)
    finally:
        holder.close()
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
    assert up.returncode == Exit.DEPENDENCY, out
    assert "nats-server could not be restarted after 5 attempts" in out, out
    assert not [p for p in _children(up.pid) if _alive(p)]
