"""Which protocol analyzer runs on which connection: ports first, payload heuristics second.

Analyzer modules register themselves with one call::

    registry.register("dns", ("udp", "tcp"), (53, 5353), DnsSession)

The flow table asks :meth:`Registry.match_ports` when a connection starts and, if no port matched
and heuristics exist, :meth:`Registry.match_payload` on the first payload packets. Before both, a
connection an analyzer announced (an FTP data channel, from PASV or PORT) is claimed from
:attr:`Registry.expected`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from sensor.protocols.base import SessionFactory

# (payload, is_orig) -> True when the payload looks like this protocol.
Heuristic = Callable[[bytes, bool], bool]

# Ports Zeek treats as "likely server" even without an analyzer here: they decide which side of a
# connection that started mid-stream (or of a UDP exchange) is the responder.
DEFAULT_SERVER_PORTS: dict[str, frozenset[int]] = {
    "tcp": frozenset(
        {
            21,
            22,
            23,
            25,
            53,
            80,
            88,
            110,
            111,
            135,
            139,
            143,
            389,
            443,
            445,
            465,
            502,
            587,
            636,
            993,
            995,
            1080,
            1433,
            1521,
            1883,
            2049,
            3128,
            3268,
            3306,
            3389,
            5432,
            5900,
            5985,
            6379,
            6667,
            8000,
            8080,
            8443,
            8888,
            9200,
            27017,
        }
    ),
    "udp": frozenset(
        {
            53,
            67,
            69,
            88,
            123,
            137,
            138,
            161,
            162,
            389,
            443,
            500,
            514,
            1812,
            1900,
            3478,
            4500,
            5060,
            5353,
            5355,
        }
    ),
}


@dataclass(frozen=True, slots=True)
class Analyzer:
    name: str
    transports: frozenset[str]
    ports: frozenset[int]
    factory: SessionFactory
    heuristic: Heuristic | None = None


# How long an announced connection is awaited: Zeek gives FTP data channels five minutes.
EXPECT_TTL_S = 300.0
# Announced connections held at once; the oldest goes first. A control connection announces one per
# transfer and they are claimed within seconds, so this only bounds a flood of PASV replies.
MAX_EXPECTED = 4096


class ExpectedConnections:
    """Connections an analyzer announced before they start, and the analyzer they get.

    An FTP control session that reads ``227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`` knows the
    client's next connection to that address and port carries the transfer: it calls :meth:`expect`;
    the flow table calls :meth:`claim` when a TCP connection starts and, on a match, runs the announced
    analyzer on it instead of looking at ports. The originator's port is never known in advance.

    Bounded (``max_entries``, oldest out first) and expiring (``ttl_s`` after the announcement, in
    capture time). An entry stays until it expires or is announced again, as Zeek's does: a server may
    take several data connections on one announced port.
    """

    def __init__(self, max_entries: int = MAX_EXPECTED, ttl_s: float = EXPECT_TTL_S) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._entries: OrderedDict[tuple[str, str, str, int], tuple[float, Analyzer]] = OrderedDict()
        # Announcements dropped to keep the table bounded (counted, for tests and metrics).
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def expect(
        self, transport: str, orig_ip: str, resp_ip: str, resp_port: int, analyzer: Analyzer, now: float
    ) -> None:
        """The next ``transport`` connection from ``orig_ip`` to ``resp_ip``:``resp_port`` before
        ``now + ttl_s`` gets ``analyzer``."""
        key = (transport, orig_ip, resp_ip, resp_port)
        self._entries.pop(key, None)
        self._entries[key] = (now + self.ttl_s, analyzer)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evicted += 1

    def claim(
        self, transport: str, orig_ip: str, resp_ip: str, resp_port: int, now: float
    ) -> Analyzer | None:
        """The analyzer announced for this connection, if any is still awaited."""
        self._expire(now)
        hit = self._entries.get((transport, orig_ip, resp_ip, resp_port))
        return hit[1] if hit is not None else None

    def _expire(self, now: float) -> None:
        # Entries are kept in announcement order and share one ttl, so the expired ones lead.
        while self._entries:
            deadline, _ = next(iter(self._entries.values()))
            if deadline >= now:
                return
            self._entries.popitem(last=False)


@dataclass
class Registry:
    """Port and heuristic table of protocol analyzers. One instance per pipeline (tests get fresh ones)."""

    analyzers: list[Analyzer] = field(default_factory=list)
    # Connections analyzers announced (FTP data channels); sessions that announce hold this same table.
    expected: ExpectedConnections = field(default_factory=ExpectedConnections)
    _by_port: dict[tuple[str, int], list[Analyzer]] = field(default_factory=dict)
    _server_ports: dict[str, set[int]] = field(
        default_factory=lambda: {k: set(v) for k, v in DEFAULT_SERVER_PORTS.items()}
    )

    def register(
        self,
        name: str,
        transports: Iterable[str],
        ports: Iterable[int],
        factory: SessionFactory,
        heuristic: Heuristic | None = None,
        server_ports: Iterable[int] | None = None,
    ) -> None:
        """Run ``factory`` on connections of ``transports`` ("tcp"/"udp") with one of ``ports``.

        ``server_ports`` (default: ``ports``) are the ports that mark the responder of a connection
        whose start was not seen (DHCP, for example, registers 67 and 68 but only 67 is a server).
        """
        kinds = frozenset(t.lower() for t in transports)
        unknown = kinds - {"tcp", "udp"}
        if unknown:
            raise ValueError(f"unknown transports {sorted(unknown)} for analyzer {name}")
        analyzer = Analyzer(name, kinds, frozenset(int(p) for p in ports), factory, heuristic)
        self.analyzers.append(analyzer)
        for t in kinds:
            for p in analyzer.ports:
                self._by_port.setdefault((t, p), []).append(analyzer)
            self._server_ports.setdefault(t, set()).update(
                analyzer.ports if server_ports is None else (int(p) for p in server_ports)
            )

    def wrapped(self, wrap: Callable[[SessionFactory], SessionFactory]) -> Registry:
        """A copy whose analyzers build their sessions through ``wrap(factory)``; ports, server ports and
        heuristics unchanged (the bench uses it to time or hollow out the shipped analyzers)."""
        by_name = {a.name: replace(a, factory=wrap(a.factory)) for a in self.analyzers}
        return Registry(
            analyzers=list(by_name.values()),
            expected=self.expected,
            _by_port={key: [by_name[a.name] for a in hits] for key, hits in self._by_port.items()},
            _server_ports={k: set(v) for k, v in self._server_ports.items()},
        )

    def match_ports(self, transport: str, resp_port: int, orig_port: int) -> Analyzer | None:
        """The analyzer registered for the responder port, else for the originator port."""
        hit = self._by_port.get((transport, resp_port)) or self._by_port.get((transport, orig_port))
        return hit[0] if hit else None

    def has_heuristics(self, transport: str) -> bool:
        return any(a.heuristic is not None and transport in a.transports for a in self.analyzers)

    def match_payload(
        self, transport: str, payload: bytes, is_orig: bool, skip: frozenset[str] = frozenset()
    ) -> Analyzer | None:
        """The first analyzer whose heuristic recognises ``payload`` (analyzers named in ``skip`` aside)."""
        for a in self.analyzers:
            if a.heuristic is not None and transport in a.transports and a.name not in skip:
                try:
                    if a.heuristic(payload, is_orig):
                        return a
                except Exception:  # a heuristic must never take the flow table down
                    continue
        return None

    def is_server_port(self, transport: str, port: int) -> bool:
        return port in self._server_ports.get(transport, ())

    def server_ports(self, transport: str) -> frozenset[int]:
        return frozenset(self._server_ports.get(transport, ()))

    def __bool__(self) -> bool:
        return True
