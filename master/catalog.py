"""The model catalog as data: the per-device count features, and the detectors that read them.

A *feature* is one behaviour counted per device and per event-time window (a plain count, or the size of a
set of distinct things such as hosts or ``host:port`` targets). Each feature has its own Gamma-Poisson belief
per device and a pooled one for the network (:mod:`master.models.counts`); every closed window teaches both.

A *detector* is a catalog model built on those beliefs: it breaches when one of its trigger features is
both at least its minimum and improbable under the device's belief (posterior predictive tail below the
breach probability); its supporting features add their surprise to the score without breaching alone.
Detectors never learn anything of their own, so adding one costs no state.

The thresholds are floors, not the decision: a device whose normal is 30 SMB servers a minute (a backup
server) learns that, and only the probability decides.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
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
# Entries returned by subtree searches based at a naming context (DC=corp,DC=example): a directory dump.
LDAP_ENTRIES = "ldap_naming_context_entries"
AUTH_FAILURES = "smb_auth_failures"
ADMIN_AUTH_FAILURES = "smb_admin_auth_failures"
USERNAMES = "distinct_auth_usernames"
TOOL_REQUESTS = "attack_tool_requests"
EXTERNAL_UPLOAD = "external_upload_kib"
# Of those, what went to endpoints rare for the network (few or no other devices reached them in a week).
RARE_UPLOAD = "rare_endpoint_upload_kib"
# Mail or files sent in clear text (SMTP without STARTTLS, FTP uploads) to such endpoints: how commodity
# stealers (Agent Tesla, HawkEye, Pony) send what they took, a kilobyte of passwords at a time.
CLEAR_UPLOADS = "cleartext_uploads_to_rare_endpoints"
TUNNEL_NAMES = "distinct_long_dns_names"
# Remote procedure calls and Kerberos (master/rpc.py says which operation counts for which).
SERVICE_CHANGES = "remote_service_installations"
SCM_HOSTS = "distinct_remote_service_managers_opened"
WMI_EXEC = "remote_wmi_methods_and_instances"
DCOM_CALLS = "remote_dcom_automation_calls"
DRS_REPLICATION = "directory_replication_requests"
ENUM_CALLS = "account_and_share_enumeration_calls"
ENUM_HOSTS = "distinct_hosts_enumerated"
ENUM_LISTINGS = "whole_directory_listings"
PRIVILEGED_GROUPS = "privileged_group_member_listings"
NULL_SESSIONS = "anonymous_smb_logons"
REGISTRY_CALLS = "remote_registry_calls"
COERCION_CALLS = "authentication_coercion_calls"
RC4_SERVICE_TICKETS = "distinct_rc4_service_tickets"
FAILED_KERBEROS_PRINCIPALS = "distinct_failed_kerberos_principals"
WINRM_REQUESTS = "winrm_requests"
EPM_LOOKUPS = "rpc_endpoint_mapper_lookups"
TXT_PAYLOADS = "distinct_dns_txt_payloads"
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
    # The breach's explanation quotes the window's first example (what kind of bind, which search).
    quote_example: bool = False


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
    Feature(LDAP_BINDS, "completed LDAP binds", False, 0.5, family="directory", quote_example=True),
    Feature(LDAP_SEARCHES, "LDAP searches (root DSE reads aside)", False, 0.5, family="directory"),
    Feature(
        LDAP_ENTRIES,
        "directory entries returned by subtree searches of a whole naming context",
        False,
        5.0,
        family="directory",
        quote_example=True,
    ),
    Feature(AUTH_FAILURES, "failed SMB logons", False, 0.1, family="auth"),
    Feature(ADMIN_AUTH_FAILURES, "failed SMB logons to administrative accounts", False, 0.02, family="auth"),
    Feature(USERNAMES, "distinct user names tried", True, 0.5, family="auth"),
    Feature(TOOL_REQUESTS, "requests bearing attack-tool fingerprints", False, 0.001, family="probe"),
    Feature(EXTERNAL_UPLOAD, "KiB sent to external hosts", False, 50.0, family="transfer"),
    Feature(
        RARE_UPLOAD, "KiB sent to external endpoints rare for the network", False, 10.0, family="transfer"
    ),
    Feature(
        CLEAR_UPLOADS,
        "mail messages or files sent in clear text (SMTP without STARTTLS, FTP) to external endpoints rare "
        "for the network",
        False,
        0.0001,
        family="transfer",
        quote_example=True,
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
FEATURES += (
    Feature(
        SERVICE_CHANGES,
        "services, scheduled tasks or printer drivers installed or started on other hosts",
        False,
        0.0001,
        family="remote-exec",
        quote_example=True,
    ),
    Feature(SCM_HOSTS, "distinct hosts whose service manager was opened", True, 0.001, family="remote-exec"),
    Feature(
        WMI_EXEC,
        "WMI methods called or instances created on other hosts",
        False,
        0.0001,
        family="remote-exec",
        quote_example=True,
    ),
    Feature(
        DCOM_CALLS,
        "calls on DCOM objects of other hosts through IDispatch, or on an interface whose bind was not seen",
        False,
        0.001,
        family="remote-exec",
        quote_example=True,
    ),
    Feature(
        DRS_REPLICATION,
        "directory replication requests (DRSUAPI)",
        False,
        0.00001,
        family="replication",
        quote_example=True,
    ),
    Feature(
        ENUM_CALLS,
        "account, group member, session and share enumeration calls",
        False,
        0.01,
        family="enumeration",
        quote_example=True,
    ),
    Feature(ENUM_HOSTS, "distinct hosts enumerated over RPC", True, 0.01, family="enumeration"),
    Feature(
        ENUM_LISTINGS,
        "calls listing every user, group, session or right of a domain or host",
        False,
        0.0001,
        family="enumeration",
        quote_example=True,
    ),
    Feature(
        PRIVILEGED_GROUPS,
        "privileged groups (Domain Admins, Administrators, ...) whose members were listed",
        True,
        0.0001,
        family="enumeration",
        quote_example=True,
    ),
    Feature(
        NULL_SESSIONS,
        "anonymous (null-session) SMB logons",
        True,
        0.0001,
        family="enumeration",
        quote_example=True,
    ),
    Feature(REGISTRY_CALLS, "remote registry calls", False, 0.001, family="registry", quote_example=True),
    Feature(
        COERCION_CALLS,
        "calls that make a server authenticate elsewhere (printer bug, EFSRPC, DFS)",
        False,
        0.0001,
        family="coercion",
        quote_example=True,
    ),
    Feature(
        EPM_LOOKUPS,
        "endpoint-mapper lookups (listing a host's RPC services)",
        False,
        0.05,
        family="probe",
        quote_example=True,
    ),
    Feature(
        TXT_PAYLOADS,
        "distinct DNS TXT names answered with 100+ characters of text",
        True,
        0.05,
        family="dns",
        quote_example=True,
    ),
    Feature(
        WINRM_REQUESTS,
        "WS-Management (WinRM, PowerShell Remoting) requests to other hosts",
        False,
        0.01,
        family="remote-exec",
        quote_example=True,
    ),
    Feature(
        RC4_SERVICE_TICKETS,
        "distinct services for which RC4 tickets were issued",
        True,
        0.05,
        family="kerberos",
        quote_example=True,
    ),
    Feature(
        FAILED_KERBEROS_PRINCIPALS,
        "distinct accounts whose Kerberos logon failed (bad password, unknown or revoked)",
        True,
        0.2,
        family="kerberos",
        quote_example=True,
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


# -- responses ------------------------------------------------------------------------------------
class Response(enum.Enum):
    """The smallest action a model's breach gets (above master.action_min_score); the policy reads it here."""

    # An analyst decides: the behaviour is worth a look, not an automatic block.
    NONE = "none (an analyst decides)"
    # Scanning and attack tooling: cut the device off from the internal networks (or all it originates).
    STOP_OUTGOING = "cut the device off from the internal networks (or all its outgoing connections)"
    # Password guessing over SMB: block the device's SMB ports, nothing else.
    BLOCK_SMB = "block the device's SMB ports (445, 139)"
    # One remote endpoint is the problem (a C2 server, an exfiltration host): block that endpoint only.
    BLOCK_PEER = "block the device's connections to that endpoint"


# -- detectors -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CountDetector:
    name: str
    # feature -> the smallest observed value that may breach (below it nothing is "a scan", however rare).
    triggers: tuple[tuple[str, int], ...]
    support: tuple[str, ...]
    techniques: tuple[str, ...]
    response: Response = Response.NONE
    # Reconnaissance or lateral movement inside the network (feeds "Multiple Lateral Movement").
    lateral: bool = True

    def rule(self) -> str:
        """What makes it breach, in words (for `vigil models`)."""
        rule = " or ".join(f"{FEATURE_BY_NAME[f].unit} >= {n} and improbable" for f, n in self.triggers)
        if self.support:
            rule += "; adds " + ", ".join(FEATURE_BY_NAME[f].unit for f in self.support)
        return rule


NETWORK_SCAN = "Device / Network Scan"
# Evidence lines one breach explains (triggers first, then support).
MAX_EXPLAINED = 4
_STOP = Response.STOP_OUTGOING

DETECTORS: tuple[CountDetector, ...] = (
    CountDetector(
        NETWORK_SCAN,
        ((INTERNAL_DESTINATIONS, 10), (INTERNAL_TARGETS, 25)),
        (FAILED,),
        ("T1046",),
        _STOP,
    ),
    CountDetector(
        "Device / Network Range Scan", ((UNANSWERED_DESTINATIONS, 10),), (FAILED,), ("T1046", "T1018"), _STOP
    ),
    CountDetector(
        "Device / Suspicious Network Scan Activity", ((SENSITIVE_TARGETS, 10),), (FAILED,), ("T1046",), _STOP
    ),
    CountDetector(
        "Device / Suspicious SMB Scanning Activity",
        ((SMB_DESTINATIONS, 5),),
        (FAILED,),
        ("T1046", "T1135"),
        _STOP,
    ),
    CountDetector("Device / RDP Scan", ((RDP_DESTINATIONS, 5),), (FAILED,), ("T1046", "T1021.001"), _STOP),
    CountDetector("Device / UDP Enumeration", ((UDP_TARGETS, 10),), (), ("T1046",), _STOP),
    CountDetector(
        "Device / External Network Scan", ((FAILED_EXTERNAL, 20),), (), ("T1046",), _STOP, lateral=False
    ),
    CountDetector("Device / Anomalous Nmap Activity", ((HALF_OPEN, 10),), (FAILED,), ("T1046",), _STOP),
    CountDetector("Device / Reverse DNS Sweep", ((PTR_QUERIES, 20),), (), ("T1018",)),
    CountDetector(
        "Device / Unusual LDAP Bind and Search Activity",
        # Many binds or searches (enumeration), or one search that returns a large part of the directory.
        ((LDAP_BINDS, 5), (LDAP_SEARCHES, 10), (LDAP_ENTRIES, 200)),
        (),
        ("T1087.002", "T1069.002"),
    ),
    CountDetector(
        "Device / SMB Session Brute Force (Non-Admin)",
        ((AUTH_FAILURES, 5),),
        (USERNAMES,),
        ("T1110",),
        Response.BLOCK_SMB,
    ),
    CountDetector(
        "Device / SMB Session Brute Force (Admin)",
        ((ADMIN_AUTH_FAILURES, 3),),
        (USERNAMES, AUTH_FAILURES),
        ("T1110", "T1078.002"),
        Response.BLOCK_SMB,
    ),
    CountDetector(
        "Device / Attack and Recon Tools", ((TOOL_REQUESTS, 3),), (), ("T1595.002", "T1046"), _STOP
    ),
    CountDetector(
        "Unusual Activity / Unusual External Data Transfer",
        # Ten megabytes a minute anywhere, or one to an endpoint the network does not know (the seed's
        # implanted device sent 7.5 MB home): the floors; the device's (or its peers') belief decides.
        # Whatever the size, a mail or a file sent in clear text to a server nobody here uses.
        ((EXTERNAL_UPLOAD, 10 * 1024), (RARE_UPLOAD, 1024), (CLEAR_UPLOADS, 1)),
        (),
        ("T1048", "T1041", "T1048.003"),
        Response.BLOCK_PEER,
        lateral=False,
    ),
    CountDetector(
        # Data in the names (long random labels) or in the answers (TXT records carrying encoded chunks).
        "Compromise / DNS Tunnel",
        ((TUNNEL_NAMES, 30), (TXT_PAYLOADS, 10)),
        (),
        ("T1071.004", "T1048"),
        lateral=False,
    ),
    CountDetector(
        "Anomalous Connection / Outbound VPN to Rare Endpoint",
        ((VPN_RARE, 1),),
        (),
        ("T1133", "T1572"),
        Response.BLOCK_PEER,
        lateral=False,
    ),
)
DETECTORS += (
    CountDetector(
        "Anomalous Connection / New or Uncommon Service Control",
        ((SERVICE_CHANGES, 1), (SCM_HOSTS, 2)),
        (),
        ("T1569.002", "T1543.003", "T1053.005", "T1021.002"),
    ),
    CountDetector(
        "Anomalous Connection / Remote WMI Execution", ((WMI_EXEC, 1),), (), ("T1047", "T1546.003")
    ),
    CountDetector(
        # Scripting another host's COM objects (MMC20.Application's ExecuteShellCommand, ShellWindows'
        # ShellExecute): what DCOM lateral movement does, and what Windows does not do between hosts.
        "Anomalous Connection / Remote DCOM Execution",
        ((DCOM_CALLS, 5),),
        (),
        ("T1021.003", "T1559.001"),
    ),
    CountDetector(
        "Device / Anomalous DRSGetNCChanges Operation",
        ((DRS_REPLICATION, 1),),
        (),
        ("T1003.006", "T1207"),
    ),
    CountDetector(
        "Anomalous Connection / SMB Enumeration",
        # One full listing is what a helpdesk does too (the lab's helpdesk-domain session: one
        # `rpcclient enumdomusers`), and on the wire it is `net user /domain`: two make a collection.
        # Who is in Domain Admins, or a logon with no account at all (the null session enumeration
        # tools open first), is what an intruder asks and Windows does not ask for itself.
        ((ENUM_LISTINGS, 2), (ENUM_CALLS, 3), (ENUM_HOSTS, 3), (PRIVILEGED_GROUPS, 1), (NULL_SESSIONS, 1)),
        (),
        ("T1087.002", "T1069.002", "T1135", "T1049"),
    ),
    CountDetector(
        "Anomalous Connection / Unusual Remote Registry Access",
        ((REGISTRY_CALLS, 3),),
        (),
        ("T1012", "T1112"),
    ),
    CountDetector("Device / Authentication Coercion", ((COERCION_CALLS, 1),), (), ("T1187",)),
    CountDetector("Device / RPC Endpoint Enumeration", ((EPM_LOOKUPS, 20),), (), ("T1046",)),
    CountDetector(
        "Anomalous Connection / Unusual Remote PowerShell (WinRM)",
        ((WINRM_REQUESTS, 5),),
        (),
        ("T1021.006", "T1059.001"),
    ),
    CountDetector("Device / Kerberoasting Activity", ((RC4_SERVICE_TICKETS, 3),), (), ("T1558.003",)),
    CountDetector("Device / Kerberos Password Spray", ((FAILED_KERBEROS_PRINCIPALS, 5),), (), ("T1110.003",)),
)
DETECTOR_BY_NAME = {d.name: d for d in DETECTORS}

# Catalog models that are not count detectors: made from context, from series, or from other breaches.
NEW_DEVICE = "Device / New Device"
NEW_DEVICE_WITH_TOOLS = "Device / New Device with Attack Tools"
UNUSUAL_HOSTNAME = "Unusual Activity / Unusual Hostname for IP"
SIGNIFICANT_ANOMALY = "Unusual Activity / Significant Anomaly"
SUSPICIOUS_SMB = "Compromise / Suspicious SMB Activity"
LARGE_NUMBER_OF_BREACHES = "Device / Large Number of Model Breaches"
MULTIPLE_LATERAL = "Device / Multiple Lateral Movement Model Breaches"
FLOW_BEACON = "Compromise / Beaconing Activity To External Rare"
INTERNAL_BEACON = "Compromise / Beaconing to Internal Endpoint"
HTTP_BEACON = "Compromise / HTTP Beaconing to Rare Destination"
HTTP_C2 = "Compromise / Possible HTTP Command and Control"
KNOWN_C2 = "Compromise / Known C2 Framework Traffic"
RARE_EXTERNAL = "Anomalous Connection / Rare External Endpoint"
# Breaches that show the device is running attack tooling (for "New Device with Attack Tools").
ATTACK_TOOL_MODELS = frozenset(
    {"Device / Attack and Recon Tools", "Device / Anomalous Nmap Activity", NETWORK_SCAN}
)


@dataclass(frozen=True)
class Model:
    """One entry of the catalog: what an operator reads in `vigil models` and what the policy acts on."""

    name: str
    # What makes it breach, in words.
    rule: str
    techniques: tuple[str, ...]
    response: Response = Response.NONE
    # Reconnaissance or lateral movement inside the network (feeds "Multiple Lateral Movement").
    lateral: bool = False
    # Made of other breaches: its ATT&CK techniques are its causes'.
    meta: bool = False

    @property
    def model_id(self) -> str:
        """ "Device / Network Scan" -> "device-network-scan"."""
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")


class Catalog:
    """Every model Vigil can raise, each registered once; a breach of a model not registered is a bug."""

    def __init__(self) -> None:
        self._models: dict[str, Model] = {}
        self._ids: dict[str, str] = {}

    def register(self, model: Model) -> Model:
        if model.name in self._models:
            raise ValueError(f"model {model.name!r} is registered twice")
        if model.model_id in self._ids:
            raise ValueError(f"model ids clash: {model.name!r} and {self._ids[model.model_id]!r}")
        if not model.rule or not (model.techniques or model.meta):
            raise ValueError(f"model {model.name!r} needs a rule and ATT&CK techniques")
        self._models[model.name] = model
        self._ids[model.model_id] = model.name
        return model

    def __contains__(self, name: object) -> bool:
        return name in self._models

    def __getitem__(self, name: str) -> Model:
        return self._models[name]

    def get(self, name: str) -> Model | None:
        return self._models.get(name)

    def __iter__(self) -> Iterator[Model]:
        return iter(sorted(self._models.values(), key=lambda m: m.name))

    def __len__(self) -> int:
        return len(self._models)


def _build_catalog() -> Catalog:
    catalog = Catalog()
    for d in DETECTORS:
        catalog.register(Model(d.name, d.rule(), d.techniques, d.response, d.lateral))
    beacon_rule = (
        "10+ intervals >= 1 s with interval CV <= 0.35 and size CV <= 0.5 (any size below interval CV 0.15)"
    )
    for model in (
        Model(
            NEW_DEVICE,
            "a device starts acting after the network has been learned (master.new_device_grace_s); MAC "
            "vendor tag, medium for single-board computers",
            ("T1200",),
        ),
        Model(
            NEW_DEVICE_WITH_TOOLS,
            "a device first seen within a day breaches a scan or attack-tool model",
            (),
            _STOP,
            meta=True,
        ),
        Model(
            UNUSUAL_HOSTNAME,
            "a workstation name (NTLM, Kerberos, DHCP) new for the address or for the user after 5 sightings "
            "of others (Dirichlet, P = 1/(n+1))",
            ("T1036", "T1078"),
            lateral=True,
        ),
        Model(
            SIGNIFICANT_ANOMALY,
            "3 behaviour families each P < 0.01, jointly 8 decades, and no specific model fired",
            ("T1078",),
        ),
        Model(
            SUSPICIOUS_SMB,
            "SMBv1 negotiated where the device's and the network's dialect belief gives P < 0.02",
            ("T1210", "T1021.002"),
        ),
        Model(LARGE_NUMBER_OF_BREACHES, "5 or more breaches of a device in an hour", (), meta=True),
        Model(
            MULTIPLE_LATERAL,
            "3 or more distinct reconnaissance / lateral-movement models of a device in an hour",
            (),
            _STOP,
            meta=True,
        ),
        Model(
            FLOW_BEACON,
            f"{beacon_rule} to a rare external endpoint, any protocol",
            ("T1071", "T1029"),
            Response.BLOCK_PEER,
        ),
        Model(
            INTERNAL_BEACON,
            f"the beacon rule ({beacon_rule}) on connections outside the network's own plumbing (DNS, "
            "NTP, Kerberos, LDAP, SMB, RPC, DHCP, ...) or HTTP requests to an internal endpoint rare for the "
            "network",
            ("T1071", "T1029"),
            Response.BLOCK_PEER,
        ),
        Model(
            HTTP_BEACON,
            f"10+ HTTP requests to one rare host, {beacon_rule}",
            ("T1071.001", "T1573"),
            Response.BLOCK_PEER,
        ),
        Model(
            HTTP_C2,
            "5+ regular requests (interval CV <= 0.35) by a non-browser agent to a rare host, with 3+ "
            "application/octet-stream responses",
            ("T1071.001", "T1573"),
            Response.BLOCK_PEER,
        ),
        Model(
            KNOWN_C2,
            "requests or certificates bearing a command-and-control framework's default fingerprint "
            "(Cobalt Strike, Empire, Covenant, PoshC2, Metasploit, AsyncRAT, DcRat, Quasar): a certificate "
            "or a stager at once, profile URIs with the framework's user agent from the second request",
            ("T1071.001", "T1573.002", "T1587.001"),
            Response.BLOCK_PEER,
        ),
        Model(
            RARE_EXTERNAL,
            "the first connection any device makes to an external address, once the network has been learned",
            ("T1071",),
        ),
    ):
        catalog.register(model)
    return catalog


CATALOG = _build_catalog()
LATERAL_MODELS = frozenset(m.name for m in CATALOG if m.lateral)


SEVERITIES = ("low", "medium", "high", "critical")


def severity(score: int) -> str:
    """The catalog's bands: low < 40 <= medium < 60 <= high < 80 <= critical."""
    if score >= 80:
        return "critical"
    if score >= 60:
        return "high"
    if score >= 40:
        return "medium"
    return "low"


def catalog_rows() -> list[dict[str, str]]:
    """Every model of the catalog: name, id, what makes it breach, ATT&CK ids, response (`vigil models`)."""
    return [
        {
            "model": m.name,
            "model_id": m.model_id,
            "breaches_when": m.rule,
            "techniques": ", ".join(m.techniques) or "as the causes",
            "response": m.response.value,
        }
        for m in CATALOG
    ]
