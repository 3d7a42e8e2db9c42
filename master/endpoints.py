"""External endpoints and their rarity for the network; ``Anomalous Connection / Rare External Endpoint``.

Each external address the network talks to has a small document: when it was first and last contacted and by
which devices (bounded). An endpoint is *rare* for a device when, over the trailing ``RARITY_WINDOW_S``, at
most ``RARE_SHARE`` of the network's known devices other than this one contacted it (none at all on a
network of fewer than 50 devices). Rarity is context for other models (beacons, command and control, VPN) and
a low-severity breach of its own the first time any device reaches an endpoint nobody has reached before,
once the network has been learned for the new-device grace period.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from master.breaches import make_breach
from master.catalog import RARE_EXTERNAL
from master.store import Keys, WorkingSet
from vigil.alert.v1 import alert_pb2

SCHEMA = 1
RARITY_WINDOW_S = 7 * 24 * 3600.0
RARE_SHARE = 0.02
MAX_DEVICES = 32
RARE_SCORE = 25


@dataclass(frozen=True)
class Rarity:
    endpoint: str
    # Devices other than the asking one that contacted the endpoint in the trailing window.
    others: int
    known_devices: int
    first_seen: float | None
    rare: bool
    # Nobody on the network had ever contacted it before this observation.
    new: bool

    def text(self) -> str:
        if self.new:
            return f"{self.endpoint} had never been contacted by any device on the network"
        return (
            f"{self.endpoint} was contacted by {self.others} other of {self.known_devices} devices "
            f"in the last {RARITY_WINDOW_S / 86400:.0f} days"
        )


def allowed_others(known_devices: int) -> int:
    return math.floor(RARE_SHARE * known_devices)


class Endpoints:
    """Endpoint documents over one batch's working set."""

    def __init__(self, ws: WorkingSet, keys: Keys) -> None:
        self.ws = ws
        self.keys = keys

    def rarity(self, endpoint: str, device_id: str, t: float, known_devices: int) -> Rarity:
        doc = self.ws.get(self.keys.endpoint(endpoint))
        if doc is None:
            return Rarity(endpoint, 0, known_devices, None, True, True)
        devices: dict[str, float] = doc["devices"]
        others = sum(1 for d, last in devices.items() if d != device_id and t - last <= RARITY_WINDOW_S)
        rare = others <= allowed_others(known_devices)
        return Rarity(endpoint, others, known_devices, float(doc["first"]), rare, False)

    def contact(self, endpoint: str, device_id: str, t: float) -> None:
        key = self.keys.endpoint(endpoint)
        doc: dict[str, Any] = dict(
            self.ws.get(key) or {"schema": SCHEMA, "first": t, "last": t, "devices": {}}
        )
        doc["first"] = min(doc["first"], t)
        doc["last"] = max(doc["last"], t)
        devices = dict(doc["devices"])
        devices[device_id] = max(devices.get(device_id, t), t)
        if len(devices) > MAX_DEVICES:
            del devices[min(devices, key=lambda d: devices[d])]
        doc["devices"] = devices
        self.ws.put(key, doc)


def rare_external_breach(
    device: alert_pb2.DeviceRef, rarity: Rarity, t: float, port: int, learned_s: float, uid: str
) -> alert_pb2.ModelBreach:
    key = int(hashlib.sha256(rarity.endpoint.encode()).hexdigest()[:12], 16)
    explanation = (
        f"{device.ip} connected to {rarity.endpoint}:{port}; {rarity.text()} "
        f"in the {learned_s / 3600:.1f} h it has been learned; score {RARE_SCORE}"
    )
    return make_breach(
        RARE_EXTERNAL,
        device,
        key=key,
        score=RARE_SCORE,
        when=t,
        window=(t, t),
        explanation=explanation,
        evidence=[
            alert_pb2.Evidence(
                feature="devices_contacting_endpoint",
                observed=float(rarity.others),
                examples=[f"{rarity.endpoint}:{port}"],
            )
        ],
        techniques=("T1071",),
        uids=[uid] if uid else [],
        peer=f"{rarity.endpoint}:{port}",
    )
