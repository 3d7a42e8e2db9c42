"""Record the capture `make demo` replays: an office LAN's benign traffic, then a Raspberry Pi that scans.

    python -m tests.lab.record tests/data/lab-scan.pcap [--baseline-s 180]

Needs root, iproute2, tcpdump, curl and nmap (all installed by `make install`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.lab.netns import bridge_capture, http_server, lab, tcp_listener
from tests.lab.traffic import benign, nmap_scan


def record(out: Path, baseline_s: float) -> None:
    with lab(["ws1", "ws2", "pi"], ["files", "web"]) as built:
        web, files = built.hosts["web"], built.hosts["files"]
        http_server(web, 80)
        tcp_listener(files, 445)
        built.wait_reachable("ws1", web.ip, 80)
        built.wait_reachable("ws1", files.ip, 445)
        with bridge_capture(built, out, snaplen=512, settle_s=1.0):
            servers = [(web.ip, 80), (files.ip, 445)]
            made = benign(built, ["ws1", "ws2", "pi"], servers, duration_s=baseline_s, interval_s=3.0)
            print(f"benign: {made} requests over {baseline_s:.0f}s", file=sys.stderr)
            scan = nmap_scan(
                built.hosts["pi"], [f"{web.ip[:-3]}.1-40"], ports="21-25,80,135,139,443,445,3389"
            )
            print(scan.stdout.splitlines()[-1] if scan.stdout else scan.stderr, file=sys.stderr)
            benign(built, ["ws1", "ws2"], servers, duration_s=10, interval_s=3.0)
    print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--baseline-s", type=float, default=180.0)
    args = parser.parse_args()
    record(args.out, args.baseline_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
