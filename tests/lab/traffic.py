"""Traffic the lab generates: a benign office pattern and an attacker's scan. Every loop is bounded."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Sequence

from tests.lab.netns import Host, Lab


def benign(
    lab: Lab,
    clients: Sequence[str],
    servers: Sequence[tuple[str, int]],
    duration_s: float,
    interval_s: float = 2.0,
    seed: int = 7,
    max_requests: int = 2000,
) -> int:
    """Clients make regular connections to their usual servers for ``duration_s`` seconds.

    Returns how many requests were made. Bounded by both duration and ``max_requests``.
    """
    rng = random.Random(seed)
    deadline = time.monotonic() + duration_s
    made = 0
    while time.monotonic() < deadline and made < max_requests:
        for name in clients:
            host = lab.hosts[name]
            ip, port = servers[rng.randrange(len(servers))]
            if port == 80:
                host.run(
                    "curl", "-s", "-o", "/dev/null", "--max-time", "2", f"http://{ip}:{port}/", timeout=5
                )
            else:
                host.can_connect(ip, port, timeout_s=1.0)
            made += 1
        time.sleep(interval_s * (0.5 + rng.random()))
    return made


def nmap_scan(
    attacker: Host, targets: Sequence[str], ports: str = "1-100", timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """A TCP connect scan from ``attacker``; bounded by nmap's own host timeout and ours."""
    if shutil.which("nmap") is None:
        raise RuntimeError("nmap is not installed (run `make install` as root)")
    return attacker.run(
        "nmap",
        "-sT",
        "-Pn",
        "-n",
        "-T4",
        "--max-retries",
        "0",
        "--host-timeout",
        f"{int(timeout_s)}s",
        "-p",
        ports,
        *targets,
        timeout=timeout_s + 30,
    )
