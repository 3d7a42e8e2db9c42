"""Fingerprints that attack and reconnaissance tools leave in HTTP requests, and account names that matter.

These are facts about the tools (what their default user agents and probe paths are), used as one count
feature (``attack_tool_requests``) that the self-learning model weighs like any other: a vulnerability
scanner that runs every night becomes that device's normal; the same requests from a laptop do not.
"""

from __future__ import annotations

import re

# Default User-Agent substrings of scanners and attack tools (case-insensitive).
_TOOL_AGENTS = (
    "nmap scripting engine",
    "nmap nse",
    "masscan",
    "zgrab",
    "nikto",
    "sqlmap",
    "gobuster",
    "dirbuster",
    "feroxbuster",
    "wfuzz",
    "ffuf",
    "wpscan",
    "nuclei",
    "hydra",
    "openvas",
    "acunetix",
    "netsparker",
    "burp collaborator",
    "metasploit",
    "commix",
    "fimap",
    "whatweb",
    "skipfish",
    "arachni",
    "crackmapexec",
)
_TOOL_AGENT_RE = re.compile("|".join(re.escape(a) for a in _TOOL_AGENTS), re.IGNORECASE)

# Request paths Nmap's service and script probes ask for; a browser never does.
_TOOL_URIS = (
    "/nice ports,/trinity.txt.bak",
    "/nice%20ports%2c/tri%6eity.txt%2ebak",
    "/nmaplowercheck",
    "/nmapuppercheck",
    "/nmapupper",
    "/hnap1",
    "/evox/about",
    "/sdk",
)
_TOOL_URI_RE = re.compile("|".join(re.escape(u) for u in _TOOL_URIS), re.IGNORECASE)


def tool_fingerprint(user_agent: str, uri: str) -> str | None:
    """What in a request betrays an attack tool (for the breach's examples), or None."""
    match = _TOOL_AGENT_RE.search(user_agent)
    if match:
        return f"user agent {user_agent[:80]!r}"
    match = _TOOL_URI_RE.search(uri)
    if match and (match.end() == len(uri) or uri[match.end()] in "/?"):
        return f"URI {uri[:80]!r}"
    return None


_ADMIN_NAMES = frozenset({"administrator", "admin", "root", "sa", "adm", "superuser", "krbtgt"})


def is_admin_account(username: str) -> bool:
    """An account name that by convention holds administrative rights (built-in or ``adm``-prefixed)."""
    name = username.lower().rsplit("\\", 1)[-1].split("@", 1)[0]
    if name in _ADMIN_NAMES:
        return True
    return name.startswith(("adm-", "adm_", "admin-", "admin_")) or name.endswith(
        ("-adm", "_adm", "-admin", "_admin")
    )
