"""An incident told in plain sentences, from the numbers its breaches carry (templates, no language model).

Each model belongs to a family with one template (what a scan, a brute force, an upload *is* in words). A
device's breaches are told in event-time order; consecutive breaches of one family (the eight models one
nmap run trips) become one clause whose numbers are the largest any of them measured. Meta-models (a count of
other breaches) add nothing a reader needs and are left to the timeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from master import catalog as c
from master.breaches import seconds
from vigil.alert.v1 import alert_pb2

_SCAN_HOSTS = (
    c.INTERNAL_DESTINATIONS,
    c.UNANSWERED_DESTINATIONS,
    c.SMB_DESTINATIONS,
    c.RDP_DESTINATIONS,
)
_META = frozenset({c.LARGE_NUMBER_OF_BREACHES, c.MULTIPLE_LATERAL, c.NEW_DEVICE_WITH_TOOLS})

FAMILY_OF_MODEL: dict[str, str] = {
    c.NEW_DEVICE: "new-device",
    c.NETWORK_SCAN: "scan",
    "Device / Network Range Scan": "scan",
    "Device / Suspicious Network Scan Activity": "scan",
    "Device / Suspicious SMB Scanning Activity": "scan",
    "Device / RDP Scan": "scan",
    "Device / UDP Enumeration": "scan",
    "Device / Anomalous Nmap Activity": "scan",
    "Device / Attack and Recon Tools": "scan",
    "Device / External Network Scan": "external-scan",
    "Device / Reverse DNS Sweep": "ptr",
    "Device / Unusual LDAP Bind and Search Activity": "ldap",
    "Device / SMB Session Brute Force (Non-Admin)": "brute",
    "Device / SMB Session Brute Force (Admin)": "brute",
    "Device / Kerberos Password Spray": "kerberos-spray",
    "Unusual Activity / Unusual External Data Transfer": "upload",
    c.HTTP_C2: "c2",
    c.KNOWN_C2: "c2",
    # Beaconing is how command and control looks from the network: told with it.
    c.HTTP_BEACON: "c2",
    c.FLOW_BEACON: "c2",
    c.INTERNAL_BEACON: "c2",
    c.RARE_EXTERNAL: "rare-external",
    "Anomalous Connection / Outbound VPN to Rare Endpoint": "vpn",
    "Compromise / DNS Tunnel": "dns-tunnel",
    c.UNUSUAL_HOSTNAME: "hostname",
    c.SUSPICIOUS_SMB: "smbv1",
    c.SIGNIFICANT_ANOMALY: "anomaly",
}
# Families that say the same thing in one clause when they follow each other.
_MERGED = frozenset({"scan", "brute", "c2", "rare-external", "upload", "smbv1"})


def family(model: str) -> str:
    if model in _META:
        return "meta"
    return FAMILY_OF_MODEL.get(model, "other")


def _evidence(breaches: Sequence[alert_pb2.ModelBreach], feature: str) -> float:
    """The largest value any of the breaches measured for ``feature`` (0 when none did)."""
    return max((e.observed for b in breaches for e in b.evidence if e.feature == feature), default=0.0)


def _examples(breaches: Sequence[alert_pb2.ModelBreach], feature: str) -> list[str]:
    out: list[str] = []
    for b in breaches:
        for e in b.evidence:
            if e.feature == feature:
                out += [x for x in e.examples if x not in out]
    return out


def _peer(breaches: Sequence[alert_pb2.ModelBreach]) -> str:
    peers = sorted({b.peer_ip for b in breaches if b.peer_ip})
    return ", ".join(peers[:3]) + (f" and {len(peers) - 3} more" if len(peers) > 3 else "")


def _n(value: float) -> str:
    return f"{value:.0f}"


def _plural(value: float, one: str, many: str | None = None) -> str:
    return f"{_n(value)} {one if round(value) == 1 else (many or one + 's')}"


def megabytes(kib: float) -> str:
    """KiB (the catalog's unit) as decimal megabytes, the way a person reads a transfer: 7.5 MB."""
    mb = kib * 1024 / 1e6
    return f"{mb:.1f} MB" if mb < 100 else f"{mb:.0f} MB"


_EVERY = re.compile(r"every ([0-9.]+) s")


def _every(breaches: Sequence[alert_pb2.ModelBreach]) -> str:
    for b in breaches:
        found = _EVERY.search(b.explanation)
        if found:
            return f" every {found.group(1)} s"
    return ""


def _scan(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    hosts = max(_evidence(bs, f) for f in _SCAN_HOSTS)
    parts = []
    targets = _evidence(bs, c.INTERNAL_TARGETS)
    if targets > hosts:
        parts.append(_plural(targets, "host:port target"))
    failed = _evidence(bs, c.FAILED)
    if failed:
        parts.append(_plural(failed, "failed connection"))
    for feature, what in (
        (c.SMB_DESTINATIONS, "on SMB"),
        (c.RDP_DESTINATIONS, "on RDP"),
        (c.SENSITIVE_TARGETS, "administrative-port targets"),
        (c.UDP_TARGETS, "UDP targets"),
    ):
        value = _evidence(bs, feature)
        if value:
            parts.append(f"{_n(value)} {what}")
    text = f"contacted {_plural(hosts, 'internal host')}" if hosts else "scanned internal hosts"
    if parts:
        text += f" ({', '.join(parts)})"
    tools = _evidence(bs, c.TOOL_REQUESTS) + _evidence(bs, c.HALF_OPEN)
    if tools:
        # Named only when a request said so (a user agent, a URI); half-open probes alone name no tool.
        named = any("nmap" in x.lower() for x in _examples(bs, c.TOOL_REQUESTS))
        text += " with the fingerprints of a scanning tool" + (" (nmap)" if named else "")
    return text


def _brute(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    failures = max(_evidence(bs, c.AUTH_FAILURES), _evidence(bs, c.ADMIN_AUTH_FAILURES))
    users = _examples(bs, c.USERNAMES) or _examples(bs, c.AUTH_FAILURES)
    names = max(_evidence(bs, c.USERNAMES), float(len(users)))
    text = f"made {_plural(failures, 'failed SMB logon')} with {_plural(names, 'user name')}"
    if users:
        text += f" ({', '.join(users[:3])}{', ...' if len(users) > 3 else ''})"
    admin = _evidence(bs, c.ADMIN_AUTH_FAILURES)
    if admin:
        text += f", {_n(admin)} of them to administrative accounts"
    return text


def _upload(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    rare = _evidence(bs, c.RARE_UPLOAD)
    clear = _evidence(bs, c.CLEAR_UPLOADS)
    kib = rare or _evidence(bs, c.EXTERNAL_UPLOAD)
    where = "a rare external host" if rare or clear else "external hosts"
    peer = _peer(bs)
    if peer:
        where += f" ({peer})"
    if kib:
        return f"uploaded {megabytes(kib)} to {where}"
    return f"sent {_plural(clear, 'mail message or file', 'mail messages or files')} in clear text to {where}"


def _c2(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    n = _evidence(bs, "connections")
    octet = any("application/octet-stream" in b.explanation for b in bs)
    known = [b for b in bs if b.model == c.KNOWN_C2]
    commanded = known or any(b.model == c.HTTP_C2 for b in bs)
    verb = "called home to" if commanded else "beaconed to"
    text = f"{verb} {_peer(bs) or 'an external host'}{_every(bs)}"
    if n:
        text += f" ({_plural(n, 'connection')}"
        text += ", downloading binary octet streams)" if octet else ")"
    if known:
        # "<ip> -> <peer> (<peer:port>): <what it bore> (...); ...": what it bore, without the details.
        head = known[0].explanation.split(";", 1)[0]
        what = head.split(": ", 1)[-1].split(" (", 1)[0]
        text += f", bearing {what}" if what else ""
    return text


def _rare(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    peers = sorted({b.peer_ip for b in bs if b.peer_ip})
    if len(peers) <= 1:
        first = peers[0] if peers else "an external host"
        return f"contacted {first}, which no device here had contacted before"
    return f"contacted {len(peers)} external hosts no device here had contacted before ({_peer(bs)})"


def _vpn(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    b = bs[0]
    port = f":{b.peer_port}" if b.peer_port else ""
    return f"opened a VPN tunnel to the rare external host {b.peer_ip or 'an external host'}{port}"


def _hostname(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    names = _examples(bs, "hostname_for_ip")
    if len(names) >= 2:
        return (
            f"logged on with the new machine name '{names[0]}' where '{names[1]}' was usual for its address"
        )
    return "logged on with a machine name new for its address"


def _ldap(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    parts = []
    for feature, one in ((c.LDAP_BINDS, "LDAP bind"), (c.LDAP_SEARCHES, "LDAP search")):
        value = _evidence(bs, feature)
        if value:
            parts.append(_plural(value, one, one + ("es" if one.endswith("search") else "s")))
    text = "made " + " and ".join(parts) if parts else "queried the directory"
    entries = _evidence(bs, c.LDAP_ENTRIES)
    if entries:
        text += f", reading {_plural(entries, 'directory entry', 'directory entries')}"
    return text


def _units(bs: Sequence[alert_pb2.ModelBreach], limit: int = 2) -> list[str]:
    """The first evidence numbers of the breaches (largest over them), with their units."""
    features: list[str] = []
    for b in bs:
        features += [e.feature for e in b.evidence if e.feature not in features]
    parts = []
    for feature in features[:limit]:
        spec = c.FEATURE_BY_NAME.get(feature)
        if spec is not None:
            parts.append(f"{_n(_evidence(bs, feature))} {spec.unit}")
    return parts


def _generic(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    name = bs[0].model.split(" / ", 1)[-1]
    parts = _units(bs)
    return f"breached {name}" + (f" with {' and '.join(parts)}" if parts else "")


def _anomaly(bs: Sequence[alert_pb2.ModelBreach]) -> str:
    return "behaved unlike itself in several ways at once (" + "; ".join(_units(bs, 4)) + ")"


_TEMPLATES: dict[str, Callable[[Sequence[alert_pb2.ModelBreach]], str]] = {
    "scan": _scan,
    "external-scan": lambda bs: (
        f"scanned {_plural(_evidence(bs, c.FAILED_EXTERNAL), 'external host:port target')} that failed"
    ),
    "ptr": lambda bs: (
        f"looked up {_plural(_evidence(bs, c.PTR_QUERIES), 'reverse-DNS name')} of internal addresses"
    ),
    "ldap": _ldap,
    "brute": _brute,
    "kerberos-spray": lambda bs: (
        f"failed Kerberos logons for {_plural(_evidence(bs, c.FAILED_KERBEROS_PRINCIPALS), 'account')}"
    ),
    "upload": _upload,
    "c2": _c2,
    "rare-external": _rare,
    "vpn": _vpn,
    "dns-tunnel": lambda bs: (
        "tunnelled data through DNS ("
        + _plural(
            max(_evidence(bs, c.TUNNEL_NAMES), _evidence(bs, c.TXT_PAYLOADS)),
            "long name or TXT answer",
            "long names or TXT answers",
        )
        + ")"
    ),
    "hostname": _hostname,
    "smbv1": lambda bs: "negotiated the outdated SMBv1 protocol",
    "anomaly": _anomaly,
}


def clause(family_name: str, breaches: Sequence[alert_pb2.ModelBreach]) -> str:
    """One family's breaches in words (for the summary and the timeline)."""
    return _TEMPLATES.get(family_name, _generic)(breaches)


def clock(t: float, with_date: bool = False) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def after(gap_s: float) -> str:
    """How long after the previous step, as a reader says it."""
    if gap_s < 60:
        return "within a minute"
    if gap_s < 90:
        return "a minute later"
    if gap_s < 2 * 3600:
        return f"{gap_s / 60:.0f} minutes later"
    return f"{gap_s / 3600:.0f} hours later"


@dataclass
class _Step:
    family: str
    breaches: list[alert_pb2.ModelBreach] = field(default_factory=list)

    @property
    def t(self) -> float:
        return seconds(self.breaches[0].time)


def _steps(breaches: Sequence[alert_pb2.ModelBreach]) -> list[_Step]:
    steps: list[_Step] = []
    for b in breaches:
        fam = family(b.model)
        if fam == "meta":
            continue
        last = steps[-1] if steps else None
        if last and last.family == fam and (fam in _MERGED or last.breaches[-1].model == b.model):
            steps[-1].breaches.append(b)
        else:
            steps.append(_Step(fam, [b]))
    return steps


def who(device: alert_pb2.DeviceRef, new: bool) -> str:
    notes = ["new device"] if new else []
    notes += [t.split(":", 1)[1] for t in device.tags if t.startswith("vendor:")]
    if device.hostname:
        notes.append(device.hostname)
    return device.ip + (f" ({', '.join(notes)})" if notes else "")


def device_story(breaches: Sequence[alert_pb2.ModelBreach], with_date: bool, link: str = "") -> str:
    """One device's part of the incident: who it is, then what it did, step by step."""
    steps = _steps(breaches)
    if not steps:
        first = breaches[0]
        return f"{first.device.ip} breached {first.model} at {clock(seconds(first.time), with_date)}."
    new = steps[0].family == "new-device"
    text = who(breaches[0].device, new) + (f", {link}," if link else "")
    previous = steps[0].t
    if new:
        text += f" appeared at {clock(previous, with_date)}"
        steps = steps[1:]
        clauses = []
    else:
        clauses = [f"at {clock(previous, with_date)} {clause(steps[0].family, steps[0].breaches)}"]
        steps = steps[1:]
    for step in steps:
        clauses.append(f"{after(step.t - previous)} {clause(step.family, step.breaches)}")
        previous = step.t
    if new:
        text += (" and " + "; then ".join(clauses)) if clauses else ""
    else:
        text += " " + "; then ".join(clauses)
    return text + "."
