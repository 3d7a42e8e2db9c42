"""Fingerprints that attack and reconnaissance tools leave in HTTP requests, and account names that matter.

These are facts about the tools (what their default user agents and probe paths are), used as one count
feature (``attack_tool_requests``) that the self-learning model weighs like any other: a vulnerability
scanner that runs every night becomes that device's normal; the same requests from a laptop do not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


# -- command-and-control frameworks' default fingerprints ------------------------------------------
# Facts from the frameworks' published defaults and public detection content. Each needs two independent
# marks (a profile path *and* the framework's user agent, or a stager's checksum *and* its size): one alone
# is something a real site or browser also shows.
@dataclass(frozen=True)
class C2Fingerprint:
    framework: str
    # What was seen, for the breach's explanation.
    evidence: str
    # A fingerprint strong enough alone (a certificate, a stager); profile requests need a second request.
    conclusive: bool


# Empire's default HTTP listener: three profile paths, and Internet Explorer 11 on Windows 7.
_EMPIRE_PATHS = frozenset({"/admin/get.php", "/news.php", "/login/process.php"})
_EMPIRE_AGENT = "mozilla/5.0 (windows nt 6.1; wow64; trident/7.0; rv:11.0) like gecko"
# Covenant's default HTTP profile: three pages under /en-us/, and Chrome 41 on Windows 7.
_COVENANT_PATHS = frozenset({"/en-us/index.html", "/en-us/docs.html", "/en-us/test.html"})
_COVENANT_AGENT = "chrome/41.0.2228.0"
# Cobalt Strike's default profile: the beacon picks one of these GET paths and posts to /submit.php?id=N,
# under an Internet Explorer ("compatible; MSIE") user agent.
_COBALT_GET_PATHS = frozenset(
    {
        "/ca", "/dpixel", "/__utm.gif", "/pixel.gif", "/g.pixel", "/dot.gif", "/updates.rss", "/fwlink",
        "/cm", "/cx", "/pixel", "/match", "/visit.js", "/load", "/push", "/ptj", "/j.ad", "/ga.js",
        "/en_us/all.js", "/activity", "/ie9compatviewlist.xml",
    }
)  # fmt: skip
_COBALT_SUBMIT = re.compile(r"/submit\.php\?id=\d+$")
# Cobalt Strike's public "jquery-c2" profile posts its results to a .min.js with a __cfduid parameter.
_COBALT_JQUERY_POST = re.compile(r"/jquery-\d+\.\d+\.\d+\.min\.js\?__cfduid=")
# Stagers (Cobalt Strike, Metasploit) fetch a four-character path whose byte sum modulo 256 is 92 (x86)
# or 93 (x64); the stage is a large binary.
_STAGER_PATH = re.compile(r"/[A-Za-z0-9]{4}$")
_STAGER_SUMS = {92: "x86", 93: "x64"}
STAGER_MIN_BYTES = 100_000
# Default certificates: names the builders put in the server certificates they generate.
_C2_CERT_NAMES = (
    ("CN=AsyncRAT Server", "AsyncRAT"),
    ("DcRat By qwqdanchun", "DcRat"),
    ("CN=DcRat Server", "DcRat"),
    ("CN=Quasar Server CA", "Quasar"),
    # PoshC2's generated certificate (O=Pajfds, OU=Jethpro, CN=P18055077).
    ("O=Pajfds", "PoshC2"),
)
# Cobalt Strike's default keystore: every name attribute present and empty.
_EMPTY_NAME = "CN=,OU=,O=,L=,ST=,C="


def http_c2_fingerprint(
    method: str, uri: str, user_agent: str, response_bytes: int, octet_stream: bool
) -> C2Fingerprint | None:
    """A request bearing a C2 framework's default marks, or None."""
    agent = user_agent.lower()
    path = uri.split("?", 1)[0].lower()
    if path in _EMPIRE_PATHS and agent == _EMPIRE_AGENT:
        return C2Fingerprint("Empire", f"{method} {path} with Empire's default IE 11 user agent", False)
    if path in _COVENANT_PATHS and _COVENANT_AGENT in agent:
        what = f"{method} {path} with Covenant's default Chrome 41 user agent"
        return C2Fingerprint("Covenant", what, False)
    if "compatible; msie" in agent:
        if method == "GET" and path in _COBALT_GET_PATHS:
            what = f"GET {path} (default profile) with an MSIE user agent"
            return C2Fingerprint("Cobalt Strike", what, False)
        if method == "POST" and _COBALT_SUBMIT.match(uri):
            return C2Fingerprint("Cobalt Strike", f"POST {uri[:40]} (default profile)", False)
    if method == "POST" and _COBALT_JQUERY_POST.match(uri):
        # No site posts to a versioned jQuery file with a Cloudflare cookie name as its query: alone enough.
        return C2Fingerprint("Cobalt Strike", f"POST {uri[:60]} (jquery-c2 profile)", True)
    if method == "GET" and _STAGER_PATH.match(uri) and response_bytes >= STAGER_MIN_BYTES:
        arch = _STAGER_SUMS.get(sum(uri[1:].encode()) % 256)
        if arch is not None:
            kind = "application/octet-stream" if octet_stream else "binary"
            return C2Fingerprint(
                "Cobalt Strike / Metasploit stager",
                f"GET {uri} (checksum8 {arch} stager URI) returning {response_bytes / 1e3:.0f} kB of {kind}",
                True,
            )
    return None


def name_attributes(name: str) -> dict[str, str]:
    """The attributes of an RFC 4514 name ("CN=x,O=Smith\\, Jones,C=US"), each type once (the last
    wins); escaped characters are kept as their character."""
    out: dict[str, str] = {}
    key: list[str] = []
    value: list[str] = []
    escaped = in_value = False
    for ch in name[:1024]:
        if escaped:
            (value if in_value else key).append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "=" and not in_value:
            in_value = True
        elif ch in ",+" and in_value:
            out["".join(key).strip()] = "".join(value)
            key, value, in_value = [], [], False
        else:
            (value if in_value else key).append(ch)
    if in_value:
        out["".join(key).strip()] = "".join(value)
    return out


_STATE = re.compile(r"[A-Z]{2}$")
_DOMAIN_SUFFIX = re.compile(r"\.[a-z]{2,}(\.[a-z]{2,})?$")


def is_metasploit_certificate(subject: str, issuer: str) -> bool:
    """Metasploit's generated handler certificate (lib/msf/core/cert_provider.rb): self-signed, C=US, a
    two-letter state, and names derived from one another: the CN is the organisation lower-cased with
    "and" dropped and every run of other characters made a dot, plus a domain suffix; the e-mail address
    is the OU at the CN. Random names chosen this way do not otherwise agree on all of that."""
    if not subject or subject != issuer:
        return False
    a = name_attributes(subject)
    org, ou, cn = a.get("O", ""), a.get("OU", ""), a.get("CN", "")
    if a.get("C") != "US" or not _STATE.match(a.get("ST", "")) or not (org and ou and cn):
        return False
    stem = re.sub(r"\W+", ".", org.lower().replace("and", ""))
    rest = cn[len(stem) :] if cn.startswith(stem) else ""
    return bool(_DOMAIN_SUFFIX.fullmatch(rest)) and a.get("emailAddress") == f"{ou}@{cn}"


def tls_c2_fingerprint(subject: str, issuer: str) -> C2Fingerprint | None:
    """A server certificate a C2 framework generates by default, or None."""
    for name, framework in _C2_CERT_NAMES:
        if name in subject or name in issuer:
            return C2Fingerprint(framework, f"{framework}'s default certificate ({subject or issuer})", True)
    if subject == _EMPTY_NAME and issuer == _EMPTY_NAME:
        return C2Fingerprint("Cobalt Strike", "Cobalt Strike's default certificate (every name empty)", True)
    if is_metasploit_certificate(subject, issuer):
        what = f"Metasploit's generated handler certificate ({subject[:120]})"
        return C2Fingerprint("Metasploit", what, True)
    return None
