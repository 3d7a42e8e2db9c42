"""Device inventory: which device an internal address belongs to, and what is known about it.

Identity. On a tap every routed packet carries the router's MAC, so a MAC seen in a flow says nothing
about which device sent it; flows therefore resolve devices by IP address. A device first seen in a flow
gets ``dev-`` + a short hash of that IP. DHCP is the authority on MAC↔IP: a DHCP exchange binds the MAC to
a device (``dev-`` + hash of the MAC when new) and moves the assigned address to it, so a renumbered laptop
stays one device. Hostnames (DHCP, NTLM and Kerberos workstation names) are judged and recorded by
:meth:`master.context.ContextModels.hostname`; users and DNS names are bound through :meth:`Inventory.bind`.

All times are event times (seconds since the epoch, from the records), never wall-clock.
"""

from __future__ import annotations

import hashlib
from typing import Any

from master.store import Doc, Keys, WorkingSet
from vigil.alert.v1 import alert_pb2

SCHEMA = 1
# Bounded history per device: a DHCP pool churning through addresses must not grow a document forever.
MAX_BINDINGS = 32


def device_id_for(kind: str, value: str) -> str:
    return "dev-" + hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:12]


def _touch(bindings: dict[str, Any], value: str, t: float) -> None:
    seen = bindings.get(value)
    if seen is None:
        bindings[value] = {"first": t, "last": t}
        if len(bindings) > MAX_BINDINGS:
            oldest = min(bindings, key=lambda k: bindings[k]["last"])
            del bindings[oldest]
    else:
        # Comparisons rather than min()/max(): this runs for every flow.
        if t < seen["first"]:  # noqa: PLR1730
            seen["first"] = t
        if t > seen["last"]:  # noqa: PLR1730
            seen["last"] = t


class Inventory:
    """Inventory operations over one batch's working set."""

    def __init__(self, ws: WorkingSet, keys: Keys) -> None:
        self.ws = ws
        self.keys = keys
        self.new_devices: set[str] = set()

    # Which keys a batch must load (the pipeline asks before touching the working set).

    def address_keys(self, ips: set[str], macs: set[str]) -> list[str]:
        return [self.keys.ip(ip) for ip in ips] + [self.keys.mac(m) for m in macs]

    def device_ids(self, ips: set[str], macs: set[str]) -> set[str]:
        """Every device the addresses resolve to, given the address keys are loaded."""
        ids = {self.lookup(ip) for ip in ips}
        for mac in macs:
            bound = self.ws.get(self.keys.mac(mac))
            ids.add(str(bound["device_id"]) if bound else device_id_for("mac", mac))
        return ids

    def lookup(self, ip: str) -> str:
        bound = self.ws.get(self.keys.ip(ip))
        return str(bound["device_id"]) if bound else device_id_for("ip", ip)

    def _doc(self, device_id: str, t: float) -> Doc:
        doc = self.ws.get(self.keys.device(device_id))
        if doc is None:
            doc = {
                "schema": SCHEMA,
                "device_id": device_id,
                "first_seen": t,
                "last_seen": t,
                "ips": {},
                "macs": {},
                "hostname": "",
                "hostname_source": "",
                "flows": 0,
            }
            self.new_devices.add(device_id)
        return doc

    def _bind_ip(self, ip: str, device_id: str) -> None:
        key = self.keys.ip(ip)
        bound = self.ws.get(key)
        if bound is None or bound["device_id"] != device_id:
            self.ws.put(key, {"schema": SCHEMA, "device_id": device_id})

    def observe(self, ip: str, t: float, mac: str | None = None, flows: int = 1) -> str:
        """A flow endpoint at event time ``t``; returns its device id."""
        # Called for every flow: the address document is read once (lookup and _bind_ip, inlined).
        ip_key = self.keys.ip(ip)
        bound = self.ws.get(ip_key)
        device_id = str(bound["device_id"]) if bound else device_id_for("ip", ip)
        doc = self._doc(device_id, t)
        # Comparisons rather than min()/max(), as in _touch.
        if t < doc["first_seen"]:  # noqa: PLR1730
            doc["first_seen"] = t
        if t > doc["last_seen"]:  # noqa: PLR1730
            doc["last_seen"] = t
        _touch(doc["ips"], ip, t)
        if mac:
            _touch(doc["macs"], mac, t)
        doc["flows"] += flows
        self.ws.put(self.keys.device(device_id), doc)
        if bound is None or bound["device_id"] != device_id:
            self.ws.put(ip_key, {"schema": SCHEMA, "device_id": device_id})
        return device_id

    def observe_dhcp(self, mac: str, ip: str | None, t: float, hostname: str = "") -> str:
        """DHCP says ``mac`` holds ``ip``: bind both to the MAC's device (creating it if needed)."""
        bound = self.ws.get(self.keys.mac(mac))
        if bound is not None:
            device_id = str(bound["device_id"])
        elif ip is not None and self.ws.get(self.keys.ip(ip)) is not None:
            # The address already has a device from flows: that device is this MAC's.
            device_id = self.lookup(ip)
        else:
            device_id = device_id_for("mac", mac)
        doc = self._doc(device_id, t)
        doc["first_seen"] = min(doc["first_seen"], t)
        doc["last_seen"] = max(doc["last_seen"], t)
        _touch(doc["macs"], mac, t)
        if ip is not None:
            _touch(doc["ips"], ip, t)
            self._bind_ip(ip, device_id)
        if hostname:
            doc["hostname"] = hostname
            doc["hostname_source"] = "dhcp"
        self.ws.put(self.keys.device(device_id), doc)
        if bound is None:
            self.ws.put(self.keys.mac(mac), {"schema": SCHEMA, "device_id": device_id})
        return device_id

    def cloud_device_id(self, cloud_id: str) -> str:
        bound = self.ws.get(self.keys.cloud(cloud_id))
        return str(bound["device_id"]) if bound else device_id_for("cloud", cloud_id)

    def cloud_device_key(self, cloud_id: str) -> str:
        return self.keys.device(self.cloud_device_id(cloud_id))

    def observe_cloud(self, cloud_id: str, ip: str, t: float) -> str:
        """A cloud flow log says instance ``cloud_id`` holds ``ip``: the instance is the device, whatever
        address it has today (cloud addresses are reused; instance ids are not)."""
        device_id = self.cloud_device_id(cloud_id)
        doc = self._doc(device_id, t)
        doc["first_seen"] = min(doc["first_seen"], t)
        doc["last_seen"] = max(doc["last_seen"], t)
        doc["cloud_id"] = cloud_id
        _touch(doc["ips"], ip, t)
        self.ws.put(self.keys.device(device_id), doc)
        self._bind_ip(ip, device_id)
        if self.ws.get(self.keys.cloud(cloud_id)) is None:
            self.ws.put(self.keys.cloud(cloud_id), {"schema": SCHEMA, "device_id": device_id})
        return device_id

    def bind(self, device_id: str, what: str, value: str, t: float) -> None:
        """Record that ``value`` (a user, a DNS name) was seen with an existing device at ``t``."""
        doc = self.ws.get(self.keys.device(device_id))
        if doc is None:
            # Never create a device from a name alone (a PTR sweep's answers are not devices acting).
            return
        _touch(doc.setdefault(what, {}), value, t)
        self.ws.put(self.keys.device(device_id), doc)

    def ref(self, device_id: str, ip: str | None = None) -> alert_pb2.DeviceRef:
        """The device as a DeviceRef: ``ip`` when given (the address involved), else its latest address."""
        doc = self.ws.get(self.keys.device(device_id)) or {}
        macs: dict[str, Any] = doc.get("macs", {})
        mac = max(macs, key=lambda m: macs[m]["last"]) if macs else ""
        if ip is None:
            ips: dict[str, Any] = doc.get("ips", {})
            ip = max(ips, key=lambda a: ips[a]["last"]) if ips else ""
        return alert_pb2.DeviceRef(
            device_id=device_id, ip=ip, mac=mac, hostname=doc.get("hostname", ""), tags=doc.get("tags", [])
        )

    def doc(self, device_id: str) -> Doc | None:
        return self.ws.get(self.keys.device(device_id))

    def put_doc(self, device_id: str, doc: Doc) -> None:
        self.ws.put(self.keys.device(device_id), doc)
