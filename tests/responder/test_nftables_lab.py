"""Enforcement in a real kernel: nftables inside network namespaces this test creates.

Topology (per test, names randomised, deleted afterwards even on failure)::

    ns A (10.77.1.2, fd77:1::2) --veth-- ns GW (.1.1 | .2.1, routes) --veth-- ns B (10.77.2.2, fd77:2::2)

nftables runs in GW, so A -> GW traffic exercises the host hooks (input) and A -> B traffic the gateway
hook (forward). Small TCP listeners run in GW, B and A; a probe is a TCP connect with a 1 s deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from responder.actions import ActiveAction, parse_action
from responder.backends.nftables import NftablesBackend
from responder.client import ResponderClient, make_action
from responder.service import ResponderService
from vigil.config import ProtectedConfig, ResponderConfig
from vigil.responder.v1 import responder_pb2 as pb

pytestmark = [pytest.mark.lab, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[2]
A4, GA4, GB4, B4 = "10.77.1.2", "10.77.1.1", "10.77.2.1", "10.77.2.2"
A6, GA6, GB6, B6 = "fd77:1::2", "fd77:1::1", "fd77:2::1", "fd77:2::2"
OPEN, CLOSED = 8080, 8081  # CLOSED is not closed: it is the "unrelated" port that must keep working

_LISTENER = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port)); s.listen(64); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept(); conn.close()
"""
_PROBE = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0).close()"


def _lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "nftables lab tests need root (network namespaces and nft)"
    for tool in ("nft", "ip"):
        if shutil.which(tool) is None:
            return f"nftables lab tests need {tool!r} on PATH"
    name = f"vg-rsp-probe-{secrets.token_hex(3)}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False).returncode != 0:
        return "cannot create network namespaces here (ip netns add failed)"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return None


_SKIP = _lab_unavailable()
if _SKIP:
    pytestmark.append(pytest.mark.skip(reason=_SKIP))


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


@dataclass
class Lab:
    a: str
    gw: str
    b: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def listen(self, ns: str, *ports: int) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", _LISTENER, *map(str, ports)],
            stdout=subprocess.PIPE,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"

    async def connects(self, ns: str, host: str, port: int) -> bool:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, sys.executable, "-c", _PROBE, host, str(port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        return await asyncio.wait_for(proc.wait(), 5) == 0

    async def wait_connects(self, ns: str, host: str, port: int, want: bool, within_s: float) -> float:
        """Probe until the result is ``want``; returns the time it took. Bounded in time."""
        started = time.monotonic()
        while True:
            if await self.connects(ns, host, port) == want:
                return time.monotonic() - started
            if time.monotonic() - started > within_s:
                raise AssertionError(f"{ns} -> {host}:{port} connects={not want} for {within_s}s")
            await asyncio.sleep(0.2)

    def nft(self, *args: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", self.gw, "nft", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout


def _warm_up(lab: Lab) -> None:
    """Wait (bounded) until neighbour discovery has settled and every path connects."""
    paths = [(lab.a, GA4), (lab.a, B4), (lab.a, GA6), (lab.a, B6), (lab.b, GB4), (lab.b, GB6)]
    deadline = time.monotonic() + 10
    for ns, host in paths:
        while True:
            probe = ["ip", "netns", "exec", ns, sys.executable, "-c", _PROBE, host, str(OPEN)]
            if subprocess.run(probe, capture_output=True, check=False, timeout=5).returncode == 0:
                break
            assert time.monotonic() < deadline, f"lab network not up: {ns} -> {host}"
            time.sleep(0.1)


@pytest.fixture
def lab() -> Iterator[Lab]:
    tag = secrets.token_hex(3)
    lab = Lab(a=f"vg-rsp-{tag}-a", gw=f"vg-rsp-{tag}-gw", b=f"vg-rsp-{tag}-b")
    created: list[str] = []
    try:
        for ns in (lab.a, lab.gw, lab.b):
            sh("ip", "netns", "add", ns)
            created.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            # No duplicate address detection: addresses (link-local included) are usable at once.
            for knob in ("all", "default"):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{knob}.accept_dad=0")
        sh("ip", "netns", "exec", lab.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", lab.gw, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for side, ns, host4, gw4, host6, gw6 in (
            ("a", lab.a, A4, GA4, A6, GA6),
            ("b", lab.b, B4, GB4, B6, GB6),
        ):
            sh(
                "ip",
                "-n",
                ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"to{side}",
                "netns",
                lab.gw,
            )
            sh("ip", "-n", ns, "addr", "add", f"{host4}/24", "dev", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{host6}/64", "dev", "eth0", "nodad")
            sh("ip", "-n", lab.gw, "addr", "add", f"{gw4}/24", "dev", f"to{side}")
            sh("ip", "-n", lab.gw, "addr", "add", f"{gw6}/64", "dev", f"to{side}", "nodad")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", lab.gw, "link", "set", f"to{side}", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", gw4)
            sh("ip", "-n", ns, "-6", "route", "add", "default", "via", gw6)
        lab.listen(lab.gw, OPEN, CLOSED)
        lab.listen(lab.b, OPEN, CLOSED)
        lab.listen(lab.a, 9090)
        _warm_up(lab)
        yield lab
    finally:
        for proc in lab.procs:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=10)


def action(kind: int, target: str, seconds: float, *scopes: pb.Scope, action_id: str = "t1") -> ActiveAction:
    now = time.time()
    return parse_action(make_action(action_id, kind, target, seconds, scopes=scopes, now=now), now, 600)


# (kind, target, scopes, blocked probe, unrelated probes) with probes as (from, host, port)
CASES = {
    "block_connection_host_v4": (
        pb.ACTION_KIND_BLOCK_CONNECTION,
        A4,
        [pb.Scope(peer_ip=GA4, port=OPEN, protocol=pb.IP_PROTOCOL_TCP)],
        ("a", GA4, OPEN),
        [("a", GA4, CLOSED), ("a", B4, OPEN), ("b", GB4, OPEN)],
    ),
    # A scanner cut off from one network (the internal one) and nothing else.
    "block_connection_network_v4": (
        pb.ACTION_KIND_BLOCK_CONNECTION,
        A4,
        [pb.Scope(peer_ip="10.77.2.0/24")],
        ("a", B4, OPEN),
        [("a", GA4, OPEN), ("a", B6, OPEN), ("b", GB4, OPEN)],
    ),
    "block_port_forwarded_v6": (
        pb.ACTION_KIND_BLOCK_PORT,
        A6,
        [pb.Scope(port=OPEN, protocol=pb.IP_PROTOCOL_TCP)],
        ("a", B6, OPEN),
        [("a", B6, CLOSED), ("a", B4, OPEN), ("b", GB6, OPEN)],
    ),
    "block_all_outgoing_forwarded_v4": (
        pb.ACTION_KIND_BLOCK_ALL_OUTGOING,
        A4,
        [],
        ("a", B4, CLOSED),
        [("b", GB4, OPEN), ("a", B6, OPEN)],
    ),
    "quarantine_v4": (
        pb.ACTION_KIND_QUARANTINE,
        A4,
        [],
        ("b", A4, 9090),
        [("b", GB4, OPEN), ("a", GA6, OPEN)],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_block_stops_traffic_and_the_kernel_lifts_it(lab: Lab, case: str) -> None:
    kind, target, scopes, blocked, unrelated = CASES[case]
    names = {"a": lab.a, "b": lab.b}
    for src, host, port in [blocked, *unrelated]:
        assert await lab.connects(names[src], host, port), f"{src}->{host}:{port} fails before any block"
    backend = NftablesBackend(table="vigil", netns=lab.gw)
    await backend.apply([action(kind, target, 3.0, *scopes)])
    applied = time.monotonic()
    src, host, port = blocked
    assert not await lab.connects(names[src], host, port), f"{case}: traffic not blocked"
    for src, host, port in unrelated:
        assert await lab.connects(names[src], host, port), f"{case}: unrelated {src}->{host}:{port} blocked"
    # Nobody calls the backend again: the element's kernel timeout alone must lift the block.
    await backend.close()
    del backend
    src, host, port = blocked
    await lab.wait_connects(names[src], host, port, want=True, within_s=6)
    assert time.monotonic() - applied >= 2.0, "lifted long before its expiry"
    assert "elements" not in lab.nft("list", "table", "inet", "vigil")


async def test_pattern_of_life_allows_listed_flows_only(lab: Lab) -> None:
    backend = NftablesBackend(netns=lab.gw)
    pol = action(
        pb.ACTION_KIND_ENFORCE_PATTERN_OF_LIFE,
        A4,
        10.0,
        pb.Scope(peer_ip=B4, port=OPEN, protocol=pb.IP_PROTOCOL_TCP),
    )
    await backend.apply([pol])
    try:
        assert await lab.connects(lab.a, B4, OPEN), "allowed flow (and its replies) must work"
        assert not await lab.connects(lab.a, B4, CLOSED), "flow outside the pattern must be dropped"
        assert not await lab.connects(lab.a, GA4, OPEN), "other peers must be dropped"
        assert await lab.connects(lab.b, A4, 9090), "the target may still answer connections opened to it"
        assert await lab.connects(lab.a, B6, CLOSED), "an IPv4 pattern does not touch the IPv6 address"
    finally:
        await backend.delete_table()
    assert await lab.connects(lab.a, B4, CLOSED)


async def test_diff_is_idempotent_and_repairs_tampering(lab: Lab) -> None:
    backend = NftablesBackend(netns=lab.gw)
    desired = [
        action(
            pb.ACTION_KIND_BLOCK_CONNECTION,
            A4,
            30,
            pb.Scope(peer_ip=GA4, port=OPEN, protocol=pb.IP_PROTOCOL_TCP),
        )
    ]
    try:
        await backend.apply(desired)
        before = lab.nft("-a", "list", "table", "inet", "vigil")
        await backend.apply(desired)
        assert len(await backend.current()) == 1
        # A second pass with nothing to change commits nothing (same handles, no replaced elements).
        assert before.count("handle") == lab.nft("-a", "list", "table", "inet", "vigil").count("handle")

        lab.nft("flush", "set", "inet", "vigil", "block_src_dst_proto_port_v4")
        assert await lab.connects(lab.a, GA4, OPEN)
        await backend.apply(desired)
        assert not await lab.connects(lab.a, GA4, OPEN), "a flushed set is refilled"

        lab.nft("flush", "chain", "inet", "vigil", "enforce")
        assert await lab.connects(lab.a, GA4, OPEN)
        await backend.apply(desired)
        assert not await lab.connects(lab.a, GA4, OPEN), "a flushed chain is rebuilt"

        await backend.apply([])
        assert await backend.current() == {}
        assert await lab.connects(lab.a, GA4, OPEN), "an empty desired set lifts the block"
    finally:
        await backend.delete_table()


async def test_responder_service_end_to_end(lab: Lab) -> None:
    """gRPC Apply -> reconcile -> nftables; protected refused; revoke lifts; resync repairs tampering."""
    cfg = ResponderConfig(
        listen="127.0.0.1:0",
        backend="nftables",
        netns=lab.gw,
        reconcile_interval_s=0.5,
        protected=ProtectedConfig(networks=[f"{GB4}/32"]),
    )
    service = ResponderService(cfg, CollectorRegistry())
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.started.wait(), 10)
        async with ResponderClient(f"127.0.0.1:{service.port}") as client:
            refused = await client.apply(make_action("p1", pb.ACTION_KIND_QUARANTINE, GB4, 30))
            assert refused.status.state == pb.ACTION_STATE_REFUSED
            assert await lab.connects(lab.b, GB4, OPEN)

            await client.apply(make_action("q1", pb.ACTION_KIND_BLOCK_ALL_OUTGOING, A4, 30))
            await lab.wait_connects(lab.a, B4, OPEN, want=False, within_s=3)
            assert await lab.connects(lab.b, GB4, OPEN)

            lab.nft("delete", "table", "inet", "vigil")
            assert await lab.connects(lab.a, B4, OPEN)
            # The timer resync (0.5 s here) rebuilds the table without any RPC.
            await lab.wait_connects(lab.a, B4, OPEN, want=False, within_s=5)

            await client.revoke("q1", "test done")
            await lab.wait_connects(lab.a, B4, OPEN, want=True, within_s=3)
        assert service.health.readiness()[0]
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        with contextlib.suppress(Exception):
            await NftablesBackend(netns=lab.gw).delete_table()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_killed_responder_blocks_still_lift(lab: Lab, tmp_path: Path) -> None:
    port = _free_port()
    script = (
        "import asyncio, sys\n"
        "from responder.service import serve\n"
        "from vigil import config\n"
        "cfg = config.build(overrides={'responder': {'listen': sys.argv[1], 'backend': 'nftables',"
        " 'netns': sys.argv[2], 'reconcile_interval_s': 0.5}})\n"
        "asyncio.run(serve(cfg))\n"
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the test then only talks gRPC to it
        [sys.executable, "-c", script, f"127.0.0.1:{port}", lab.gw],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "responder.log").open("wb"),
    )
    try:
        async with ResponderClient(f"127.0.0.1:{port}", timeout_s=2) as client:
            for _ in range(50):  # up to ~10 s for the process to start serving
                with contextlib.suppress(Exception):
                    await client.list()
                    break
                await asyncio.sleep(0.2)
            await client.apply(
                make_action(
                    "k1",
                    pb.ACTION_KIND_BLOCK_PORT,
                    A4,
                    3.0,
                    scopes=[pb.Scope(port=OPEN, protocol=pb.IP_PROTOCOL_TCP)],
                )
            )
            applied = time.monotonic()
            await lab.wait_connects(lab.a, GA4, OPEN, want=False, within_s=2)
        proc.send_signal(signal.SIGKILL)  # no chance to clean anything up
        proc.wait(5)
        assert not await lab.connects(lab.a, GA4, OPEN), "the block outlives the responder"
        await lab.wait_connects(lab.a, GA4, OPEN, want=True, within_s=6)
        assert time.monotonic() - applied >= 2.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        with contextlib.suppress(Exception):
            await NftablesBackend(netns=lab.gw).delete_table()


async def test_clear_error_when_namespace_is_missing() -> None:
    backend = NftablesBackend(netns=f"vg-rsp-missing-{secrets.token_hex(3)}")
    with pytest.raises(Exception, match="does not exist"):
        await backend.apply([])


async def test_clear_error_when_nft_is_missing() -> None:
    backend = NftablesBackend(nft="/nonexistent/nft")
    with pytest.raises(Exception, match="not found"):
        await backend.apply([])
