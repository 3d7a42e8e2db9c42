"""Sensor hot-path throughput: packets/s of capture read + decode + flow table (+ analyzers).

Generates a deterministic, realistic ~1M-packet Ethernet capture (TCP sessions of varied length with
payloads, HTTP requests, DNS over UDP, SYN scans; ~385 B average frame) unless it exists, then
replays it through :class:`sensor.pipeline.SensorPipeline` and prints packets/s.

    .venv/bin/python bench/sensor_speed.py [--packets 1000000] [--file /tmp/vigil-bench.pcap]
        [--no-analyzers] [--json out.json] [--profile] [--compare]

``--compare`` also times, on the same file and in the same run, ``tshark -T fields`` (5-tuple columns)
and NFStream (flow metering only, and with its default nDPI dissection), and prints Vigil's ratio
to each. All figures are per CPU-second of the measuring process (tshark: its own CPU time, read
from the child's rusage), so a busy shared machine skews them less than wall time would.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import resource
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sensor.capture import read_capture
from sensor.pipeline import SensorPipeline, tune_gc
from sensor.protocols.base import SessionFactory
from sensor.registry import Registry
from vigil.config import SensorConfig

Frame = tuple[float, bytes]


def _with_ip_checksum(header: bytes) -> bytes:
    """The IPv4 header with its checksum filled in (RFC 1071), as a real sender writes it."""
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return header[:10] + struct.pack("!H", ~total & 0xFFFF) + header[12:]


def _with_l4_checksum(src: int, dst: int, proto: int, l4: bytes) -> bytes:
    """TCP/UDP with its checksum filled in, as a real sender's NIC writes it (so the sensor, verifying
    checksums as it does on a tap, pays for that here too). RFC 1071's sum is byte-order independent:
    summed as native words, the result is stored as a native word."""
    at = {6: 16, 17: 6}.get(proto)
    if at is None:
        return l4
    data = _ip4(src) + _ip4(dst) + struct.pack("!xBH", proto, len(l4)) + l4
    if len(data) % 2:
        data += b"\x00"
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    value = (~total & 0xFFFF) or (0xFFFF if proto == 17 else 0)
    return l4[:at] + struct.pack("=H", value) + l4[at + 2 :]


def _ip4(a: int) -> bytes:
    return a.to_bytes(4, "big")


class _Gen:
    """Frame builders with fixed MACs and cheap header packing."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.blob = bytes(rng.getrandbits(8) for _ in range(1 << 16))

    def payload(self, n: int) -> bytes:
        off = self.rng.randrange(0, len(self.blob) - n)
        return self.blob[off : off + n]

    @staticmethod
    def frame(src: int, dst: int, proto: int, l4: bytes, smac: bytes, dmac: bytes) -> bytes:
        l4 = _with_l4_checksum(src, dst, proto, l4)
        ip = _with_ip_checksum(
            struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, _ip4(src), _ip4(dst))
        )
        f = dmac + smac + b"\x08\x00" + ip + l4
        return f if len(f) >= 60 else f + bytes(60 - len(f))

    @staticmethod
    def tcp(sp: int, dp: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
        return (
            struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 64240, 0, 0)
            + data
        )

    @staticmethod
    def udp(sp: int, dp: int, data: bytes) -> bytes:
        return struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data


MAC_C = bytes.fromhex("02aa00000001")
MAC_S = bytes.fromhex("02bb00000002")
F, S, R, P, A = 1, 2, 4, 8, 16


def tcp_session(g: _Gen, t: float, client: int, server: int, cport: int, sport: int) -> Iterator[Frame]:
    rng = g.rng
    cs, ss = rng.getrandbits(32), rng.getrandbits(32)
    rtt = rng.uniform(0.0005, 0.05)
    yield t, g.frame(client, server, 6, g.tcp(cport, sport, cs, 0, S), MAC_C, MAC_S)
    t += rtt
    yield t, g.frame(server, client, 6, g.tcp(sport, cport, ss, cs + 1, S | A), MAC_S, MAC_C)
    cs += 1
    ss += 1
    t += 0.0001
    yield t, g.frame(client, server, 6, g.tcp(cport, sport, cs, ss, A), MAC_C, MAC_S)
    # Mostly short exchanges, a few long transfers (heavy tail, like real traffic).
    rounds = min(int(rng.paretovariate(1.3)), 60)
    if sport in (443, 8443):
        # A real-looking handshake so the TLS analyzer sees hellos, then encrypted records.
        hello = tls_client_hello(g, f"host{rng.randrange(1000)}.example.test")
        t += 0.0005
        yield t, g.frame(client, server, 6, g.tcp(cport, sport, cs, ss, P | A, hello), MAC_C, MAC_S)
        cs += len(hello)
        shello = tls_server_hello(g)
        t += rtt
        yield t, g.frame(server, client, 6, g.tcp(sport, cport, ss, cs, P | A, shello), MAC_S, MAC_C)
        ss += len(shello)
    for _ in range(rounds):
        if sport == 80:
            path = "/" + "x" * rng.randrange(5, 80)
            req = f"GET {path} HTTP/1.1\r\nHost: example.test\r\nUser-Agent: bench/1.0\r\n\r\n".encode()
        elif sport in (443, 8443):
            req = tls_record(g, rng.randrange(40, 400))
        else:
            req = g.payload(rng.randrange(40, 400))
        t += rng.uniform(0.001, 0.2)
        yield t, g.frame(client, server, 6, g.tcp(cport, sport, cs, ss, P | A, req), MAC_C, MAC_S)
        cs += len(req)
        segs = rng.choice((1, 1, 1, 2, 3, 4))
        sizes = [1400] * (segs - 1) + [rng.randrange(100, 900)]
        if sport == 80:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n"
            body_len = sum(sizes)
            stream = head % body_len + g.payload(min(body_len, 60000))
            chunks = []
            pos = 0
            for size in sizes[:-1]:
                chunks.append(stream[pos : pos + size])
                pos += size
            chunks.append(stream[pos:])
        elif sport in (443, 8443):
            chunks = [tls_record(g, size - 5) for size in sizes]
        else:
            chunks = [g.payload(size) for size in sizes]
        for k, data in enumerate(chunks):
            t += rtt / 2
            yield t, g.frame(server, client, 6, g.tcp(sport, cport, ss, cs, P | A, data), MAC_S, MAC_C)
            ss += len(data)
            if k % 2 == 1 or k == segs - 1:
                t += 0.0001
                yield t, g.frame(client, server, 6, g.tcp(cport, sport, cs, ss, A), MAC_C, MAC_S)
    t += rng.uniform(0.001, 0.5)
    yield t, g.frame(client, server, 6, g.tcp(cport, sport, cs, ss, F | A), MAC_C, MAC_S)
    cs += 1
    t += rtt
    yield t, g.frame(server, client, 6, g.tcp(sport, cport, ss, cs, F | A), MAC_S, MAC_C)
    ss += 1
    t += 0.0001
    yield t, g.frame(client, server, 6, g.tcp(cport, sport, cs, ss, A), MAC_C, MAC_S)


def tls_record(g: _Gen, n: int, ctype: int = 23) -> bytes:
    return struct.pack("!BHH", ctype, 0x0303, n) + g.payload(n)


def tls_client_hello(g: _Gen, sni: str) -> bytes:
    name = sni.encode()
    server_name = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    ext = struct.pack("!HH", 0, len(server_name)) + server_name
    ext += struct.pack("!HHH", 0x002B, 3, 0x0203) + b"\x04"  # supported_versions: TLS 1.3
    body = (
        struct.pack("!H", 0x0303)
        + g.payload(32)
        + b"\x20"
        + g.payload(32)
        + struct.pack("!HHHH", 6, 0x1301, 0x1302, 0xC02F)
        + b"\x01\x00"
        + struct.pack("!H", len(ext))
        + ext
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", 22, 0x0301, len(hs)) + hs


def tls_server_hello(g: _Gen) -> bytes:
    ext = struct.pack("!HHH", 0x002B, 2, 0x0304)
    body = struct.pack("!H", 0x0303) + g.payload(32) + b"\x20" + g.payload(32) + struct.pack("!HB", 0x1301, 0)
    body += struct.pack("!H", len(ext)) + ext
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return struct.pack("!BHH", 22, 0x0303, len(hs)) + hs + tls_record(g, 1200)


def dns_exchange(g: _Gen, t: float, client: int, server: int, cport: int) -> Iterator[Frame]:
    rng = g.rng
    name = b"".join(bytes([n]) + b"a" * n for n in (rng.randrange(3, 12), rng.randrange(3, 10), 3)) + b"\x00"
    qid = rng.getrandbits(16)
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"
    yield t, g.frame(client, server, 17, g.udp(cport, 53, query), MAC_C, MAC_S)
    answers = rng.randrange(1, 4)
    resp = struct.pack("!HHHHHH", qid, 0x8180, 1, answers, 0, 0) + name + b"\x00\x01\x00\x01"
    for _ in range(answers):
        resp += b"\xc0\x0c\x00\x01\x00\x01" + struct.pack("!IH", 300, 4) + g.payload(4)
    yield t + rng.uniform(0.001, 0.03), g.frame(server, client, 17, g.udp(53, cport, resp), MAC_S, MAC_C)


def syn_probe(g: _Gen, t: float, client: int, server: int, cport: int, dport: int) -> Iterator[Frame]:
    seq = g.rng.getrandbits(32)
    yield t, g.frame(client, server, 6, g.tcp(cport, dport, seq, 0, S), MAC_C, MAC_S)
    if g.rng.random() < 0.6:
        yield t + 0.0003, g.frame(server, client, 6, g.tcp(dport, cport, 0, seq + 1, R | A), MAC_S, MAC_C)


def generate(path: Path, packets: int, seed: int = 7) -> None:
    import heapq

    rng = random.Random(seed)
    g = _Gen(rng)
    heap: list[tuple[float, int, bytes, Iterator[Frame]]] = []
    t = 1_700_000_000.0
    counter = 0
    written = 0
    clients = [0x0A000000 + i for i in range(2, 400)]
    servers = [0xC0A80000 + i for i in range(1, 120)]
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        while written < packets:
            # Keep ~300 conversations interleaved; start a new one whenever fewer are active.
            while len(heap) < 300:
                t += rng.expovariate(2000.0)
                kind = rng.random()
                client, server = rng.choice(clients), rng.choice(servers)
                cport = rng.randrange(1024, 65535)
                gen: Iterator[Frame]
                if kind < 0.55:
                    sport = rng.choice((443, 443, 443, 80, 80, 22, 8443, 3306))
                    gen = tcp_session(g, t, client, server, cport, sport)
                elif kind < 0.85:
                    gen = dns_exchange(g, t, client, server, cport)
                else:
                    gen = syn_probe(g, t, client, server, cport, rng.randrange(1, 1024))
                first = next(gen)
                counter += 1
                heapq.heappush(heap, (first[0], counter, first[1], gen))
            ts, _, frame, gen = heapq.heappop(heap)
            sec = int(ts)
            fh.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame)))
            fh.write(frame)
            written += 1
            nxt = next(gen, None)
            if nxt is not None:
                counter += 1
                heapq.heappush(heap, (nxt[0], counter, nxt[1], gen))


def default_registry() -> Registry:
    """Every analyzer the sensor ships (falls back to DNS+HTTP while the table is being assembled)."""
    try:
        from sensor.analyzers import default_registry as shipped

        return shipped()
    except ImportError:
        pass
    registry = Registry()
    from sensor.protocols.dns.session import new_session as dns_session
    from sensor.protocols.http.session import new_session as http_session

    registry.register("dns", ("udp", "tcp"), (53, 5353), dns_session)
    registry.register("http", ("tcp",), (80, 8080, 8000, 3128), http_session)
    return registry


class _NullSession:
    """Accepts every payload and does nothing: measures delivery cost without parser cost."""

    protocol = "null"
    done = False

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        pass

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        pass

    def finish(self, ts: float) -> None:
        pass


def null_registry() -> Registry:
    """The shipped port table with sessions that parse nothing."""
    return default_registry().wrapped(lambda factory: lambda c, e, n: _NullSession())


class AnalyzerClock:
    """Time spent inside analyzer code (session set-up, data, gap, finish, skip accounting), in ns."""

    def __init__(self) -> None:
        self.ns = 0
        self.calls = 0

    def timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            t0 = time.perf_counter_ns()
            try:
                return fn(*args)
            finally:
                self.ns += time.perf_counter_ns() - t0
                self.calls += 1

        return call


class _TimedSession:
    """Forwards to an analyzer session and charges the time of each call to an :class:`AnalyzerClock`.
    The optional skip methods exist on the proxy only where the session has them, as the flow table
    looks them up with getattr."""

    def __init__(self, inner: Any, clock: AnalyzerClock) -> None:
        self._inner = inner
        self.protocol = inner.protocol
        self.data = clock.timed(inner.data)
        self.gap = clock.timed(inner.gap)
        self.finish = clock.timed(inner.finish)
        for optional in ("skip_hint", "skipped"):
            method = getattr(inner, optional, None)
            if method is not None:
                setattr(self, optional, clock.timed(method))

    @property
    def done(self) -> bool:
        return bool(self._inner.done)

    def __getattr__(self, name: str) -> Any:
        # The other optional session attributes (confirmed, rejected, inner_services) as the session has them.
        return getattr(self._inner, name)


def timed_registry(clock: AnalyzerClock) -> Registry:
    """The shipped analyzers, each session (and its construction) timed by ``clock``."""

    def timed_factory(factory: SessionFactory) -> SessionFactory:
        make = clock.timed(factory)
        return lambda ctx, emit, count: _TimedSession(make(ctx, emit, count), clock)

    return default_registry().wrapped(timed_factory)


def analyzer_share(path: Path) -> dict[str, float]:
    """One pass with every analyzer timed: the share of the pass spent in analyzer code. Parsing in
    Python is what a faster flow table cannot remove, so packets / (that share of a pass's CPU time)
    is a ceiling for this design however cheap everything around the analyzers became."""
    clock = AnalyzerClock()
    pipe = SensorPipeline(SensorConfig(), timed_registry(clock), seed=1)
    t0 = time.perf_counter_ns()
    for block in read_capture(path):
        pipe.feed(block)
    pipe.flush()
    total = time.perf_counter_ns() - t0
    return {"analyzer_share": clock.ns / total, "analyzer_calls": clock.calls, "timed_seconds": total / 1e9}


def run(path: Path, analyzers: bool, null: bool = False) -> dict[str, float]:
    registry = (null_registry() if null else default_registry()) if analyzers else Registry()
    pipe = SensorPipeline(SensorConfig(), registry, seed=1)
    packets = records = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for block in read_capture(path):
        packets += len(block)
        records += len(pipe.feed(block))
    records += len(pipe.flush())
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "packets": packets,
        "records": records,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "pkts_per_s": packets / elapsed,
        # CPU time is the per-core figure: it is not inflated when other processes share the cores.
        "pkts_per_cpu_s": packets / cpu,
    }


TSHARK_FIELDS = ("ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "ip.proto")


def run_tshark(path: Path) -> dict[str, float] | None:
    """tshark printing the 5-tuple columns of every packet; CPU time from the child's rusage."""
    exe = shutil.which("tshark")
    if exe is None:
        return None
    cmd = [exe, "-n", "-r", str(path), "-T", "fields"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    lines = 0
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read(1 << 20), b""):  # type: ignore[union-attr]
            lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"packets": lines, "seconds": elapsed, "cpu_seconds": cpu, "pkts_per_cpu_s": lines / cpu}


def run_nfstream(path: Path, n_dissections: int) -> dict[str, float] | None:
    """NFStream over the same file in this process (n_meters=1: one metering process, one core)."""
    try:
        from nfstream import NFStreamer
    except ImportError:
        return None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    c0 = time.process_time()
    t0 = time.perf_counter()
    streamer = NFStreamer(source=str(path), n_dissections=n_dissections, n_meters=1)
    flows = packets = 0
    for flow in streamer:
        flows += 1
        packets += flow.bidirectional_packets
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # NFStream meters in a child process: count its CPU time as well as ours.
    cpu = time.process_time() - c0 + (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "packets": packets,
        "flows": flows,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "pkts_per_cpu_s": packets / cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--file", type=Path, default=Path("/tmp/vigil-bench-1m.pcap"))
    ap.add_argument("--no-analyzers", action="store_true")
    ap.add_argument(
        "--null-analyzers", action="store_true", help="analyzer ports matched, payload delivered, no parsing"
    )
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--compare", action="store_true", help="also time tshark and NFStream on the same file")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not args.file.exists():
        t0 = time.perf_counter()
        generate(args.file, args.packets)
        print(f"generated {args.file} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    size = args.file.stat().st_size
    analyzers = not args.no_analyzers
    tune_gc()
    null = args.null_analyzers
    run(args.file, analyzers, null)  # warm-up: page cache, imports, numpy kernels
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        result = run(args.file, analyzers, null)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    else:
        result = run(args.file, analyzers, null)
    mode = ("null analyzers" if null else "analyzers on") if analyzers else "flows only"
    avg = (size - 24) / result["packets"] - 16
    print(
        f"sensor pipeline ({mode}): {result['packets']:.0f} packets "
        f"(avg {avg:.0f} B) in {result['seconds']:.2f}s = {result['pkts_per_s']:,.0f} pkt/s wall, "
        f"{result['pkts_per_cpu_s']:,.0f} pkt/s per CPU-second, {result['records']:.0f} records"
    )
    out: dict[str, Any] = {"benchmark": "sensor_speed", "mode": mode, **result}
    if args.compare:
        others = {
            "tshark": run_tshark(args.file),
            "nfstream (n_dissections=0)": run_nfstream(args.file, 0),
            "nfstream (default dissection)": run_nfstream(args.file, 20),
        }
        for name, other in others.items():
            if other is None:
                print(f"{name}: not available")
                continue
            ratio = result["pkts_per_cpu_s"] / other["pkts_per_cpu_s"]
            print(
                f"{name}: {other['packets']:.0f} packets in {other['seconds']:.2f}s wall, "
                f"{other['pkts_per_cpu_s']:,.0f} pkt/s per CPU-second; Vigil ({mode}) = {ratio:.2f}x"
            )
        out["compare"] = others
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
