"""ATT&CK facts the analyst needs: which tactics each technique of the catalog serves, the tactics' ids and
their order in the matrix, and how tactics fold into the kill-chain phases an incident is told in.

The technique -> tactic rows are MITRE ATT&CK Enterprise facts (attack.mitre.org, the "Tactics" field of
each technique page). Where a technique serves several tactics, the one a network sensor sees it for comes
first: that one gives the breach its phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from master.catalog import SIGNIFICANT_ANOMALY

# ATT&CK Enterprise tactics in the matrix's order: (id, name).
TACTICS: tuple[tuple[str, str], ...] = (
    ("TA0043", "reconnaissance"),
    ("TA0042", "resource-development"),
    ("TA0001", "initial-access"),
    ("TA0002", "execution"),
    ("TA0003", "persistence"),
    ("TA0004", "privilege-escalation"),
    ("TA0005", "defense-evasion"),
    ("TA0006", "credential-access"),
    ("TA0007", "discovery"),
    ("TA0008", "lateral-movement"),
    ("TA0009", "collection"),
    ("TA0011", "command-and-control"),
    ("TA0010", "exfiltration"),
    ("TA0040", "impact"),
)
TACTIC_ID = {name: ident for ident, name in TACTICS}
_TACTIC_ORDER = {name: i for i, (_, name) in enumerate(TACTICS)}

# Technique (or sub-technique) -> its tactics, the one a network view shows first.
TECHNIQUE_TACTICS: dict[str, tuple[str, ...]] = {
    "T1003.006": ("credential-access",),  # OS Credential Dumping: DCSync
    "T1012": ("discovery",),  # Query Registry
    "T1018": ("discovery",),  # Remote System Discovery
    "T1021.001": ("lateral-movement",),  # Remote Services: Remote Desktop Protocol
    "T1021.002": ("lateral-movement",),  # Remote Services: SMB/Windows Admin Shares
    "T1021.003": ("lateral-movement",),  # Remote Services: Distributed Component Object Model
    "T1021.006": ("lateral-movement",),  # Remote Services: Windows Remote Management
    "T1029": ("exfiltration",),  # Scheduled Transfer
    "T1036": ("defense-evasion",),  # Masquerading
    "T1041": ("exfiltration",),  # Exfiltration Over C2 Channel
    "T1046": ("discovery",),  # Network Service Discovery
    "T1047": ("execution",),  # Windows Management Instrumentation
    "T1048": ("exfiltration",),  # Exfiltration Over Alternative Protocol
    "T1048.003": ("exfiltration",),  # ... Over Unencrypted Non-C2 Protocol
    "T1049": ("discovery",),  # System Network Connections Discovery
    "T1053.005": ("execution", "persistence", "privilege-escalation"),  # Scheduled Task/Job: Scheduled Task
    "T1059.001": ("execution",),  # Command and Scripting Interpreter: PowerShell
    "T1069.002": ("discovery",),  # Permission Groups Discovery: Domain Groups
    "T1071": ("command-and-control",),  # Application Layer Protocol
    "T1071.001": ("command-and-control",),  # ... Web Protocols
    "T1071.004": ("command-and-control",),  # ... DNS
    "T1078": ("initial-access", "defense-evasion", "persistence", "privilege-escalation"),  # Valid Accounts
    "T1078.002": ("initial-access", "defense-evasion", "persistence", "privilege-escalation"),  # Domain Acc.
    "T1087.002": ("discovery",),  # Account Discovery: Domain Account
    "T1095": ("command-and-control",),  # Non-Application Layer Protocol
    "T1110": ("credential-access",),  # Brute Force
    "T1110.003": ("credential-access",),  # Brute Force: Password Spraying
    "T1112": ("defense-evasion", "persistence"),  # Modify Registry
    "T1133": ("initial-access", "persistence"),  # External Remote Services
    "T1135": ("discovery",),  # Network Share Discovery
    "T1187": ("credential-access",),  # Forced Authentication
    "T1200": ("initial-access",),  # Hardware Additions
    "T1207": ("defense-evasion",),  # Rogue Domain Controller
    "T1210": ("lateral-movement",),  # Exploitation of Remote Services
    "T1543.003": ("persistence", "privilege-escalation"),  # Create or Modify System Process: Windows Service
    "T1546.003": ("persistence", "privilege-escalation"),  # Event Triggered Execution: WMI Event Subscription
    "T1558.003": ("credential-access",),  # Steal or Forge Kerberos Tickets: Kerberoasting
    "T1559.001": ("execution",),  # Inter-Process Communication: Component Object Model
    "T1569.002": ("execution",),  # System Services: Service Execution
    "T1572": ("command-and-control",),  # Protocol Tunneling
    "T1573": ("command-and-control",),  # Encrypted Channel
    "T1573.002": ("command-and-control",),  # Encrypted Channel: Asymmetric Cryptography
    "T1587.001": ("resource-development",),  # Develop Capabilities: Malware
    "T1595.002": ("reconnaissance",),  # Active Scanning: Vulnerability Scanning
}

# The phases an incident is told in, in kill-chain order; each ATT&CK tactic folds into one. Discovery is
# reconnaissance seen from inside (what a scan of the network is); execution on another host is how lateral
# movement lands.
PHASES: tuple[str, ...] = (
    "initial access",
    "reconnaissance",
    "credential access",
    "privilege escalation",
    "defense evasion",
    "persistence",
    "lateral movement",
    "collection",
    "command and control",
    "exfiltration",
    "impact",
)
PHASE_OF_TACTIC = {
    "reconnaissance": "reconnaissance",
    "resource-development": "command and control",
    "initial-access": "initial access",
    "execution": "lateral movement",
    "persistence": "persistence",
    "privilege-escalation": "privilege escalation",
    "defense-evasion": "defense evasion",
    "credential-access": "credential access",
    "discovery": "reconnaissance",
    "lateral-movement": "lateral movement",
    "collection": "collection",
    "command-and-control": "command and control",
    "exfiltration": "exfiltration",
    "impact": "impact",
}
_PHASE_ORDER = {name: i for i, name in enumerate(PHASES)}

# Models whose first technique names the access, not what a network sees it do: a VPN opened from inside to
# a rare host is a tunnel out (T1572), a known account logging on from a new machine is the way in.
MODEL_PHASE = {
    "Anomalous Connection / Outbound VPN to Rare Endpoint": "command and control",
    "Unusual Activity / Unusual Hostname for IP": "initial access",
}


# A model made of several behaviours at once (Significant Anomaly) is in the phase of the behaviour that was
# most improbable: the catalog's feature families, each in the phase its behaviour serves.
PHASE_OF_FEATURE_FAMILY = {
    "fan-out": "reconnaissance",
    "failure": "reconnaissance",
    "probe": "reconnaissance",
    "dns": "reconnaissance",
    "directory": "reconnaissance",
    "enumeration": "reconnaissance",
    "auth": "credential access",
    "kerberos": "credential access",
    "coercion": "credential access",
    "replication": "credential access",
    "remote-exec": "lateral movement",
    "registry": "lateral movement",
    "transfer": "exfiltration",
}
FROM_EVIDENCE = SIGNIFICANT_ANOMALY


def tactics_of(techniques: Iterable[str]) -> list[str]:
    """ATT&CK tactic names of the techniques, in matrix order (unknown techniques add nothing)."""
    found = {tactic for t in techniques for tactic in TECHNIQUE_TACTICS.get(t, ())}
    return sorted(found, key=_TACTIC_ORDER.__getitem__)


def tactic_ids(techniques: Iterable[str]) -> list[str]:
    return [TACTIC_ID[name] for name in tactics_of(techniques)]


def breach_phase(model: str, techniques: Iterable[str], families: Sequence[str] = ()) -> str:
    """The phase one breach belongs to: its model's if the table names one, that of its first evidence's
    feature family (``families``, in evidence order) for a model made of several behaviours, else the first
    tactic of its first technique the table knows; "" when none is known."""
    if model in MODEL_PHASE:
        return MODEL_PHASE[model]
    if model == FROM_EVIDENCE:
        for name in families:
            if name in PHASE_OF_FEATURE_FAMILY:
                return PHASE_OF_FEATURE_FAMILY[name]
    for technique in techniques:
        tactics = TECHNIQUE_TACTICS.get(technique)
        if tactics:
            return PHASE_OF_TACTIC[tactics[0]]
    return ""


def in_kill_chain_order(phases: Iterable[str]) -> list[str]:
    return sorted({p for p in phases if p in _PHASE_ORDER}, key=_PHASE_ORDER.__getitem__)
