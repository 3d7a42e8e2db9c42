"""MITRE ATT&CK names and tactics for the technique ids the catalog uses (Enterprise ATT&CK v16).

Exports that speak ATT&CK (OCSF ``attacks``, CEF, chat messages) need the technique's name and its tactics,
not just the id the catalog carries. These are public facts from the ATT&CK matrix, written down for the ids
the catalog names; a test keeps the table covering every catalog technique.
"""

from __future__ import annotations

from dataclasses import dataclass

ATTACK_VERSION = "16"

TACTICS: dict[str, str] = {
    "TA0043": "Reconnaissance",
    "TA0042": "Resource Development",
    "TA0001": "Initial Access",
    "TA0002": "Execution",
    "TA0003": "Persistence",
    "TA0004": "Privilege Escalation",
    "TA0005": "Defense Evasion",
    "TA0006": "Credential Access",
    "TA0007": "Discovery",
    "TA0008": "Lateral Movement",
    "TA0009": "Collection",
    "TA0011": "Command and Control",
    "TA0010": "Exfiltration",
    "TA0040": "Impact",
}


@dataclass(frozen=True)
class Technique:
    uid: str
    name: str
    # Tactic ids, in the matrix's order.
    tactics: tuple[str, ...]

    @property
    def parent(self) -> str:
        """The technique a sub-technique belongs to ("T1021.002" -> "T1021"); itself otherwise."""
        return self.uid.split(".", 1)[0]


_EXEC, _PERSIST, _PRIV, _EVADE = "TA0002", "TA0003", "TA0004", "TA0005"
_CRED, _DISC, _LAT, _C2, _EXFIL = "TA0006", "TA0007", "TA0008", "TA0011", "TA0010"

_ROWS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("T1003", "OS Credential Dumping", (_CRED,)),
    ("T1003.006", "DCSync", (_CRED,)),
    ("T1012", "Query Registry", (_DISC,)),
    ("T1018", "Remote System Discovery", (_DISC,)),
    ("T1021", "Remote Services", (_LAT,)),
    ("T1021.001", "Remote Desktop Protocol", (_LAT,)),
    ("T1021.002", "SMB/Windows Admin Shares", (_LAT,)),
    ("T1021.003", "Distributed Component Object Model", (_LAT,)),
    ("T1021.006", "Windows Remote Management", (_LAT,)),
    ("T1029", "Scheduled Transfer", (_EXFIL,)),
    ("T1036", "Masquerading", (_EVADE,)),
    ("T1041", "Exfiltration Over C2 Channel", (_EXFIL,)),
    ("T1046", "Network Service Discovery", (_DISC,)),
    ("T1047", "Windows Management Instrumentation", (_EXEC,)),
    ("T1048", "Exfiltration Over Alternative Protocol", (_EXFIL,)),
    ("T1048.003", "Exfiltration Over Unencrypted Non-C2 Protocol", (_EXFIL,)),
    ("T1049", "System Network Connections Discovery", (_DISC,)),
    ("T1053", "Scheduled Task/Job", (_EXEC, _PERSIST, _PRIV)),
    ("T1053.005", "Scheduled Task", (_EXEC, _PERSIST, _PRIV)),
    ("T1059", "Command and Scripting Interpreter", (_EXEC,)),
    ("T1059.001", "PowerShell", (_EXEC,)),
    ("T1069", "Permission Groups Discovery", (_DISC,)),
    ("T1069.002", "Domain Groups", (_DISC,)),
    ("T1071", "Application Layer Protocol", (_C2,)),
    ("T1071.001", "Web Protocols", (_C2,)),
    ("T1071.004", "DNS", (_C2,)),
    ("T1078", "Valid Accounts", ("TA0005", _PERSIST, _PRIV, "TA0001")),
    ("T1078.002", "Domain Accounts", ("TA0005", _PERSIST, _PRIV, "TA0001")),
    ("T1087", "Account Discovery", (_DISC,)),
    ("T1095", "Non-Application Layer Protocol", (_C2,)),
    ("T1087.002", "Domain Account", (_DISC,)),
    ("T1110", "Brute Force", (_CRED,)),
    ("T1110.003", "Password Spraying", (_CRED,)),
    ("T1112", "Modify Registry", (_EVADE,)),
    ("T1133", "External Remote Services", (_PERSIST, "TA0001")),
    ("T1135", "Network Share Discovery", (_DISC,)),
    ("T1187", "Forced Authentication", (_CRED,)),
    ("T1200", "Hardware Additions", ("TA0001",)),
    ("T1207", "Rogue Domain Controller", (_EVADE,)),
    ("T1210", "Exploitation of Remote Services", (_LAT,)),
    ("T1543", "Create or Modify System Process", (_PERSIST, _PRIV)),
    ("T1543.003", "Windows Service", (_PERSIST, _PRIV)),
    ("T1546", "Event Triggered Execution", (_PRIV, _PERSIST)),
    ("T1546.003", "Windows Management Instrumentation Event Subscription", (_PRIV, _PERSIST)),
    ("T1558", "Steal or Forge Kerberos Tickets", (_CRED,)),
    ("T1558.003", "Kerberoasting", (_CRED,)),
    ("T1559", "Inter-Process Communication", (_EXEC,)),
    ("T1559.001", "Component Object Model", (_EXEC,)),
    ("T1569", "System Services", (_EXEC,)),
    ("T1569.002", "Service Execution", (_EXEC,)),
    ("T1572", "Protocol Tunneling", (_C2,)),
    ("T1573", "Encrypted Channel", (_C2,)),
    ("T1573.002", "Asymmetric Cryptography", (_C2,)),
    ("T1587", "Develop Capabilities", ("TA0042",)),
    ("T1587.001", "Malware", ("TA0042",)),
    ("T1595", "Active Scanning", ("TA0043",)),
    ("T1595.002", "Vulnerability Scanning", ("TA0043",)),
)

TECHNIQUES: dict[str, Technique] = {uid: Technique(uid, name, tactics) for uid, name, tactics in _ROWS}


def technique(uid: str) -> Technique:
    """The technique for an id; an id missing from the table keeps its id as its name and no tactic."""
    return TECHNIQUES.get(uid) or Technique(uid, uid, ())
