"""Telemetry records → what each internal device did, as catalog feature observations (pure functions).

An observation names the acting device by address (the originator of the flow, or of the connection an
application record rode on) and lists ``(feature, member, example, amount)`` items: ``member`` is the thing a
set feature counts distinct (a host, a ``host:port`` target, a query name), ``None`` for a plain count that
grows by ``amount``; ``example`` is what a breach shows an analyst.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

from master.catalog import (
    ADMIN_AUTH_FAILURES,
    ANSWERED_DESTINATIONS,
    AUTH_FAILURES,
    DCOM_CALLS,
    ENUM_CALLS,
    ENUM_HOSTS,
    ENUM_LISTINGS,
    EXTERNAL_UPLOAD,
    FAILED,
    FAILED_EXTERNAL,
    FAILED_KERBEROS_PRINCIPALS,
    HALF_OPEN,
    INTERNAL_DESTINATIONS,
    INTERNAL_TARGETS,
    LDAP_BINDS,
    LDAP_ENTRIES,
    LDAP_SEARCHES,
    NULL_SESSIONS,
    PRIVILEGED_GROUPS,
    PTR_QUERIES,
    RC4_SERVICE_TICKETS,
    RDP_DESTINATIONS,
    RDP_PORT,
    SCM_HOSTS,
    SENSITIVE_PORTS,
    SENSITIVE_TARGETS,
    SMB_DESTINATIONS,
    SMB_PORTS,
    TOOL_REQUESTS,
    TUNNEL_NAMES,
    TXT_PAYLOADS,
    UDP_TARGETS,
    UNANSWERED_DESTINATIONS,
    USERNAMES,
    WINRM_REQUESTS,
)
from master.features import ip_text
from master.rpc import (
    DCOM_AUTOMATION,
    MEMBER_LISTINGS,
    PRIVILEGED_RIDS,
    ROASTABLE_CIPHERS,
    RPC_FEATURES,
    SPRAY_ERRORS,
    WHOLE_LISTINGS,
)
from master.signatures import (
    C2Fingerprint,
    http_c2_fingerprint,
    is_admin_account,
    tls_c2_fingerprint,
    tool_fingerprint,
)
from vigil.flow.v1 import flow_pb2, kerberos_pb2, ldap_pb2, smb_pb2
from vigil.sensor.v1 import sensor_pb2


# (feature, member, example, amount) or, when one remote endpoint is what a response would block,
# (feature, member, example, amount, "ip:port").
class Observation(NamedTuple):
    """One thing a record adds to its device's window: an event counted ``amount`` times (``member``
    None) or one member of a set feature; ``example`` is what a breach shows of it, ``peer`` the remote
    endpoint when the feature is a volume to one place."""

    feature: str
    member: str | None
    example: str
    amount: int = 1
    peer: str = ""


DNS_PTR = 12
DNS_TXT = 16
# A TXT answer this long carries data (a stager chunk, a command); SPF and verification records of the
# domains a workstation looks up are rarer and shorter.
TXT_PAYLOAD_MIN_CHARS = 100
# A DNS name whose subdomain part is at least this long and this random carries data, not a host name.
TUNNEL_MIN_CHARS = 25
TUNNEL_MIN_ENTROPY_BITS = 3.3
BROWSER_MARK = "mozilla/"
WSMAN_PATH = "/wsman"


# The per-record observations are plain slotted dataclasses, not frozen ones: a frozen dataclass sets each
# field through object.__setattr__, and these are built once per record. Nothing changes them after.
@dataclass(slots=True)
class FlowObs:
    t: float
    uid: str
    orig_ip: str
    orig_mac: str | None
    resp_ip: str
    resp_mac: str | None
    resp_port: int
    transport: int
    ip_proto: int
    orig_bytes: int
    resp_bytes: int
    failed: bool
    answered: bool
    half_open: bool
    orig_internal: bool
    resp_internal: bool
    # Cloud flow logs: the instance (or interface) the log belongs to, and the address it holds.
    cloud_id: str = ""
    cloud_ip: str = ""
    # The VPN protocol the sensor recognised by its handshake, whatever the port (OpenVPN on 443), or "".
    vpn_protocol: str = ""
    # The originator sent packets (orig_pkts > 0). A flow whose "originator" only received (the sensor
    # oriented datagrams from a server port towards it) is nothing that device did.
    orig_sent: bool = True
    # The sensor named the application protocol (conn.log's service).
    service_known: bool = False
    timer: SessionTimer | None = None


class SessionTimer(NamedTuple):
    """The originator's messages inside one connection (sensor/messages.py): how many, and the mean and
    spread of the time between the starts of consecutive ones."""

    messages: int
    intervals: int
    mean_s: float
    stdev_s: float

    @property
    def cv(self) -> float:
        return self.stdev_s / self.mean_s if self.mean_s > 0 else math.inf


def session_timer(messages: int, intervals: int, mean_s: float, stdev_s: float) -> SessionTimer | None:
    """The timer a flow record reports, or None when it reports none or nothing that can be a time (the
    bus carries what any sender wrote)."""
    if intervals < 2 or not (math.isfinite(mean_s) and math.isfinite(stdev_s)) or mean_s <= 0 or stdev_s < 0:
        return None
    return SessionTimer(messages, intervals, mean_s, stdev_s)


@dataclass(frozen=True, slots=True)
class UploadObs:
    """A mail message or a file a device sent in clear text (SMTP without STARTTLS, an FTP upload): for
    the transfer model, which asks how rare the server is."""

    protocol: str
    resp_ip: str
    resp_port: int
    size: int
    # The account it logged on with ("" when it named none), and what was sent, for the explanation.
    account: str
    what: str

    def text(self) -> str:
        # What was sent first: an explanation quotes the start of an example.
        account = f" as {self.account[:60]}" if self.account else ""
        return f"{self.what} ({self.size} B by {self.protocol} to {self.resp_ip}:{self.resp_port}{account})"


def upload_obs(record: sensor_pb2.Record, kind: str, resp_ip: str) -> UploadObs | None:
    """The clear-text upload an SMTP transaction or an FTP command record shows, or None."""
    port = record.resp.port
    if kind == "smtp":
        mail = record.smtp
        if mail.tls or not mail.data_bytes:
            return None
        subject = f", subject {mail.subject[:60]!r}" if mail.subject else ""
        what = f"a mail to {', '.join(r[:60] for r in mail.rcptto[:3]) or '?'}{subject}"
        return UploadObs("SMTP", resp_ip, port, int(mail.data_bytes), mail.auth_user, what)
    if kind == "ftp":
        ftp = record.ftp
        if not ftp.upload:
            return None
        size = int(ftp.data_bytes or ftp.file_size)
        return UploadObs("FTP", resp_ip, port, size, ftp.user, f"{ftp.command} {ftp.arg[:80]}")
    return None


@dataclass(slots=True)
class HttpObs:
    """An HTTP request (for the beacon and command-and-control models)."""

    host: str
    resp_ip: str
    resp_port: int
    user_agent: str
    octet_stream: bool
    response_bytes: int
    # The server is inside the network (internal beacons only).
    internal: bool = False

    @property
    def peer(self) -> str:
        return f"{self.resp_ip}:{self.resp_port}"

    @property
    def browser(self) -> bool:
        return BROWSER_MARK in self.user_agent.lower()


@dataclass(slots=True)
class C2Obs:
    """A request or certificate bearing a command-and-control framework's default fingerprint."""

    fingerprint: C2Fingerprint
    # The server as the request named it (HTTP host) or its address, and "ip:port".
    host: str
    peer: str


@dataclass(slots=True)
class Act:
    """One record's contribution to its device's window."""

    t: float
    ip: str
    mac: str | None
    uid: str
    items: tuple[Observation, ...]
    # From an application record (the device may not have a flow yet).
    app: bool = False
    flow: FlowObs | None = None
    http: HttpObs | None = None
    # SMB dialect negotiated.
    smb: SmbDialectObs | None = None
    c2: C2Obs | None = None
    upload: UploadObs | None = None


# VPN transports by port (OpenVPN, WireGuard, IKE/IPsec NAT-T, L2TP, PPTP) and by IP protocol (ESP, GRE).
VPN_UDP_PORTS = frozenset({1194, 51820, 500, 4500, 1701})
VPN_TCP_PORTS = frozenset({1194, 1723})
VPN_IP_PROTOCOLS = frozenset({47, 50})


# Services the sensor names only once a VPN handshake was answered in kind (sensor/protocols/openvpn,
# sensor/protocols/wireguard): they catch a tunnel moved to an innocuous port.
VPN_SERVICES = frozenset({"openvpn", "wireguard"})


def is_vpn(f: FlowObs) -> bool:
    if f.vpn_protocol or f.ip_proto in VPN_IP_PROTOCOLS:
        return True
    if f.transport == flow_pb2.TRANSPORT_UDP:
        return f.resp_port in VPN_UDP_PORTS
    return f.transport == flow_pb2.TRANSPORT_TCP and f.resp_port in VPN_TCP_PORTS


def is_half_open(history: str) -> bool:
    """SYN, SYN-ACK, then the originator's reset with nothing else from it: a SYN ("stealth") scan probe."""
    return history.startswith("Sh") and "R" in history and not any(c in history for c in "ADF")


def flow_items(f: FlowObs) -> tuple[Observation, ...]:
    items: list[Observation] = []
    target = f"{f.resp_ip}:{f.resp_port}" if f.resp_port else f.resp_ip
    if f.resp_internal and f.resp_ip != f.orig_ip:
        items.append(Observation(INTERNAL_DESTINATIONS, f.resp_ip, target, 1))
        if f.resp_port:
            items.append(Observation(INTERNAL_TARGETS, f"{target}/{f.transport}", target, 1))
        if f.answered:
            items.append(Observation(ANSWERED_DESTINATIONS, f.resp_ip, "", 1))
        else:
            items.append(Observation(UNANSWERED_DESTINATIONS, f.resp_ip, target, 1))
        if f.transport == flow_pb2.TRANSPORT_TCP:
            if f.resp_port in SENSITIVE_PORTS:
                items.append(Observation(SENSITIVE_TARGETS, target, target, 1))
            if f.resp_port in SMB_PORTS:
                items.append(Observation(SMB_DESTINATIONS, f.resp_ip, target, 1))
            elif f.resp_port == RDP_PORT:
                items.append(Observation(RDP_DESTINATIONS, f.resp_ip, target, 1))
        elif f.transport == flow_pb2.TRANSPORT_UDP:
            items.append(Observation(UDP_TARGETS, target, target, 1))
    elif not f.resp_internal:
        if f.failed:
            items.append(Observation(FAILED_EXTERNAL, target, target, 1))
        if f.orig_bytes >= 1024:
            sent = f"{f.orig_bytes / 1e6:.1f} MB to {target}"
            items.append(
                Observation(EXTERNAL_UPLOAD, None, sent, f.orig_bytes // 1024, f"{f.resp_ip}:{f.resp_port}")
            )
    if f.failed:
        items.append(Observation(FAILED, None, target, 1))
    if f.half_open:
        items.append(Observation(HALF_OPEN, None, target, 1))
    return tuple(items)


def app_items(record: sensor_pb2.Record, kind: str) -> tuple[Observation, ...]:
    """Features an application record adds to its originator's window (empty for most records)."""
    if kind == "dns":
        dns = record.dns
        name = dns.query.lower().rstrip(".")
        if not name:
            return ()
        if dns.qtype == DNS_TXT:
            chars = sum(len(a.value) for a in dns.answers if a.rr_type == DNS_TXT)
            if chars >= TXT_PAYLOAD_MIN_CHARS:
                return (Observation(TXT_PAYLOADS, name, f"{name[:80]} (TXT, {chars} characters)"),)
        if dns.qtype == DNS_PTR:
            return (Observation(PTR_QUERIES, name, name, 1),)
        if looks_tunnelled(name):
            return (Observation(TUNNEL_NAMES, name, name[:80], 1),)
    elif kind == "ldap":
        ldap = record.ldap
        if ldap.opcode == "bind" and counts_as_bind(ldap):
            return (Observation(LDAP_BINDS, None, bind_text(ldap), 1),)
    elif kind == "ldap_search":
        search = record.ldap_search
        if search.scope == "base" and not search.base_object:
            # The root DSE: every client reads it first, and Windows' DC locator asks it for Netlogon.
            return ()
        text = f"{search.base_object or '(root)'} {search.filter}".strip()
        searched: list[Observation] = [Observation(LDAP_SEARCHES, None, text, 1)]
        if search.scope == "tree" and search.result_count and naming_context(search.base_object):
            entries = f"{search.result_count} entries of {search.base_object} matching {search.filter[:80]}"
            searched.append(Observation(LDAP_ENTRIES, None, entries, int(search.result_count)))
        return tuple(searched)
    elif kind == "ntlm":
        ntlm = record.ntlm
        if not ntlm.carrier.startswith("smb"):
            return ()
        user = f"{ntlm.domain}\\{ntlm.username}" if ntlm.domain else ntlm.username
        if not user and not ntlm.hostname:
            return null_session_items(record)
        items: list[Observation] = []
        if ntlm.username:
            items.append(Observation(USERNAMES, user.lower(), user, 1))
        if ntlm.HasField("success") and not ntlm.success:
            items.append(Observation(AUTH_FAILURES, None, user, 1))
            if is_admin_account(ntlm.username):
                items.append(Observation(ADMIN_AUTH_FAILURES, None, user, 1))
        return tuple(items)
    elif kind == "smb_session_setup":
        return smb1_logon_items(record.smb_session_setup, ip_text(record.resp.ip) or "?")
    elif kind == "dce_rpc":
        return rpc_items(record)
    elif kind == "kerberos":
        return kerberos_items(record.kerberos)
    elif kind == "http":
        http = record.http
        if http.uri.lower().startswith(WSMAN_PATH):
            # WS-Management: PowerShell Remoting and WinRM commands run on the server.
            server = ip_text(record.resp.ip) or http.host
            text = f"{http.method} {http.uri[:48]} to {server}:{record.resp.port} ({http.user_agent[:40]})"
            return (Observation(WINRM_REQUESTS, None, text, 1, server),)
        found = tool_fingerprint(http.user_agent, http.uri)
        if found is not None:
            return (Observation(TOOL_REQUESTS, None, found, 1),)
    return ()


# SMB1 logons without NTLMSSP (old tools: Metasploit's smb_login, hydra, nmap's smb-brute) carry their
# account in the session setup itself; NTLMSSP logons ("ntlm") are counted from their NTLM record.
_SMB1_LOGONS = frozenset({"lm", "ntlmv1", "ntlmv2", "plaintext"})


def null_session_items(record: sensor_pb2.Record) -> tuple[Observation, ...]:
    """An NTLM logon over SMB that named no account, no domain and no workstation: the null session that
    enumeration tools (CrackMapExec, Impacket's) open. Windows names its workstation even when it falls
    back to an anonymous logon (a coerced server does: the printer-bug capture), so that one is not."""
    server = ip_text(record.resp.ip) or "?"
    return (Observation(NULL_SESSIONS, server, f"anonymous (null session) NTLM logon to {server}"),)


def smb1_logon_items(setup: smb_pb2.SmbSessionSetup, server: str) -> tuple[Observation, ...]:
    """A logon that named its account without NTLMSSP: the name tried and, when refused, a failure;
    one that named nothing at all, a null session."""
    if setup.auth_mechanism == "anonymous":
        return (Observation(NULL_SESSIONS, server, f"anonymous SMB1 logon to {server}"),)
    if setup.auth_mechanism not in _SMB1_LOGONS or not setup.username:
        return ()
    user = f"{setup.domain}\\{setup.username}" if setup.domain else setup.username
    found = [Observation(USERNAMES, user.lower(), user)]
    if setup.status != 0:
        found.append(Observation(AUTH_FAILURES, None, f"{user} ({setup.auth_mechanism})"))
        if is_admin_account(setup.username):
            found.append(Observation(ADMIN_AUTH_FAILURES, None, f"{user} ({setup.auth_mechanism})"))
    return tuple(found)


def rpc_items(record: sensor_pb2.Record) -> tuple[Observation, ...]:
    """A remote procedure call the catalog cares about (master/rpc.py), counted for its caller."""
    call = record.dce_rpc
    feature = RPC_FEATURES.get((call.endpoint, call.operation))
    server = ip_text(record.resp.ip) or "?"
    text = f"{call.endpoint} {call.operation} on {server}"
    if call.dcom and call.endpoint in ("", DCOM_AUTOMATION):
        what = f"{call.endpoint} {call.operation}" if call.endpoint else f"{call.operation} (bind not seen)"
        return (Observation(DCOM_CALLS, None, f"DCOM {what} on {server}", 1, server),)
    found: list[Observation] = []
    group = PRIVILEGED_RIDS.get(call.rid) if call.HasField("rid") else None
    if group is not None and (call.endpoint, call.operation) in MEMBER_LISTINGS:
        # Listing a privileged group's members is also one enumeration call like any other.
        found.append(Observation(PRIVILEGED_GROUPS, f"{server}:{call.rid}", f"{text}: {group}"))
    if feature is None:
        pass
    elif feature == SCM_HOSTS:
        found.append(Observation(SCM_HOSTS, server, text))
    elif feature == ENUM_CALLS:
        found += [Observation(ENUM_CALLS, None, text), Observation(ENUM_HOSTS, server, text)]
        if (call.endpoint, call.operation) in WHOLE_LISTINGS:
            found.append(Observation(ENUM_LISTINGS, None, text))
    else:
        found.append(Observation(feature, None, text, 1, server))
    return tuple(found)


def kerberos_items(krb: kerberos_pb2.KerberosRecord) -> tuple[Observation, ...]:
    """Failed AS logons per account (password spraying), RC4 service tickets per service (Kerberoasting)."""
    if krb.request_type == "AS" and krb.error_msg in SPRAY_ERRORS and krb.client:
        client = krb.client.lower()
        return (Observation(FAILED_KERBEROS_PRINCIPALS, client, f"{krb.client} ({krb.error_msg})"),)
    if krb.request_type != "TGS" or not krb.service or krb.service.lower().startswith("krbtgt/"):
        return ()
    # Issued with a crackable cipher, or asked for one and nothing else (Rubeus, GetUserSPNs downgrade).
    asked_weak_only = bool(krb.client_ciphers) and all(c in ROASTABLE_CIPHERS for c in krb.client_ciphers)
    if krb.cipher in ROASTABLE_CIPHERS or asked_weak_only:
        how = krb.cipher or "no reply seen"
        if asked_weak_only:
            how += ", asked for " + "/".join(krb.client_ciphers) + " only"
        example = f"{krb.service} ({how}) for {krb.client}"
        return (Observation(RC4_SERVICE_TICKETS, krb.service.lower(), example),)
    return ()


# The sensor's name for result 14 (Zeek's spelling): a leg of a SASL bind that goes on.
LDAP_BIND_IN_PROGRESS = "SASL bind in progress"
# Binds a domain member makes with its own Kerberos ticket (the machine at start-up, the user at logon,
# group policy): several a minute at every logon, the directory's everyday traffic.
DOMAIN_MEMBER_BINDS = frozenset({"SASL GSS-SPNEGO", "SASL GSSAPI"})


def counts_as_bind(ldap: ldap_pb2.LdapMessage) -> bool:
    """A bind the enumeration model counts: one per bind (a multi-leg SASL bind counts at its end), and
    not the domain member's own successful Kerberos binds - a failed one counts whatever its kind."""
    if ldap.result == LDAP_BIND_IN_PROGRESS:
        return False
    return not (ldap.argument in DOMAIN_MEMBER_BINDS and ldap.result == "success")


def bind_text(ldap: ldap_pb2.LdapMessage) -> str:
    """What kind of bind happened, for explanations: "simple bind as cn=admin,dc=corp (success)"."""
    mechanism = ldap.argument or "simple"
    if mechanism == "simple" and not ldap.object:
        mechanism = "anonymous simple"
    who = f" as {ldap.object}" if ldap.object else ""
    return f"{mechanism} bind{who} ({ldap.result or 'no reply seen'})"


def naming_context(dn: str) -> bool:
    """A DN made only of domain components (DC=corp,DC=example): the top of a directory partition."""
    parts = [p.strip() for p in dn.split(",") if p.strip()]
    return bool(parts) and all(p[:3].lower() == "dc=" for p in parts)


def _entropy_bits(text: str) -> float:
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_tunnelled(name: str) -> bool:
    """A name whose subdomain (all but the last two labels) is long and near-random: encoded data."""
    labels = name.split(".")
    if len(labels) < 3:
        return False
    sub = "".join(labels[:-2])
    return len(sub) >= TUNNEL_MIN_CHARS and _entropy_bits(sub) >= TUNNEL_MIN_ENTROPY_BITS


SMB_FAMILY = {smb_pb2.SMB_VERSION_1: "SMBv1", smb_pb2.SMB_VERSION_2: "SMBv2", smb_pb2.SMB_VERSION_3: "SMBv3"}


@dataclass(slots=True)
class SmbDialectObs:
    """The SMB dialect a connection negotiated, and whether its client could have spoken SMB 2 or 3."""

    family: str
    dialect: str
    # The client offered an SMB 2/3 dialect too: SMBv1 was the server's choice (Windows falls back for an
    # old server), not the mark of a tool or worm that speaks nothing else.
    client_speaks_smb2: bool


def smb_dialect(record: sensor_pb2.Record) -> SmbDialectObs | None:
    neg = record.smb_negotiate
    family = SMB_FAMILY.get(neg.version)
    if family is None:
        return None
    smb2 = any(d.startswith("SMB 2") or d.startswith("SMB 3") for d in neg.offered_dialects)
    return SmbDialectObs(family, neg.negotiated_dialect or family, smb2)


def c2_obs(record: sensor_pb2.Record, resp_ip: str, http: HttpObs | None) -> C2Obs | None:
    """The C2 fingerprint an HTTP request (``http``: its observation) or a TLS server certificate bears."""
    if http is not None:
        req = record.http
        found = http_c2_fingerprint(
            req.method, req.uri, http.user_agent, http.response_bytes, http.octet_stream
        )
        return C2Obs(found, http.host, http.peer) if found is not None else None
    tls = record.tls
    found = tls_c2_fingerprint(tls.subject, tls.issuer)
    return (
        C2Obs(found, tls.server_name or resp_ip, f"{resp_ip}:{record.resp.port}")
        if found is not None
        else None
    )


def http_obs(record: sensor_pb2.Record, resp_ip: str, internal: bool = False) -> HttpObs:
    http = record.http
    mimes = [*http.resp_mime_types, http.response_content_type]
    return HttpObs(
        host=(http.host or resp_ip).lower(),
        resp_ip=resp_ip,
        resp_port=record.resp.port,
        user_agent=http.user_agent,
        octet_stream=any(m.startswith("application/octet-stream") for m in mimes),
        response_bytes=int(http.response_body_len),
        internal=internal,
    )
