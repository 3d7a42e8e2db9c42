"""The model catalog as data: the per-device count features, and the detectors that read them.

A *feature* is one behaviour counted per device and per event-time window (a plain count, or the size of a
set of distinct things such as hosts or ``host:port`` targets). Each feature has its own Gamma-Poisson belief
per device and a pooled one for the network (:mod:`master.models.scan`); every closed window teaches both.

A *detector* is a catalog model built on those beliefs: it breaches when one of its trigger features is
both at least its minimum and improbable under the device's belief (posterior predictive tail below the
breach probability); its supporting features add their surprise to the score without breaching alone.
Detectors never learn anything of their own, so adding one costs no state.

The thresholds are floors, not the decision: a device whose normal is 30 SMB servers a minute (a backup
server) learns that, and only the probability decides.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- features --------------------------------------------------------------------------------------
INTERNAL_DESTINATIONS = "distinct_internal_destinations"
FAILED = "failed_connections"
INTERNAL_TARGETS = "distinct_internal_targets"  # host:port pairs (a vertical scan adds ports, not hosts)
UNANSWERED_DESTINATIONS = "distinct_unanswered_internal_destinations"
# Bookkeeping set, not a modelled feature: answered addresses leave the unanswered count.
ANSWERED_DESTINATIONS = "answered_internal_destinations"
SENSITIVE_TARGETS = "distinct_sensitive_port_targets"
SMB_DESTINATIONS = "distinct_smb_destinations"
RDP_DESTINATIONS = "distinct_rdp_destinations"
UDP_TARGETS = "distinct_internal_udp_targets"
FAILED_EXTERNAL = "distinct_failed_external_targets"
HALF_OPEN = "half_open_probes"
PTR_QUERIES = "distinct_ptr_queries"
LDAP_BINDS = "ldap_binds"
LDAP_SEARCHES = "ldap_searches"
AUTH_FAILURES = "smb_auth_failures"
ADMIN_AUTH_FAILURES = "smb_admin_auth_failures"
USERNAMES = "distinct_auth_usernames"
TOOL_REQUESTS = "attack_tool_requests"
EXTERNAL_UPLOAD = "external_upload_kib"
# Of those, what went to endpoints rare for the network (few or no other devices reached them in a week).
RARE_UPLOAD = "rare_endpoint_upload_kib"
TUNNEL_NAMES = "distinct_long_dns_names"
VPN_RARE = "distinct_rare_vpn_endpoints"


@dataclass(frozen=True)
class Feature:
    name: str
    # What one unit of it is, for explanations ("39 distinct internal hosts").
    unit: str
    # A set feature counts distinct members; a plain feature counts events.
    distinct: bool
    # The network's rate per window before it has learned anything. Most behaviours start near zero;
    # a rare one (attack-tool fingerprints) starts very close to it so the first few hits are improbable.
    hyper_mean: float = 1.0
    # Features of one family measure one behaviour several ways (hosts, host:port targets, admin ports):
    # a joint surprise counts each family once.
    family: str = ""


FEATURES: tuple[Feature, ...] = (
    Feature(INTERNAL_DESTINATIONS, "distinct internal hosts contacted", True, family="fan-out"),
    Feature(FAILED, "failed connections", False, family="failure"),
    Feature(INTERNAL_TARGETS, "distinct internal host:port targets", True, family="fan-out"),
    Feature(
        UNANSWERED_DESTINATIONS, "distinct internal addresses that never answered", True, family="fan-out"
    ),
    Feature(
        SENSITIVE_TARGETS, "distinct internal targets on administrative ports", True, 0.5, family="fan-out"
    ),
    Feature(SMB_DESTINATIONS, "distinct internal hosts contacted on SMB ports", True, 0.5, family="fan-out"),
    Feature(RDP_DESTINATIONS, "distinct internal hosts contacted on RDP", True, 0.2, family="fan-out"),
    Feature(UDP_TARGETS, "distinct internal UDP host:port targets", True, family="fan-out"),
    Feature(FAILED_EXTERNAL, "distinct external host:port targets that failed", True, family="failure"),
    Feature(
        HALF_OPEN, "half-open probes (SYN, SYN-ACK, then reset by the prober)", False, 0.2, family="probe"
    ),
    Feature(PTR_QUERIES, "distinct reverse-DNS (PTR) names queried", True, 0.5, family="dns"),
    Feature(LDAP_BINDS, "LDAP binds", False, 0.5, family="directory"),
    Feature(LDAP_SEARCHES, "LDAP searches", False, 0.5, family="directory"),
    Feature(AUTH_FAILURES, "failed SMB logons", False, 0.1, family="auth"),
    Feature(ADMIN_AUTH_FAILURES, "failed SMB logons to administrative accounts", False, 0.02, family="auth"),
    Feature(USERNAMES, "distinct user names tried", True, 0.5, family="auth"),
    Feature(TOOL_REQUESTS, "requests bearing attack-tool fingerprints", False, 0.001, family="probe"),
    Feature(EXTERNAL_UPLOAD, "KiB sent to external hosts", False, 50.0, family="transfer"),
    Feature(
        RARE_UPLOAD, "KiB sent to external endpoints rare for the network", False, 10.0, family="transfer"
    ),
    Feature(TUNNEL_NAMES, "distinct long, random-looking DNS names queried", True, 0.2, family="dns"),
    Feature(
        VPN_RARE,
        "VPN connections to external endpoints rare for the network",
        True,
        0.0001,
        family="transfer",
    ),
)
FEATURE_BY_NAME = {f.name: f for f in FEATURES}
FEATURE_NAMES = tuple(f.name for f in FEATURES)

# Ports whose scanning across hosts is what an intruder does and an ordinary client does not: remote
# shells and desktops, file sharing, directory and database services.
SENSITIVE_PORTS = frozenset(
    {21, 22, 23, 88, 135, 139, 389, 445, 636, 1433, 1521, 3306, 3389, 5432, 5900, 5985, 5986, 6379, 9200}
)
SMB_PORTS = frozenset({139, 445})
RDP_PORT = 3389


# -- detectors -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CountDetector:
    name: str
    # feature -> the smallest observed value that may breach (below it nothing is "a scan", however rare).
    triggers: tuple[tuple[str, int], ...]
    support: tuple[str, ...]
    techniques: tuple[str, ...]
    # Reconnaissance or lateral movement inside the network (feeds "Multiple Lateral Movement").
    lateral: bool = True


NETWORK_SCAN = "Device / Network Scan"
# Evidence lines one breach explains (triggers first, then support).
MAX_EXPLAINED = 4

DETECTORS: tuple[CountDetector, ...] = (
    CountDetector(
        NETWORK_SCAN,
        ((INTERNAL_DESTINATIONS, 10), (INTERNAL_TARGETS, 25)),
        (FAILED,),
        ("T1046",),
    ),
    CountDetector(
        "Device / Network Range Scan", ((UNANSWERED_DESTINATIONS, 10),), (FAILED,), ("T1046", "T1018")
    ),
    CountDetector(
        "Device / Suspicious Network Scan Activity", ((SENSITIVE_TARGETS, 10),), (FAILED,), ("T1046",)
    ),
    CountDetector(
        "Device / Suspicious SMB Scanning Activity",
        ((SMB_DESTINATIONS, 5),),
        (FAILED,),
        ("T1046", "T1135"),
    ),
    CountDetector("Device / RDP Scan", ((RDP_DESTINATIONS, 5),), (FAILED,), ("T1046", "T1021.001")),
    CountDetector("Device / UDP Enumeration", ((UDP_TARGETS, 10),), (), ("T1046",)),
    CountDetector("Device / External Network Scan", ((FAILED_EXTERNAL, 20),), (), ("T1046",), lateral=False),
    CountDetector("Device / Anomalous Nmap Activity", ((HALF_OPEN, 10),), (FAILED,), ("T1046",)),
    CountDetector("Device / Reverse DNS Sweep", ((PTR_QUERIES, 20),), (), ("T1018",)),
    CountDetector(
        "Device / Unusual LDAP Bind and Search Activity",
        ((LDAP_BINDS, 5), (LDAP_SEARCHES, 10)),
        (),
        ("T1087.002", "T1069.002"),
    ),
    CountDetector(
        "Device / SMB Session Brute Force (Non-Admin)", ((AUTH_FAILURES, 5),), (USERNAMES,), ("T1110",)
    ),
    CountDetector(
        "Device / SMB Session Brute Force (Admin)",
        ((ADMIN_AUTH_FAILURES, 3),),
        (USERNAMES, AUTH_FAILURES),
        ("T1110", "T1078.002"),
    ),
    CountDetector(
        "Device / Attack and Recon Tools", ((TOOL_REQUESTS, 3),), (), ("T1595.002", "T1046"), lateral=True
    ),
    CountDetector(
        "Unusual Activity / Unusual External Data Transfer",
        # Ten megabytes a minute anywhere, or one to an endpoint the network does not know (the seed's
        # implanted device sent 7.5 MB home): the floors; the device's (or its peers') belief decides.
        ((EXTERNAL_UPLOAD, 10 * 1024), (RARE_UPLOAD, 1024)),
        (),
        ("T1048", "T1041"),
        lateral=False,
    ),
    CountDetector(
        "Compromise / DNS Tunnel", ((TUNNEL_NAMES, 30),), (), ("T1071.004", "T1048"), lateral=False
    ),
    CountDetector(
        "Anomalous Connection / Outbound VPN to Rare Endpoint",
        ((VPN_RARE, 1),),
        (),
        ("T1133", "T1572"),
        lateral=False,
    ),
)
DETECTOR_BY_NAME = {d.name: d for d in DETECTORS}

# Catalog models that are not count detectors: made from context, or from other breaches.
NEW_DEVICE = "Device / New Device"
NEW_DEVICE_WITH_TOOLS = "Device / New Device with Attack Tools"
UNUSUAL_HOSTNAME = "Unusual Activity / Unusual Hostname for IP"
SIGNIFICANT_ANOMALY = "Unusual Activity / Significant Anomaly"
SUSPICIOUS_SMB = "Compromise / Suspicious SMB Activity"
LARGE_NUMBER_OF_BREACHES = "Device / Large Number of Model Breaches"
MULTIPLE_LATERAL = "Device / Multiple Lateral Movement Model Breaches"
# Breaches that show the device is running attack tooling (for "New Device with Attack Tools").
ATTACK_TOOL_MODELS = frozenset(
    {"Device / Attack and Recon Tools", "Device / Anomalous Nmap Activity", NETWORK_SCAN}
)
LATERAL_MODELS = frozenset(d.name for d in DETECTORS if d.lateral) | {UNUSUAL_HOSTNAME}


def severity(score: int) -> str:
    """The catalog's bands: low < 40 <= medium < 60 <= high < 80 <= critical."""
    if score >= 80:
        return "critical"
    if score >= 60:
        return "high"
    if score >= 40:
        return "medium"
    return "low"


# What each model that is not a count detector is made of, and its ATT&CK ids (for `vigil models`).
CONTEXT_MODELS: dict[str, tuple[str, str]] = {
    NEW_DEVICE: (
        "a device starts acting after the network has been learned (master.new_device_grace_s); MAC "
        "vendor tag, medium for single-board computers",
        "T1200 (single-board computers)",
    ),
    NEW_DEVICE_WITH_TOOLS: (
        "a device first seen within a day breaches a scan or attack-tool model",
        "as the cause",
    ),
    UNUSUAL_HOSTNAME: (
        "a workstation name (NTLM, Kerberos, DHCP) new for the address or for the user after 5 sightings "
        "of others (Dirichlet, P = 1/(n+1))",
        "T1036, T1078",
    ),
    SIGNIFICANT_ANOMALY: (
        "3 behaviour families each P < 0.01, jointly 8 decades, and no specific model fired",
        "T1078",
    ),
    SUSPICIOUS_SMB: (
        "SMBv1 negotiated where the device's and the network's dialect belief gives P < 0.02",
        "T1210, T1021.002",
    ),
    LARGE_NUMBER_OF_BREACHES: ("5 or more breaches of a device in an hour", "as the causes"),
    MULTIPLE_LATERAL: (
        "3 or more distinct reconnaissance / lateral-movement models of a device in an hour",
        "as the causes",
    ),
    "Compromise / Beaconing Activity To External Rare": (
        "10+ intervals >= 1 s with interval CV <= 0.35 and size CV <= 0.5 (any size below interval CV 0.15) "
        "to a rare external endpoint, any protocol",
        "T1071, T1029",
    ),
    "Compromise / Beaconing to Internal Endpoint": (
        "the beacon rule (10+ intervals >= 1 s, interval CV <= 0.35, ...) on connections outside the "
        "network's own plumbing (DNS, NTP, Kerberos, LDAP, SMB, RPC, DHCP, ...) or HTTP requests to an "
        "internal endpoint rare for the network",
        "T1071, T1029",
    ),
    "Compromise / HTTP Beaconing to Rare Destination": (
        "10+ HTTP requests to one rare host, intervals >= 1 s with CV <= 0.35, sizes with CV <= 0.5 "
        "(any size below interval CV 0.15)",
        "T1071.001, T1573",
    ),
    "Compromise / Possible HTTP Command and Control": (
        "5+ regular requests (interval CV <= 0.35) by a non-browser agent to a rare host, with 3+ "
        "application/octet-stream responses",
        "T1071.001, T1573",
    ),
    "Anomalous Connection / Rare External Endpoint": (
        "the first connection any device makes to an external address, once the network has been learned",
        "T1071",
    ),
}


def catalog_rows() -> list[dict[str, str]]:
    """Every model of the catalog: name, id, what makes it breach, ATT&CK ids (for `vigil models`)."""
    rows = []
    for d in DETECTORS:
        rule = " or ".join(f"{FEATURE_BY_NAME[f].unit} >= {n} and improbable" for f, n in d.triggers)
        if d.support:
            rule += "; adds " + ", ".join(FEATURE_BY_NAME[f].unit for f in d.support)
        rows.append({"model": d.name, "breaches_when": rule, "techniques": ", ".join(d.techniques)})
    rows += [
        {"model": name, "breaches_when": rule, "techniques": techniques}
        for name, (rule, techniques) in CONTEXT_MODELS.items()
    ]
    return sorted(rows, key=lambda r: r["model"])
