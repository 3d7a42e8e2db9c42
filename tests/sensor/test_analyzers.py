"""The analyzer hook: registry matching, in-order TCP delivery, UDP datagrams, errors, heuristics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from sensor.capture import PacketBlock
from sensor.pipeline import SensorPipeline
from sensor.protocols.base import ConnContext, Emit, ErrorCounter, ParseError
from sensor.reassembly import StreamReassembler
from sensor.registry import Analyzer, ExpectedConnections, Registry
from tests.sensor.packets import MAC_A, MAC_B, TcpConv, ether, ipv4, udp
from vigil.config import SensorConfig


@dataclass
class Recorder:
    ctx: ConnContext
    protocol: str = "test"
    events: list[tuple[str, bool, bytes | int]] = field(default_factory=list)
    finished: bool = False
    want: int = 10**9

    def data(self, is_orig: bool, ts: float, payload: bytes) -> None:
        if payload == b"boom":
            raise ParseError("test", "boom")
        self.events.append(("data", is_orig, payload))

    def gap(self, is_orig: bool, ts: float, length: int) -> None:
        self.events.append(("gap", is_orig, length))

    def finish(self, ts: float) -> None:
        self.finished = True

    @property
    def done(self) -> bool:
        return (
            sum(len(p) for kind, _, p in self.events if kind == "data" and isinstance(p, bytes)) >= self.want
        )


def registry_with(
    sessions: list[Recorder],
    ports: tuple[int, ...] = (80,),
    transports: tuple[str, ...] = ("tcp",),
    heuristic: object = None,
    want: int = 10**9,
) -> Registry:
    def factory(ctx: ConnContext, emit: Emit, count_error: ErrorCounter) -> Recorder:
        s = Recorder(ctx, want=want)
        sessions.append(s)
        return s

    reg = Registry()
    reg.register("test", transports, ports, factory, heuristic=heuristic)  # type: ignore[arg-type]
    return reg


def feed(
    frames: list[tuple[float, bytes]], reg: Registry, blocks: int = 1
) -> tuple[SensorPipeline, list[str]]:
    metrics = CollectorRegistry()
    pipe = SensorPipeline(SensorConfig(), reg, metrics_registry=metrics, seed=1)
    step = max(1, -(-len(frames) // blocks))
    services: list[str] = []
    for i in range(0, len(frames), step):
        pipe.feed(PacketBlock.from_packets(frames[i : i + step]))
    for r in pipe.flush():
        if r.HasField("flow"):
            services.extend(r.flow.service)
    return pipe, services


def test_out_of_order_tcp_is_delivered_in_order() -> None:
    c = TcpConv()
    c.handshake()
    base = c.cseq
    c.pkt(True, "PA", b"CCCC", seq=base + 8)
    c.pkt(True, "PA", b"AAAA", seq=base)
    c.pkt(True, "PA", b"AAAA", seq=base)  # retransmission: skipped
    c.pkt(True, "PA", b"AABBBB", seq=base + 2)  # overlap: only the new bytes
    c.cseq = base + 12
    c.pkt(False, "PA", b"reply")
    c.close()
    for blocks in (1, 4):
        sessions: list[Recorder] = []
        _, services = feed(c.frames, registry_with(sessions), blocks=blocks)
        (s,) = sessions
        assert s.events == [
            ("data", True, b"AAAA"),
            ("data", True, b"BBBB"),
            ("data", True, b"CCCC"),
            ("data", False, b"reply"),
        ]
        assert s.finished
        assert s.ctx.orig_ip == "10.0.0.1" and s.ctx.resp_port == 80 and s.ctx.transport == "tcp"
        assert s.ctx.orig_mac == "02:00:00:00:00:01"
        assert services == ["test"]


def test_hole_is_reported_as_gap() -> None:
    c = TcpConv()
    c.handshake()
    base = c.cseq
    c.pkt(True, "PA", b"AAAA", seq=base)
    c.pkt(True, "PA", b"CCCC", seq=base + 10)
    c.cseq = base + 14
    c.close()
    sessions: list[Recorder] = []
    feed(c.frames, registry_with(sessions))
    assert sessions[0].events == [("data", True, b"AAAA"), ("gap", True, 6), ("data", True, b"CCCC")]


def test_reassembler_bounds_memory() -> None:
    out: list[tuple[str, int]] = []
    r = StreamReassembler(
        lambda ts, b: out.append(("d", len(b))), lambda ts, n: out.append(("g", n)), max_buffer=100
    )
    r.syn(0)
    for i in range(10):
        r.segment(0.0, 1001 + i * 30, b"x" * 30)  # never fills the hole at 1..1000
    assert out[0] == ("g", 1000)
    assert sum(n for k, n in out if k == "d") == 300


def test_udp_datagrams_errors_and_done() -> None:
    frames = [
        (1.0, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(5000, 53, b"q1")))),
        (1.1, ether(MAC_B, MAC_A, ipv4("10.0.0.2", "10.0.0.1", 17, udp(53, 5000, b"boom")))),
        (1.2, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(5000, 53, b"q2")))),
        (1.3, ether(MAC_A, MAC_B, ipv4("10.0.0.1", "10.0.0.2", 17, udp(5000, 53, b"q3")))),
    ]
    sessions: list[Recorder] = []
    pipe, _ = feed(frames, registry_with(sessions, ports=(53,), transports=("udp",), want=4))
    assert sessions[0].events == [("data", True, b"q1"), ("data", True, b"q2")]  # done after 4 bytes
    metrics = pipe.metrics.parse_errors
    assert metrics.labels(protocol="test", reason="boom")._value.get() == 1


def test_payload_heuristic_picks_an_analyzer_on_any_port() -> None:
    c = TcpConv(sport=9999)
    c.handshake()
    c.pkt(True, "PA", b"MAGIC hello")
    c.close()
    sessions: list[Recorder] = []
    reg = registry_with(sessions, ports=(), heuristic=lambda payload, is_orig: payload.startswith(b"MAGIC"))
    _, services = feed(c.frames, reg)
    assert [e[2] for e in sessions[0].events] == [b"MAGIC hello"]
    assert services == ["test"]


def test_register_rejects_unknown_transport() -> None:
    import pytest

    with pytest.raises(ValueError):
        Registry().register("x", ("sctp",), (1,), lambda c, e, n: None)  # type: ignore[arg-type,return-value]


def test_wrapped_registry_keeps_ports_server_ports_and_heuristics() -> None:
    built: list[str] = []

    def factory(ctx: ConnContext, emit: Emit, count: ErrorCounter) -> Recorder:
        return Recorder(ctx)

    def wrap(inner: Any) -> Any:
        def make(ctx: ConnContext, emit: Emit, count: ErrorCounter) -> Any:
            built.append("wrapped")
            return inner(ctx, emit, count)

        return make

    reg = Registry()
    reg.register("dhcp", ("udp",), (67, 68), factory, server_ports=(67,))
    reg.register("magic", ("tcp",), (7000,), factory, heuristic=lambda payload, is_orig: payload == b"MAGIC")
    copy = reg.wrapped(wrap)
    for transport, port in (("udp", 67), ("udp", 68), ("tcp", 7000), ("tcp", 80), ("tcp", 443)):
        assert copy.is_server_port(transport, port) == reg.is_server_port(transport, port)
    assert not copy.is_server_port("udp", 68)
    dhcp = copy.match_ports("udp", 68, 67)
    assert dhcp is not None and dhcp.name == "dhcp"
    magic = copy.match_payload("tcp", b"MAGIC", True)
    assert magic is not None and magic.name == "magic"
    assert copy.match_ports("tcp", 7000, 5000) is magic  # the port table points at the wrapped analyzers
    magic.factory(None, None, None)  # type: ignore[arg-type]
    assert built == ["wrapped"]
    assert all(a.factory is factory for a in reg.analyzers)  # the original is untouched
    # Sessions built by the copy announce connections where the copy's flow table looks for them.
    assert copy.expected is reg.expected


def test_expected_connections_expire_and_stay_bounded() -> None:
    table = ExpectedConnections(max_entries=3, ttl_s=10.0)
    announced = Analyzer("announced", frozenset({"tcp"}), frozenset(), lambda c, e, n: Recorder(c))
    for port in range(1, 6):
        table.expect("tcp", "10.0.0.1", "10.0.0.2", port, announced, now=float(port))
    assert len(table) == 3 and table.evicted == 2
    assert table.claim("tcp", "10.0.0.1", "10.0.0.2", 1, 6.0) is None  # pushed out by newer announcements
    assert table.claim("tcp", "10.0.0.2", "10.0.0.1", 5, 6.0) is None  # the other direction was not announced
    assert table.claim("tcp", "10.0.0.1", "10.0.0.2", 5, 6.0) is announced
    assert table.claim("tcp", "10.0.0.1", "10.0.0.2", 5, 6.0) is announced  # it stays until it expires
    assert table.claim("tcp", "10.0.0.1", "10.0.0.2", 5, 16.0) is None and len(table) == 0


def test_an_announced_connection_gets_its_analyzer_whatever_its_port() -> None:
    sessions: list[Recorder] = []
    reg = registry_with(sessions, ports=(80,))
    c = TcpConv(sport=80)
    c.handshake()
    c.pkt(True, "PA", b"GET / HTTP/1.0\r\n\r\n")
    c.close()
    announced: list[Recorder] = []

    def factory(ctx: ConnContext, emit: Emit, count: ErrorCounter) -> Recorder:
        announced.append(Recorder(ctx, protocol="announced"))
        return announced[-1]

    reg.expected.expect("tcp", "10.0.0.1", "10.0.0.2", 80, Analyzer("announced", frozenset({"tcp"}),
                        frozenset(), factory), now=1000.0)  # fmt: skip
    _, services = feed(c.frames, reg)
    assert services == ["announced"] and sessions == []
    assert [e[2] for e in announced[0].events] == [b"GET / HTTP/1.0\r\n\r\n"]
