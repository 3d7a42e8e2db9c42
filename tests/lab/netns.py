"""A small lab of hosts in network namespaces, joined by bridges inside a gateway namespace.

Topology (addresses exist only inside the namespaces this module creates)::

    LAN A 10.231.1.0/24                         LAN B 10.231.2.0/24
    host ns --veth--+                     +--veth-- host ns
    host ns --veth--+- br-a [ gateway ns ] br-b -+--veth-- host ns
                      10.231.1.1      10.231.2.1
                                  br-c 198.51.100.1 (optional "internet": RFC 5737 documentation
                                   +--veth-- host ns   addresses, external to Vigil, unroutable outside)

The gateway routes between the two LANs, so anything it enforces (nftables in its namespace) stands
between a LAN A host and a LAN B host, and a sensor capturing on ``br-a`` sees every LAN A conversation.
Every process started here is bounded in time and killed at teardown; every namespace is deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LAN_A = "10.231.1"
LAN_B = "10.231.2"
INTERNET = "198.51.100"

# A host is a name, or (name, MAC) where the MAC matters (e.g. a Raspberry Pi's OUI, dc:a6:32).
HostSpec = str | tuple[str, str]


class LabUnavailable(RuntimeError):
    """The machine cannot build the lab (not root, no iproute2, no netns support)."""


def unavailable_reason(tools: Sequence[str] = ()) -> str | None:
    if os.geteuid() != 0:
        return "lab needs root (network namespaces)"
    for tool in ("ip", *tools):
        if shutil.which(tool) is None:
            return f"lab needs {tool} (run `make install` as root)"
    probe = f"vgprobe{secrets.token_hex(3)}"
    try:
        subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True, timeout=10)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"cannot create network namespaces: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


def _run(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class Host:
    name: str
    netns: str
    ip: str
    mac: str
    lab: Lab

    def run(self, *args: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command inside this host's namespace, bounded by ``timeout`` seconds."""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.netns, *args], capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(args)} -> {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def spawn(
        self, *args: str, stdout: int | None = subprocess.DEVNULL, **kwargs: object
    ) -> subprocess.Popen[bytes]:
        """Start a background process in this host's namespace; the lab kills it at teardown."""
        proc = subprocess.Popen(  # type: ignore[call-overload]
            ["ip", "netns", "exec", self.netns, *args],
            stdout=stdout,
            stderr=kwargs.pop("stderr", subprocess.DEVNULL),
            start_new_session=True,
            **kwargs,
        )
        self.lab.processes.append(proc)
        return proc  # type: ignore[no-any-return]

    def can_connect(self, ip: str, port: int, timeout_s: float = 1.0) -> bool:
        """One TCP connect attempt with a hard timeout."""
        code = (
            "import socket,sys\n"
            f"s=socket.socket(socket.AF_INET6 if ':' in {ip!r} else socket.AF_INET)\n"
            f"s.settimeout({timeout_s})\n"
            f"sys.exit(0 if s.connect_ex(({ip!r},{port}))==0 else 1)\n"
        )
        proc = self.run("python3", "-c", code, timeout=timeout_s + 5)
        return proc.returncode == 0


@dataclass
class Lab:
    lab_id: str = field(default_factory=lambda: secrets.token_hex(2))
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    _counter: int = 0

    @property
    def gateway_ns(self) -> str:
        return f"vg{self.lab_id}-gw"

    def build(
        self, lan_a: Sequence[HostSpec], lan_b: Sequence[HostSpec], internet: Sequence[HostSpec] = ()
    ) -> None:
        if reason := unavailable_reason():
            raise LabUnavailable(reason)
        gw = self.gateway_ns
        self._add_ns(gw)
        self._gw("ip", "link", "set", "lo", "up")
        self._gw("sysctl", "-qw", "net.ipv4.ip_forward=1")
        bridges = [("br-a", LAN_A), ("br-b", LAN_B)] + ([("br-c", INTERNET)] if internet else [])
        for bridge, prefix in bridges:
            self._gw("ip", "link", "add", bridge, "type", "bridge")
            self._gw("ip", "addr", "add", f"{prefix}.1/24", "dev", bridge)
            self._gw("ip", "link", "set", bridge, "up")
        segments = ((lan_a, "br-a", LAN_A, 10), (lan_b, "br-b", LAN_B, 20), (internet, "br-c", INTERNET, 30))
        for specs, bridge, prefix, first in segments:
            for offset, spec in enumerate(specs):
                name, mac = (spec, None) if isinstance(spec, str) else spec
                self._add_host(name, bridge, prefix, first + offset, mac)

    def _add_ns(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)

    def _gw(self, *args: str) -> None:
        _run("ip", "netns", "exec", self.gateway_ns, *args)

    def _add_host(self, name: str, bridge: str, prefix: str, octet: int, mac: str | None = None) -> None:
        self._counter += 1
        ns = f"vg{self.lab_id}-{name}"
        outer, inner = f"v{self.lab_id}g{self._counter}", f"v{self.lab_id}h{self._counter}"
        # A locally administered MAC that encodes the host, so captures are readable.
        mac = (
            mac
            or f"02:76:67:{int(self.lab_id[:2], 16):02x}:{int(self.lab_id[2:], 16):02x}:{self._counter:02x}"
        )
        self._add_ns(ns)
        _run(
            "ip",
            "link",
            "add",
            outer,
            "netns",
            self.gateway_ns,
            "type",
            "veth",
            "peer",
            "name",
            inner,
            "netns",
            ns,
        )
        self._gw("ip", "link", "set", outer, "master", bridge)
        self._gw("ip", "link", "set", outer, "up")
        ex = ("ip", "netns", "exec", ns)
        _run(*ex, "ip", "link", "set", inner, "address", mac)
        _run(*ex, "ip", "link", "set", inner, "name", "eth0")
        _run(*ex, "ip", "addr", "add", f"{prefix}.{octet}/24", "dev", "eth0")
        _run(*ex, "ip", "link", "set", "eth0", "up")
        _run(*ex, "ip", "link", "set", "lo", "up")
        _run(*ex, "ip", "route", "add", "default", "via", f"{prefix}.1")
        self.hosts[name] = Host(name=name, netns=ns, ip=f"{prefix}.{octet}", mac=mac, lab=self)

    def gateway_run(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.gateway_ns, *args], capture_output=True, text=True, timeout=timeout
        )

    def gateway_spawn(self, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(  # type: ignore[call-overload]
            ["ip", "netns", "exec", self.gateway_ns, *args], start_new_session=True, **kwargs
        )
        self.processes.append(proc)
        return proc  # type: ignore[no-any-return]

    def wait_reachable(self, src: str, dst_ip: str, port: int, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.hosts[src].can_connect(dst_ip, port, timeout_s=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{src} cannot reach {dst_ip}:{port}")
            time.sleep(0.1)

    def teardown(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.processes.clear()
        for ns in reversed(self.namespaces):
            # Deleting the namespace removes its veths, bridges and nftables tables with it.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
            for pid in pids.stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.namespaces.clear()


@contextlib.contextmanager
def lab(
    lan_a: Sequence[HostSpec],
    lan_b: Sequence[HostSpec],
    internet: Sequence[HostSpec] = (),
    lab_id: str | None = None,
) -> Iterator[Lab]:
    """A lab, torn down on exit. A fixed ``lab_id`` (4 hex digits) gives the same MACs on every run, so
    captures recorded separately compose into one network."""
    built = Lab(lab_id) if lab_id is not None else Lab()
    try:
        built.build(lan_a, lan_b, internet)
        yield built
    finally:
        built.teardown()


def http_server(host: Host, port: int = 80, root: Path | None = None) -> subprocess.Popen[bytes]:
    """A real HTTP server (Python's) in the host's namespace."""
    args = ["python3", "-m", "http.server", str(port), "--bind", host.ip]
    if root is not None:
        args += ["--directory", str(root)]
    return host.spawn(*args)


def tcp_listener(host: Host, port: int) -> subprocess.Popen[bytes]:
    """Accepts and closes connections on ``port`` (a stand-in for any TCP service)."""
    code = (
        "import socket\n"
        f"s=socket.create_server(({host.ip!r},{port}))\n"
        "while True:\n"
        "    c,_=s.accept()\n"
        # A scanner resets connections before the greeting: that must not kill the service.
        "    try: c.sendall(b'hello\\n')\n"
        "    except OSError: pass\n"
        "    c.close()\n"
    )
    return host.spawn("python3", "-c", code)


_PRIVATE_NETNS = "VIGIL_LAB_PRIVATE_NETNS"


def in_private_netns_names(module: str, argv: Sequence[str], timeout_s: float | None = None) -> int | None:
    """Re-run ``python -m module argv`` in a private mount namespace with its own ``/run/netns``.

    A fixed lab id means fixed namespace names (``vg5ca1-*``); another recording with the same layout
    running at the same time would collide. With a private tmpfs on /run/netns the names are visible
    only to this run. Returns the child's exit code, or None when already running privately (go on).
    """
    if os.environ.get(_PRIVATE_NETNS) == "1" or shutil.which("unshare") is None:
        return None
    script = 'mkdir -p /run/netns && mount -t tmpfs -o size=1m vigil-netns /run/netns && exec "$@"'
    unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh"]
    return subprocess.run(
        [*unshare, sys.executable, "-m", module, *argv],
        env={**os.environ, _PRIVATE_NETNS: "1"},
        timeout=timeout_s,
    ).returncode


def wait_until_still(path: Path, still_s: float = 1.0, limit_s: float = 20.0) -> None:
    """Return once ``path``'s size has not changed for ``still_s`` seconds, or after ``limit_s``: tcpdump
    writes what the kernel handed it, lags on a loaded machine, and a stop drops what it had not read."""
    deadline = time.monotonic() + limit_s
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_size = path.stat().st_size if path.exists() else -1
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= still_s:
            return
        time.sleep(0.1)


@contextlib.contextmanager
def bridge_capture(
    built: Lab, out: Path, snaplen: int = 0, bridge: str = "br-a", settle_s: float = 1.5
) -> Iterator[Path]:
    """tcpdump on ``bridge`` in the gateway (IPv4 only, ``snaplen`` 0 = whole packets) for the duration of
    the block; the capture ends at ``out``. ``settle_s`` before and after lets the capture start and the
    last replies and FINs cross the bridge."""
    pcap = Path("/tmp") / f"vigil-capture-{built.lab_id}-{secrets.token_hex(3)}.pcap"
    dump = built.gateway_spawn(
        "tcpdump",
        "-i",
        bridge,
        "-w",
        str(pcap),
        "-U",
        "-s",
        str(snaplen),
        "-n",
        "not arp and not ip6",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not pcap.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(settle_s)
    try:
        yield out
        time.sleep(settle_s)
        wait_until_still(pcap)
    finally:
        dump.terminate()
        dump.wait(timeout=10)
        if pcap.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pcap, out)
            pcap.unlink()
