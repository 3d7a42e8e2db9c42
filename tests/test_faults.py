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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.allinone import alive, children, find_child, finish, kill_group, start_up, totals
from vigil.exitcodes import Exit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
# Where each victim is found among `vigil up`'s children, by its command line.
VICTIMS = {
    "nats-server": "nats-server",
    "valkey-server": "valkey-server",
    "sensor": "vigil.cli sensor",
    "master": "vigil.cli master",
    "responder": "vigil.cli responder",
}


def _up(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """A replay paced at 20x (about 10 s) in batches of 20 records, redelivery after 3 s."""
    return start_up(
        data_dir,
        "--exit-when-done",
        "--speed",
        "20",
        "--set",
        "sensor.batch_max_records=20",
        "--set",
        "master.ack_wait_s=3",
        *extra,
    )


def _leftovers(data_dir: Path, seen: set[int]) -> list[str]:
    problems = [f"process {pid} still running" for pid in sorted(seen) if alive(pid)]
    problems += [f"{p} left behind" for p in data_dir.rglob("*.sock")]
    problems += [f"{p} left behind" for p in (data_dir / "nats" / "ports").glob("*.ports")]
    return problems


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    data = Path(tmp_path_factory.mktemp("clean", numbered=True))
    up = _up(data)
    out = finish(up)
    assert up.returncode == Exit.OK, out
    found = totals(out)
    assert found["breaches"] >= 5 and found["actions"] == 1, out
    yield found


@pytest.mark.parametrize("victim", list(VICTIMS))
def test_sigkill_mid_replay_is_recovered_with_the_clean_runs_counts(
    victim: str, clean: dict[str, int], short_tmp: Path
) -> None:
    up = _up(short_tmp / "up")
    try:
        seen = set()
        pid = find_child(up, VICTIMS[victim])
        time.sleep(3.0)  # about a third of the replay
        seen |= set(children(up.pid))
        assert up.poll() is None, "vigil up ended before the fault"
        os.kill(pid, signal.SIGKILL)
        # The replacement gets its own pid; remember every child seen until the end.
        deadline = time.monotonic() + 150
        while up.poll() is None and time.monotonic() < deadline:
            seen |= set(children(up.pid))
            time.sleep(0.2)
        out = finish(up)
    finally:
        kill_group(up)
    assert up.returncode == Exit.OK, out
    assert re.search(rf"{re.escape(victim)} died \(killed by SIGKILL\)", out), out
    assert "capture fully read" in out
    assert totals(out) == clean, out
    assert not _leftovers(short_tmp / "up", seen), _leftovers(short_tmp / "up", seen)


def test_killing_vigil_up_itself_leaves_nothing_running(short_tmp: Path) -> None:
    up = _up(short_tmp / "up")
    try:
        find_child(up, "vigil.cli sensor")
        time.sleep(1.0)
        started = set(children(up.pid))
        assert len(started) == 6, started  # nats-server, valkey, sensor, master, responder, console
        os.kill(up.pid, signal.SIGKILL)
        up.wait(timeout=10)
        deadline = time.monotonic() + 20
        while any(alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in started if alive(p)], "orphans of a killed vigil up"
    finally:
        kill_group(up)
        if up.stdout is not None:
            up.stdout.close()
    # The next run on the same data starts: the lock died with its holder, stale sockets are cleaned.
    again = _up(short_tmp / "up", "--fresh")
    out = finish(again)
    assert again.returncode == Exit.OK, out


def test_a_server_that_cannot_come_back_ends_the_run_with_exit_5(short_tmp: Path) -> None:
    up = _up(short_tmp / "up")
    holder = socket.socket()
    try:
        pid = find_child(up, "nats-server")
        find_child(up, "vigil.cli sensor")  # started after the configuration is written
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
        out = finish(up, timeout_s=120)
    finally:
        holder.close()
        kill_group(up)
    assert up.returncode == Exit.DEPENDENCY, out
    assert "nats-server could not be restarted after 5 attempts" in out, out
    assert not [p for p in children(up.pid) if alive(p)]
