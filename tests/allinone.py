"""`vigil up` as a child process of a test: start it, find its children, wait for it, read its totals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

LAB_CAPTURE = REPO / "tests" / "data" / "lab-scan.pcap"
TOTALS = re.compile(
    r"stopped \((?P<how>[^)]*\)?)\): (?P<devices>\d+) devices, (?P<breaches>\d+) breaches, "
    r"(?P<actions>\d+) actions, (?P<batches>\d+) batches committed"
)


def start_up(data_dir: Path, *args: str, capture: Path = LAB_CAPTURE) -> subprocess.Popen[str]:
    """`vigil up --pcap CAPTURE --data-dir DATA_DIR ARGS...` in a session of its own (so a test can kill
    the whole group if it must), its console captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "up", "--pcap", str(capture), "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )


def children(pid: int) -> dict[int, str]:
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


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def find_child(up: subprocess.Popen[str], needle: str, timeout_s: float = 20.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for pid, cmd in children(up.pid).items():
            if needle in cmd:
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no child of vigil up runs {needle!r}")


def finish(up: subprocess.Popen[str], timeout_s: float = 150.0) -> str:
    """Its console once it has exited (killed with its whole group, and the test failed, past the timeout)."""
    try:
        out, _ = up.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(up.pid, signal.SIGKILL)
        out, _ = up.communicate()
        raise AssertionError(f"vigil up did not finish:\n{out}") from None
    return out


def kill_group(up: subprocess.Popen[str]) -> None:
    """Clean-up after a failed test: nothing it started may outlive it."""
    if up.poll() is None:
        os.killpg(up.pid, signal.SIGKILL)
        up.wait()


def totals(out: str) -> dict[str, int]:
    found = TOTALS.search(out)
    assert found, out
    return {k: int(v) for k, v in found.groupdict().items() if k != "how"}
