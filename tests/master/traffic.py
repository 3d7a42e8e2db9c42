"""Synthetic telemetry in event time: a benign office network, and a scanner."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator

from vigil.flow.v1 import flow_pb2
from vigil.sensor.v1 import sensor_pb2

CS = flow_pb2.ConnState
T0 = 1_700_000_000.0  # event time origin, a multiple of 60


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def flow(
    t: float,
    orig: str,
    resp: str,
    port: int = 445,
    state: flow_pb2.ConnState.ValueType = CS.CONN_STATE_SF,
    uid: str = "",
    resp_pkts: int | None = None,
    orig_mac: bytes = b"",
) -> sensor_pb2.Record:
    f = flow_pb2.Flow(
        uid=uid or f"C{orig}-{resp}-{port}-{t}", transport=flow_pb2.TRANSPORT_TCP, conn_state=state
    )
    f.orig.ip = ip(orig)
    f.orig.mac = orig_mac
    f.resp.ip = ip(resp)
    f.resp.port = port
    f.start_time.FromNanoseconds(int(t * 1e9))
    f.end_time.FromNanoseconds(int((t + 0.5) * 1e9))
    answered = state not in (CS.CONN_STATE_S0, CS.CONN_STATE_REJ, CS.CONN_STATE_RSTOS0, CS.CONN_STATE_SH)
    f.orig_pkts = 3
    f.resp_pkts = (
        (3 if answered else (1 if state == CS.CONN_STATE_REJ else 0)) if resp_pkts is None else resp_pkts
    )
    f.history = "ShADadFf" if answered else ("Sr" if state == CS.CONN_STATE_REJ else "S")
    return sensor_pb2.Record(flow=f)


def office(
    start: float,
    windows: int,
    devices: int = 20,
    mean_destinations: float = 3.0,
    seed: int = 7,
    first_device: int = 1,
) -> Iterator[sensor_pb2.Record]:
    """Each device, each minute: a few internal servers (bursty), some internet, a rare failed attempt."""
    rng = random.Random(seed)
    servers = [f"10.0.0.{i}" for i in range(1, 31)]
    for w in range(windows):
        base = start + w * 60.0
        records = []
        for d in range(first_device, first_device + devices):
            me = f"10.0.1.{d}"
            # Bursty but ordinary: a Gamma-mixed Poisson count of distinct servers per minute.
            n = min(len(servers), _poisson(rng, rng.gammavariate(4.0, mean_destinations / 4.0)))
            for server in rng.sample(servers, n):
                records.append(flow(base + rng.uniform(0, 59), me, server, rng.choice([445, 53, 88, 389])))
            for _ in range(rng.randint(0, 3)):
                records.append(flow(base + rng.uniform(0, 59), me, f"93.184.{rng.randint(0, 255)}.1", 443))
            if rng.random() < 0.05:
                records.append(
                    flow(base + rng.uniform(0, 59), me, rng.choice(servers), 8080, CS.CONN_STATE_S0)
                )
        records.sort(key=lambda r: r.flow.start_time.ToNanoseconds())
        yield from records


def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth's method is fine for the small rates used here.
    import math

    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def scan(start: float, scanner: str, targets: int = 200, seconds: float = 30.0) -> list[sensor_pb2.Record]:
    """A horizontal SYN scan of 10.0.2.0/24 (and beyond): most attempts unanswered or rejected."""
    out = []
    for i in range(targets):
        target = str(ipaddress.ip_address("10.0.2.1") + i)
        state = CS.CONN_STATE_REJ if i % 5 == 0 else CS.CONN_STATE_S0
        out.append(flow(start + seconds * i / targets, scanner, target, 445, state))
    return out


def batches(records: list[sensor_pb2.Record], size: int, prefix: str = "b") -> list[sensor_pb2.Batch]:
    out = []
    for n, i in enumerate(range(0, len(records), size), start=1):
        out.append(
            sensor_pb2.Batch(
                sensor_id="s1",
                site="lab",
                batch_id=f"{prefix}-{n}",
                sequence=n,
                records=records[i : i + size],
            )
        )
    return out
