"""MITRE ATT&CK Enterprise facts the master speaks (attack.mitre.org): the tactics in the matrix's order, and
for each technique a catalog model or a breach names, its name and its tactics. Where a technique serves
several tactics, the one a network sensor sees it for comes first: the analyst takes a breach's phase from
it (master/analyst/attack.py); the exports list them all (master/exports/). One table for both; a test
keeps it covering every technique id the master names.
"""

from __future__ import annotations

from dataclasses import dataclass

# The technique pages as read for this table (Modify Registry serves persistence since v17).
ATTACK_VERSION = "17"


@dataclass(frozen=True)
class Tactic:
    uid: str
    name: str
    # The name as ATT&CK's STIX data spells it ("credential-access").
    slug: str


TACTICS: tuple[Tactic, ...] = tuple(
    Tactic(uid, name, name.lower().replace(" ", "-"))
    for uid, name in (
        ("TA0043", "Reconnaissance"),
        ("TA0042", "Resource Development"),
        ("TA0001", "Initial Access"),
        ("TA0002", "Execution"),
        ("TA0003", "Persistence"),
        ("TA0004", "Privilege Escalation"),
        ("TA0005", "Defense Evasion"),
        ("TA0006", "Credential Access"),
        ("TA0007", "Discovery"),
        ("TA0008", "Lateral Movement"),
        ("TA0009", "Collection"),
        ("TA0011", "Command and Control"),
        ("TA0010", "Exfiltration"),
        ("TA0040", "Impact"),
    )
)
TACTIC_BY_ID = {t.uid: t for t in TACTICS}


@dataclass(frozen=True)
class Technique:
    uid: str
    name: str
    # Tactic ids, the one a network view shows first.
    tactics: tuple[str, ...]

    @property
    def parent(self) -> str:
        """The technique a sub-technique belongs to ("T1021.002" -> "T1021"); itself otherwise."""
        return self.uid.split(".", 1)[0]


_ROWS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("T1003", "OS Credential Dumping", ("TA0006",)),
    ("T1003.006", "DCSync", ("TA0006",)),
    ("T1012", "Query Registry", ("TA0007",)),
    ("T1018", "Remote System Discovery", ("TA0007",)),
    ("T1021", "Remote Services", ("TA0008",)),
    ("T1021.001", "Remote Desktop Protocol", ("TA0008",)),
    ("T1021.002", "SMB/Windows Admin Shares", ("TA0008",)),
    ("T1021.003", "Distributed Component Object Model", ("TA0008",)),
    ("T1021.006", "Windows Remote Management", ("TA0008",)),
    ("T1029", "Scheduled Transfer", ("TA0010",)),
    ("T1036", "Masquerading", ("TA0005",)),
    ("T1041", "Exfiltration Over C2 Channel", ("TA0010",)),
    ("T1046", "Network Service Discovery", ("TA0007",)),
    ("T1047", "Windows Management Instrumentation", ("TA0002",)),
    ("T1048", "Exfiltration Over Alternative Protocol", ("TA0010",)),
    ("T1048.003", "Exfiltration Over Unencrypted Non-C2 Protocol", ("TA0010",)),
    ("T1049", "System Network Connections Discovery", ("TA0007",)),
    ("T1053", "Scheduled Task/Job", ("TA0002", "TA0003", "TA0004")),
    ("T1053.005", "Scheduled Task", ("TA0002", "TA0003", "TA0004")),
    ("T1059", "Command and Scripting Interpreter", ("TA0002",)),
    ("T1059.001", "PowerShell", ("TA0002",)),
    ("T1069", "Permission Groups Discovery", ("TA0007",)),
    ("T1069.002", "Domain Groups", ("TA0007",)),
    ("T1071", "Application Layer Protocol", ("TA0011",)),
    ("T1071.001", "Web Protocols", ("TA0011",)),
    ("T1071.004", "DNS", ("TA0011",)),
    ("T1078", "Valid Accounts", ("TA0001", "TA0005", "TA0003", "TA0004")),
    ("T1078.002", "Domain Accounts", ("TA0001", "TA0005", "TA0003", "TA0004")),
    ("T1087", "Account Discovery", ("TA0007",)),
    ("T1087.002", "Domain Account", ("TA0007",)),
    ("T1095", "Non-Application Layer Protocol", ("TA0011",)),
    ("T1110", "Brute Force", ("TA0006",)),
    ("T1110.003", "Password Spraying", ("TA0006",)),
    ("T1112", "Modify Registry", ("TA0005", "TA0003")),
    ("T1133", "External Remote Services", ("TA0001", "TA0003")),
    ("T1135", "Network Share Discovery", ("TA0007",)),
    ("T1187", "Forced Authentication", ("TA0006",)),
    ("T1200", "Hardware Additions", ("TA0001",)),
    ("T1207", "Rogue Domain Controller", ("TA0005",)),
    ("T1210", "Exploitation of Remote Services", ("TA0008",)),
    ("T1543", "Create or Modify System Process", ("TA0003", "TA0004")),
    ("T1543.003", "Windows Service", ("TA0003", "TA0004")),
    ("T1546", "Event Triggered Execution", ("TA0004", "TA0003")),
    ("T1546.003", "Windows Management Instrumentation Event Subscription", ("TA0003", "TA0004")),
    ("T1558", "Steal or Forge Kerberos Tickets", ("TA0006",)),
    ("T1558.003", "Kerberoasting", ("TA0006",)),
    ("T1559", "Inter-Process Communication", ("TA0002",)),
    ("T1559.001", "Component Object Model", ("TA0002",)),
    ("T1569", "System Services", ("TA0002",)),
    ("T1569.002", "Service Execution", ("TA0002",)),
    ("T1572", "Protocol Tunneling", ("TA0011",)),
    ("T1573", "Encrypted Channel", ("TA0011",)),
    ("T1573.002", "Asymmetric Cryptography", ("TA0011",)),
    ("T1587", "Develop Capabilities", ("TA0042",)),
    ("T1587.001", "Malware", ("TA0042",)),
    ("T1595", "Active Scanning", ("TA0043",)),
    ("T1595.002", "Vulnerability Scanning", ("TA0043",)),
)
TECHNIQUES: dict[str, Technique] = {uid: Technique(uid, name, tactics) for uid, name, tactics in _ROWS}


def technique(uid: str) -> Technique:
    """The technique for an id; an id missing from the table keeps its id as its name and no tactic."""
    return TECHNIQUES.get(uid) or Technique(uid, uid, ())
