"""A device's pattern of life, read from what the master already learned about it (no second store):

* usual peers and hours: the per-device connection series of master/models/intervals.py (``beacons:<id>``),
  one per external or internal endpoint, with its connection count, mean size and hours of the day;
* usual volumes: the device's count models (``model:count:<id>``), a Gamma belief per behaviour whose mean
  is the usual count per event-time window.
"""

from __future__ import annotations

from typing import Any

from master.breaches import timestamp
from vigil.console.v1 import console_pb2 as pb

# Peers shown: the most used series first.
MAX_PEERS = 20
# A series seen once is a contact, not a habit.
MIN_CONNECTIONS = 2


def _hours(mask: int) -> list[int]:
    return [h for h in range(24) if mask >> h & 1]


def usual_peers(beacons: dict[str, Any] | None) -> list[pb.UsualPeer]:
    pairs: dict[str, list[Any]] = (beacons or {}).get("pairs", {})
    peers = []
    for endpoint, v in pairs.items():
        if not isinstance(v, list) or len(v) < 7 or int(v[0]) < MIN_CONNECTIONS:
            continue
        peers.append(
            pb.UsualPeer(
                endpoint=endpoint,
                connections_count=int(v[0]),
                mean_bytes=float(v[5]),
                first_seen_time=timestamp(float(v[1])),
                last_seen_time=timestamp(float(v[2])),
                hours=_hours(int(v[10])) if len(v) > 10 else [],
            )
        )
    peers.sort(key=lambda p: (-p.connections_count, p.endpoint))
    return peers[:MAX_PEERS]


def usual_volumes(model: dict[str, Any] | None) -> list[pb.UsualVolume]:
    counts: dict[str, dict[str, Any]] = (model or {}).get("counts", {})
    volumes = []
    for feature, belief in sorted(counts.items()):
        beta = float(belief.get("beta", 0.0)) if isinstance(belief, dict) else 0.0
        if beta <= 0:
            continue
        volumes.append(
            pb.UsualVolume(
                feature=feature, mean_per_window=float(belief.get("alpha", 0.0)) / beta, windows_learned=beta
            )
        )
    return volumes


def pattern_of_life(
    beacons: dict[str, Any] | None, model: dict[str, Any] | None, window_s: float
) -> pb.PatternOfLife:
    peers = usual_peers(beacons)
    hours = sorted({h for p in peers for h in p.hours})
    return pb.PatternOfLife(
        usual_peers=peers, active_hours=hours, usual_volumes=usual_volumes(model), window_seconds=window_s
    )


def device(
    doc: dict[str, Any], beacons: dict[str, Any] | None, model: dict[str, Any] | None, window_s: float
) -> pb.Device:
    """The inventory document (master/entities.py) with its pattern of life."""
    ips: dict[str, Any] = doc.get("ips", {})
    macs: dict[str, Any] = doc.get("macs", {})
    by_last = sorted(ips, key=lambda a: -float(ips[a]["last"]))
    mac = max(macs, key=lambda m: macs[m]["last"]) if macs else ""
    return pb.Device(
        device_id=str(doc["device_id"]),
        ip=by_last[0] if by_last else "",
        mac=mac,
        hostname=str(doc.get("hostname", "")),
        first_seen_time=timestamp(float(doc["first_seen"])),
        last_seen_time=timestamp(float(doc["last_seen"])),
        flows_count=int(doc.get("flows", 0)),
        ips=by_last,
        tags=[str(t) for t in doc.get("tags", [])],
        pattern_of_life=pattern_of_life(beacons, model, window_s),
    )
