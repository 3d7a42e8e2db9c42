"""How ATT&CK tactics fold into the kill-chain phases an incident is told in, and which phase a breach is in.

The technique -> tactic facts are master/attack.py's (the exports read the same table). Where a technique
serves several tactics, the one a network sensor sees it for comes first: that one gives the breach its
phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from master.attack import TACTIC_BY_ID, TACTICS, technique
from master.catalog import SIGNIFICANT_ANOMALY

_TACTIC_ORDER = {t.uid: i for i, t in enumerate(TACTICS)}

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


def tactic_ids(techniques: Iterable[str]) -> list[str]:
    """ATT&CK tactic ids of the techniques, in matrix order (unknown techniques add nothing)."""
    found = {tactic for t in techniques for tactic in technique(t).tactics}
    return sorted(found, key=_TACTIC_ORDER.__getitem__)


def tactics_of(techniques: Iterable[str]) -> list[str]:
    """The same tactics by name ("credential-access")."""
    return [TACTIC_BY_ID[uid].slug for uid in tactic_ids(techniques)]


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
    for uid in techniques:
        tactics = technique(uid).tactics
        if tactics:
            return PHASE_OF_TACTIC[TACTIC_BY_ID[tactics[0]].slug]
    return ""


def in_kill_chain_order(phases: Iterable[str]) -> list[str]:
    return sorted({p for p in phases if p in _PHASE_ORDER}, key=_PHASE_ORDER.__getitem__)
