"""Record benign Windows-domain sessions in the fixed scenario lab: workstations that start up and log on to
a real Active Directory domain, read their group policy, map a share, print, and work for a few minutes.

    python -m tests.lab.scenarios_domain tests/data/scenarios/benign [--only ws1-domain]

Same lab as :mod:`tests.lab.scenarios_benign` (lab id ``5ca1``, same addresses and MACs), so these sessions
compose with the others into one baseline, plus one host: ``helpdesk`` 10.231.1.13 (``02:76:67:5c:a1:0d``),
the IT helpdesk's workstation. Here dc 10.231.2.20 is a Samba Active Directory domain controller for
``corp.example.test`` (realm ``CORP.EXAMPLE.TEST``, NetBIOS domain ``CORP``): Kerberos, LDAP and CLDAP, DNS
(names outside its zone forwarded to a dnsmasq on dc's loopback that knows the lab's other names), SMB with
SYSVOL and NETLOGON, and DCE-RPC. files 10.231.2.21 is a domain member (``net ads join``, winbindd) serving
the share ``projects`` and the printer ``officeprinter`` (no CUPS: the print command deletes the job).
The domain is provisioned offline in a temp dir for every recording (``samba-tool domain provision``, users,
machine accounts, service principal names); what the servers say to each other (join, DNS records) stays
on LAN B, which the capture (tcpdump on br-a, as for every scenario) does not see.

A session is what one workstation does on the wire, with real clients (MIT ``kinit``/``kvno``, OpenLDAP
``ldapsearch -Y GSSAPI``, Samba's ``net ads``, ``smbclient`` and ``rpcclient`` with Kerberos, ``dig``,
``curl``): the machine starts (DC locator: DNS SRV and a CLDAP ping; the computer account's Kerberos logon;
its LDAP object and group-policy links; its policy files from SYSVOL; LSA queries), then the user logs on
(Kerberos, a service ticket for the workstation itself, the user's object, group policy and logon script,
LSA name lookups), Explorer opens the file server once (its share list), the mapped drive and the printer
are used, and a few bounded rounds of ordinary work follow. Each client command runs in the workstation's
namespace with a private ``/etc/resolv.conf`` naming the workstation's own DNS cache (a dnsmasq on its
loopback that asks dc, as Windows' DNS Client service does), and with its own krb5.conf and smb.conf in the
temp dir. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab.netns import Host, HostSpec, in_private_netns_names, lab, unavailable_reason
from tests.lab.scenarios_benign import (
    DC_IP,
    DOMAIN,
    FILES_IP,
    HOSTS_FILE,
    INTERNET_HOSTS,
    LAB_ID,
    LAN_A_HOSTS,
    LAN_B_HOSTS,
    SHARE,
    Office,
    _cdn,
    _lab_when_free,
    _web,
    _write,
    capture,
    curl,
    fix_gateway_macs,
)

HELPDESK_MAC = "02:76:67:5c:a1:0d"
DOMAIN_LAN_A_HOSTS: list[HostSpec] = [*LAN_A_HOSTS, ("helpdesk", HELPDESK_MAC)]
REALM = DOMAIN.upper()
NETBIOS_DOMAIN = "CORP"
BASE_DN = "DC=corp,DC=example,DC=test"
DC_FQDN, FILES_FQDN = f"dc.{DOMAIN}", f"files.{DOMAIN}"
ADMIN_PASSWORD = "Admin-Corp-2026!"
PRINTER = "officeprinter"
# Forwarder for names outside the AD zone: a dnsmasq on dc's loopback (the lab's cdn names).
FORWARDER_IP = "127.0.0.53"
# Each workstation's DNS cache (the DNS Client service's part), on its loopback.
CACHE_IP = "127.0.0.1"
# The two policies every new domain has: Default Domain Policy, Default Domain Controllers Policy.
DEFAULT_DOMAIN_POLICY = "{31B2F340-016D-11D2-945F-00C04FB984F9}"

TOOLS: tuple[str, ...] = ("samba", "samba-tool", "samba_spnupdate", "smbd", "winbindd", "net", "smbclient")
TOOLS += ("rpcclient", "kinit", "kvno", "ldapsearch", "dig", "curl", "dnsmasq", "tcpdump", "openssl")


@dataclass(frozen=True)
class Account:
    """A domain account a workstation uses: a person, or the workstation's computer account (``NAME$``)."""

    name: str
    password: str
    given: str = ""
    surname: str = ""


@dataclass(frozen=True)
class Workstation:
    host: str  # lab host name
    netbios: str
    machine: Account
    user: Account

    @property
    def fqdn(self) -> str:
        return f"{self.host}.{DOMAIN}"


USERS = (
    Account("alice", "Summer-Breeze-26", "Alice", "Example"),
    Account("bob", "Autumn-Leaves-26", "Bob", "Example"),
    Account("helen", "Winter-Frost-26", "Helen", "Desk"),
)
WORKSTATIONS = {
    "ws1": Workstation("ws1", "WS1", Account("WS1$", "Machine-Ws1-Secret-2026"), USERS[0]),
    "ws2": Workstation("ws2", "WS2", Account("WS2$", "Machine-Ws2-Secret-2026"), USERS[1]),
    "helpdesk": Workstation(
        "helpdesk", "HELPDESK", Account("HELPDESK$", "Machine-Helpdesk-Secret-2026"), USERS[2]
    ),
}

LOGON_SCRIPT = "@echo off\r\nrem map the project share\r\nnet use P: \\\\files\\projects /persistent:no\r\n"
SECURITY_TEMPLATE = (
    "[Unicode]\r\nUnicode=yes\r\n[System Access]\r\nMinimumPasswordAge = 1\r\n"
    "MaximumPasswordAge = 42\r\nMinimumPasswordLength = 7\r\nPasswordComplexity = 1\r\n"
    '[Version]\r\nsignature="$CHICAGO$"\r\nRevision=1\r\n'
)


# --- the domain controller (provisioned offline, then started in dc's namespace) ---


def _samba_tool(*args: str, timeout: float = 60) -> str:
    proc = subprocess.run(["samba-tool", *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"samba-tool {' '.join(args[:3])} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def provision_domain(tmp: Path) -> Path:
    """A new domain in ``tmp/dc`` (no network traffic); returns its smb.conf."""
    state = tmp / "dc"
    run = state / "run"
    options = {
        "interfaces": DC_IP,
        "bind interfaces only": "yes",
        "disable netbios": "yes",
        "pid directory": str(run),
        "ncalrpc dir": str(run / "ncalrpc"),
        "log file": str(state / "log" / "%m.log"),
        "dns forwarder": FORWARDER_IP,
        # The provisioned records are complete; the update helpers would ask the host's resolver.
        "dns update command": "/bin/true",
        "spn update command": "/bin/true",
        "load printers": "no",
        "printing": "bsd",
        "printcap name": "/dev/null",
        "disable spoolss": "yes",
        # As a Windows DC without the Kerberos-armoring policy, the KDC does not offer FAST.
        "kdc enable fast": "no",
    }
    (state / "log").mkdir(parents=True)
    _samba_tool(
        "domain", "provision", f"--targetdir={state}", f"--realm={REALM}", f"--domain={NETBIOS_DOMAIN}",
        "--server-role=dc", "--dns-backend=SAMBA_INTERNAL", "--use-rfc2307", f"--adminpass={ADMIN_PASSWORD}",
        "--host-name=dc", f"--host-ip={DC_IP}", *(f"--option={key}={val}" for key, val in options.items()),
        timeout=180,
    )  # fmt: skip
    conf = state / "etc" / "smb.conf"
    local = ("-H", str(state / "private" / "sam.ldb"), "-s", str(conf))
    # The DC's own service names (ldap/dc..., GC/...), which samba would add in the background at start.
    proc = subprocess.run(["samba_spnupdate", "-s", str(conf)], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"samba_spnupdate failed: {proc.stderr.strip()[-500:]}")
    for user in USERS:
        _samba_tool(
            "user", "add", user.name, user.password, f"--given-name={user.given}",
            f"--surname={user.surname}", f"--mail-address={user.name}@{DOMAIN}", *local,
        )  # fmt: skip
    for ws in WORKSTATIONS.values():
        _samba_tool("computer", "add", ws.netbios, *local)
        _samba_tool("user", "setpassword", ws.machine.name, f"--newpassword={ws.machine.password}", *local)
    _supported_enctypes(conf, [f"CN={ws.netbios},CN=Computers,{BASE_DN}" for ws in WORKSTATIONS.values()])
    sysvol = state / "state" / "sysvol" / DOMAIN
    _write(sysvol / "scripts" / "logon.cmd", LOGON_SCRIPT)
    policy = sysvol / "Policies" / DEFAULT_DOMAIN_POLICY
    _write(policy / "MACHINE" / "Microsoft" / "Windows NT" / "SecEdit" / "GptTmpl.inf", SECURITY_TEMPLATE)
    _write(policy / "GPT.INI", "[General]\r\nVersion=3\r\n")
    _samba_tool("ntacl", "sysvolreset", "-s", str(conf))
    return conf


# A Windows computer writes msDS-SupportedEncryptionTypes (RC4, AES128, AES256 = 0x1c) on its account when
# it joins; an account created by samba-tool has none, and the KDC would then issue RC4 service tickets for
# it. Written offline with Samba's Python bindings (the system python3 that samba-tool runs on).
_SET_ENCTYPES = """
import sys, ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=lp.samdb_url(), lp=lp, session_info=system_session())
for dn in sys.argv[2:]:
    msg = ldb.Message(ldb.Dn(db, dn))
    msg["msDS-SupportedEncryptionTypes"] = ldb.MessageElement(
        "28", ldb.FLAG_MOD_REPLACE, "msDS-SupportedEncryptionTypes")
    db.modify(msg)
"""


def _supported_enctypes(conf: Path, dns: Sequence[str]) -> None:
    proc = subprocess.run(
        ["/usr/bin/python3", "-c", _SET_ENCTYPES, str(conf), *dns], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"setting msDS-SupportedEncryptionTypes failed: {proc.stderr.strip()[-500:]}")


def _dc_forwarder(office: Office) -> None:
    hosts = _write(office.tmp / "dns" / "hosts", HOSTS_FILE)
    office.host("dc").spawn(
        "dnsmasq", "--no-daemon", "--conf-file=/dev/null", f"--listen-address={FORWARDER_IP}",
        "--bind-interfaces", "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--pid-file=",
        "--user=root", "--group=root", "--local=/test/", "--local-ttl=300",
    )  # fmt: skip


def _private_run(hostname: str, extra: str = "") -> list[str]:
    """Argv prefix: a UTS namespace (so the server names itself) and a mount namespace with a private
    /run/samba (winbindd's socket has a fixed path there) plus ``extra`` shell set-up."""
    script = f"hostname {hostname} && mkdir -p /run/samba && mount -t tmpfs -o size=8m samba-run /run/samba"
    script += f" && {extra}" if extra else ""
    return ["unshare", "--uts", "--mount", "sh", "-c", f'{script} && exec "$@"', "sh"]


def start_dc(office: Office, conf: Path) -> None:
    _dc_forwarder(office)
    # samba -i: the whole DC (KDC, LDAP/CLDAP, DNS, RPC, smbd, winbindd) in the foreground; its log stays
    # in the temp dir.
    with (office.tmp / "dc" / "log" / "samba.out").open("wb") as log:
        office.host("dc").spawn(
            *_private_run("dc"), "samba", "-i", "-s", str(conf), "--debug-stdout", "-d", "1",
            stdout=log.fileno(), stderr=subprocess.STDOUT,
        )  # fmt: skip


def add_dns_records(office: Office, conf: Path) -> None:
    """A records for the member server and the intranet, over RPC inside dc's namespace (not on LAN A)."""
    for name, ip in (("files", FILES_IP), ("web", "10.231.2.22"), ("intranet", "10.231.2.22")):
        proc = office.host("dc").run(
            "samba-tool", "dns", "add", DC_IP, DOMAIN, name, "A", ip, "-s", str(conf),
            "-U", f"Administrator%{ADMIN_PASSWORD}", timeout=60,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"dns add {name}: {proc.stderr.strip()[-300:]}")


# --- the member file and print server ---


def start_file_server(office: Office) -> None:
    tmp = office.tmp / "files"
    for sub in ("private", "lock", "state", "cache", "pid", "log", "ncalrpc", "share/reports", "spool"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    share = tmp / "share"
    _write(share / "readme.txt", "Project share. Please keep reports under reports/.\n")
    _write(share / "reports" / "q3-summary.txt", "Q3 summary\n" + "figures and notes\n" * 200)
    _write(share / "reports" / "budget.csv", "item,amount\n" + "licences,1200\nhardware,5400\n" * 20)
    # Domain users map to uids above 10000 (idmap rid): the share and spool must be theirs to use.
    for path in (share, share / "reports", tmp / "spool"):
        path.chmod(0o1777)
    for path in share.rglob("*.*"):
        path.chmod(0o666)
    printcap = _write(tmp / "printcap", f"{PRINTER}|Office Printer:\n")
    conf = _write(
        tmp / "smb.conf",
        f"""\
[global]
  workgroup = {NETBIOS_DOMAIN}
  realm = {REALM}
  security = ads
  netbios name = FILES
  kerberos method = secrets and keytab
  dedicated keytab file = {tmp}/private/krb5.keytab
  idmap config * : backend = tdb
  idmap config * : range = 3000-7999
  idmap config {NETBIOS_DOMAIN} : backend = rid
  idmap config {NETBIOS_DOMAIN} : range = 10000-999999
  winbind use default domain = yes
  template shell = /bin/false
  private dir = {tmp}/private
  lock directory = {tmp}/lock
  state directory = {tmp}/state
  cache directory = {tmp}/cache
  pid directory = {tmp}/pid
  ncalrpc dir = {tmp}/ncalrpc
  binddns dir = {tmp}/private
  log file = {tmp}/log/%m.log
  max log size = 1000
  interfaces = {FILES_IP}/24
  bind interfaces only = yes
  disable netbios = yes
  smb ports = 445
  server min protocol = SMB2_10
  load printers = yes
  printing = bsd
  printcap name = {printcap}
  lpq command = /bin/true
  lprm command = /bin/true
  print command = /bin/rm -f %s
  disable spoolss = no

[{SHARE}]
  path = {share}
  read only = no

[printers]
  path = {tmp}/spool
  printable = yes
  browseable = no
""",
    )
    resolv = _resolv(office)
    # A private nsswitch.conf: smbd resolves domain users through winbindd (libnss-winbind).
    nsswitch = _write(
        tmp / "nsswitch.conf", "passwd: files winbind\ngroup: files winbind\nhosts: files dns\n"
    )
    binds = f"mount --bind {resolv} /etc/resolv.conf && mount --bind {nsswitch} /etc/nsswitch.conf"
    files = office.host("files")
    join = files.run(
        "unshare", "--mount", "sh", "-c", f'mount --bind {resolv} /etc/resolv.conf && exec "$@"', "sh",
        "net", "ads", "join", f"--configfile={conf}", "-U", f"Administrator%{ADMIN_PASSWORD}",
        "--no-dns-updates", timeout=90,
    )  # fmt: skip
    if join.returncode != 0:
        raise RuntimeError(f"net ads join: {join.stdout.strip()[-300:]} {join.stderr.strip()[-300:]}")
    daemons = (
        f"(winbindd --foreground --no-process-group --configfile={conf} & "
        f"exec smbd --foreground --no-process-group --configfile={conf})"
    )
    files.spawn(*_private_run("files", binds), "sh", "-c", daemons)


def _resolv(office: Office) -> Path:
    """The servers' resolver: dc."""
    return _write(office.tmp / "resolv.conf", f"nameserver {DC_IP}\nsearch {DOMAIN}\n")


def _workstation_resolv(office: Office) -> Path:
    """The workstations' resolver: their own caching resolver on loopback (see :func:`_dns_caches`)."""
    return _write(office.tmp / "ws-resolv.conf", f"nameserver {CACHE_IP}\nsearch {DOMAIN}\n")


def _dns_caches(office: Office) -> None:
    """Windows' DNS Client service caches answers (negative ones too) for their TTL; without a cache the
    Kerberos and Samba libraries would ask dc for its own name dozens of times a minute. A dnsmasq cache on
    each workstation's loopback, forwarding to dc, does what that service does."""
    for name in WORKSTATIONS:
        office.host(name).spawn(
            "dnsmasq", "--no-daemon", "--conf-file=/dev/null", f"--listen-address={CACHE_IP}",
            "--bind-interfaces", "--no-resolv", "--no-hosts", f"--server={DC_IP}", "--pid-file=",
            "--user=root", "--group=root", "--cache-size=500",
        )  # fmt: skip


@contextlib.contextmanager
def domain_office(lab_id: str | None = LAB_ID) -> Iterator[Office]:
    """The lab with the domain running (DC, member file/print server, intranet web, cdn); torn down on exit.
    ``lab_id=None`` gives a random lab (no fixed names: for tests running beside a recording)."""
    with tempfile.TemporaryDirectory(prefix="vigil-domain-") as tmp, contextlib.ExitStack() as stack:
        place_tmp = Path(tmp)
        # The servers act as the domain user (a uid from idmap), who must reach SYSVOL and the share.
        place_tmp.chmod(0o755)
        conf = provision_domain(place_tmp)
        if lab_id is None:
            built = stack.enter_context(lab(DOMAIN_LAN_A_HOSTS, LAN_B_HOSTS, INTERNET_HOSTS))
        else:
            built = stack.enter_context(_lab_when_free(lab_id, lan_a=DOMAIN_LAN_A_HOSTS))
            fix_gateway_macs(built)
        place = Office(built, place_tmp)
        start_dc(place, conf)
        for port in (53, 88, 135, 389, 445):
            built.wait_reachable("pi", DC_IP, port, timeout_s=60)
        _wait_dc_answers(place)
        add_dns_records(place, conf)
        start_file_server(place)
        _web(place)
        _cdn(place)
        _dns_caches(place)
        built.wait_reachable("pi", FILES_IP, 445, timeout_s=60)
        _wait_member_ready(place)
        yield place


def _wait_dc_answers(office: Office, timeout_s: float = 60) -> None:
    """Ports open early; wait (bounded, from dc itself, so off the capture) until LDAP answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        proc = office.host("dc").run(
            "ldapsearch",
            "-x",
            "-LLL",
            "-H",
            f"ldap://{DC_IP}",
            "-b",
            "",
            "-s",
            "base",
            "dnsHostName",
            timeout=10,
        )
        if proc.returncode == 0 and "dnsHostName" in proc.stdout:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the domain controller does not answer LDAP: {proc.stderr.strip()}")
        time.sleep(0.5)


def _wait_member_ready(office: Office, timeout_s: float = 60) -> None:
    """winbindd on files must reach the DC before smbd can map a domain user; probe from files itself."""
    deadline = time.monotonic() + timeout_s
    probe = ["smbclient", "-L", FILES_IP, "-U", f"{USERS[0].name}%{USERS[0].password}", "-W", NETBIOS_DOMAIN]
    probe += ["--use-kerberos=off", f"--configfile={_client_conf(office, 'files-probe')}"]
    while True:
        proc = office.host("files").run(*probe, timeout=20)
        if proc.returncode == 0 and SHARE in proc.stdout:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the member file server does not serve: {proc.stdout[-300:]} {proc.stderr[-300:]}"
            )
        time.sleep(1)


# --- a domain member workstation's clients ---


def _client_conf(office: Office, netbios: str) -> Path:
    base = office.tmp / "clients" / netbios.lower()
    for sub in ("lock", "state", "cache", "private"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return _write(
        base / "smb.conf",
        f"""\
[global]
  workgroup = {NETBIOS_DOMAIN}
  realm = {REALM}
  security = ads
  netbios name = {netbios}
  lock directory = {base}/lock
  state directory = {base}/state
  cache directory = {base}/cache
  private dir = {base}/private
  client min protocol = SMB2_10
""",
    )


def _krb5_conf(office: Office) -> Path:
    # Windows sends Kerberos over TCP (udp_preference_limit 1), finds the KDC by DNS SRV and does not
    # canonicalise service host names by reverse lookups.
    return _write(
        office.tmp / "krb5.conf",
        f"""\
[libdefaults]
  default_realm = {REALM}
  dns_lookup_kdc = true
  dns_lookup_realm = false
  dns_uri_lookup = false
  rdns = false
  dns_canonicalize_hostname = false
  forwardable = true
  udp_preference_limit = 1

[realms]
  # Named, so the library does not look up a _kerberos-master SRV record (Windows never does).
  {REALM} = {{
    master_kdc = {DC_FQDN}
  }}
""",
    )


@dataclass
class Session:
    """One workstation's clients: its own resolver, krb5 config, smb.conf and one ticket cache per account."""

    office: Office
    ws: Workstation

    @property
    def host(self) -> Host:
        return self.office.host(self.ws.host)

    def ccache(self, account: Account) -> str:
        return f"FILE:{self.office.tmp / 'clients' / self.ws.netbios.lower()}-{account.name.strip('$')}.cc"

    @property
    def smb_conf(self) -> Path:
        return _client_conf(self.office, self.ws.netbios)

    def run(self, account: Account, *args: str, stdin: str | None = None, timeout: float = 30) -> str:
        """One bounded client run in the workstation's namespace as ``account``; returns stdout + stderr,
        raises if the tool fails."""
        resolv = _workstation_resolv(self.office)
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "KRB5_CONFIG": str(_krb5_conf(self.office)),
            "KRB5CCNAME": self.ccache(account),
            "LDAPNOINIT": "1",
        }
        proc = subprocess.run(
            [
                "ip", "netns", "exec", self.host.netns, "unshare", "--mount", "sh", "-c",
                f'mount --bind {resolv} /etc/resolv.conf && exec "$@"', "sh", *args,
            ],
            input=stdin, capture_output=True, text=True, timeout=timeout, env=env,
        )  # fmt: skip
        output = proc.stdout + proc.stderr
        if proc.returncode != 0:
            # A failed logon step would record a broken domain as "benign": stop the recording instead.
            raise RuntimeError(f"{self.ws.host}: {' '.join(args[:3])} -> {proc.returncode}: {output[-600:]}")
        return output

    def kinit(self, account: Account) -> str:
        return self.run(account, "kinit", f"{account.name}@{REALM}", stdin=f"{account.password}\n")

    def smbclient(self, account: Account, target: str, commands: str) -> str:
        """Kerberos SMB (the ticket cache of ``account``) to ``//server/share``."""
        return self.run(
            account, "smbclient", target, f"--configfile={self.smb_conf}", "--use-kerberos=required",
            f"--use-krb5-ccache={self.ccache(account)}", "-c", commands,
        )  # fmt: skip

    def rpcclient(self, account: Account, server: str, commands: str) -> str:
        return self.run(
            account, "rpcclient", server, f"--configfile={self.smb_conf}", "--use-kerberos=required",
            f"--use-krb5-ccache={self.ccache(account)}", "-c", commands,
        )  # fmt: skip

    def ldap_gssapi(self, account: Account, base: str, scope: str, flt: str, *attrs: str) -> str:
        """An LDAP search after a SASL GSSAPI bind (signed and sealed, as Windows binds)."""
        return self.run(
            account, "ldapsearch", "-LLL", "-N", "-Q", "-Y", "GSSAPI", "-H", f"ldap://{DC_FQDN}",
            "-b", base, "-s", scope, flt, *attrs,
        )  # fmt: skip

    def ads_search(self, account: Account, flt: str, *attrs: str) -> str:
        """Samba's ``net ads search``: CLDAP-located DC, GSS-SPNEGO bind, subtree search from the domain."""
        return self.run(
            account, "net", "ads", "search", f"--configfile={self.smb_conf}", "-S", DC_FQDN,
            "--use-kerberos=required", f"--use-krb5-ccache={self.ccache(account)}", flt, *attrs,
        )  # fmt: skip

    def dig(self, name: str, qtype: str = "A") -> str:
        return self.run(self.ws.user, "dig", "+short", "+tries=1", "+time=2", f"@{DC_IP}", name, qtype)


def _linked_policies(ldif: str) -> list[str]:
    """GPO GUIDs named in a gPLink value (``[LDAP://cn={GUID},cn=policies,...;0]``)."""
    return re.findall(r"cn=(\{[0-9A-Fa-f-]{36}\}),cn=policies", ldif, flags=re.IGNORECASE)


def _dn(ldif: str) -> str:
    match = re.search(r"^(?:dn|distinguishedName): (.+)$", ldif, flags=re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no DN in the directory's answer: {ldif[-300:]}")
    return match.group(1).strip()


def _group_policy(session: Session, account: Account, side: str) -> int:
    """What a Windows client reads for group policy: the domain's gPLink, the linked policies' objects,
    then each policy's GPT.INI (and the machine's security template) from SYSVOL. Returns files read."""
    links = session.ldap_gssapi(account, BASE_DN, "base", "(objectClass=*)", "gPLink", "gPOptions")
    guids = _linked_policies(links) or [DEFAULT_DOMAIN_POLICY]
    flt = "(|" + "".join(f"(cn={guid})" for guid in guids) + ")"
    policies = f"CN=Policies,CN=System,{BASE_DN}"
    session.ldap_gssapi(
        account, policies, "one", flt, "gPCFileSysPath", "versionNumber", "flags", "displayName"
    )
    reads = []
    for guid in guids:
        reads.append(f'get "{DOMAIN}\\Policies\\{guid}\\GPT.INI" /dev/null')
        if side == "machine":
            template = f"{DOMAIN}\\Policies\\{guid}\\MACHINE\\Microsoft\\Windows NT\\SecEdit\\GptTmpl.inf"
            reads.append(f'get "{template}" /dev/null')
    session.smbclient(account, f"//{DC_FQDN}/sysvol", "; ".join(reads))
    return len(reads)


def machine_startup(session: Session) -> dict[str, int]:
    """The computer starts: finds a DC, logs its computer account on, reads its object and policy."""
    machine = session.ws.machine
    session.dig(f"_ldap._tcp.dc._msdcs.{DOMAIN}", "SRV")
    session.dig(f"_ldap._tcp.Default-First-Site-Name._sites.dc._msdcs.{DOMAIN}", "SRV")
    # The DC locator's CLDAP ping (a NetLogon search over UDP 389), then the root DSE over LDAP.
    session.run(machine, "net", "ads", "lookup", f"--configfile={session.smb_conf}", "-S", DC_FQDN)
    session.run(machine, "ldapsearch", "-x", "-LLL", "-H", f"ldap://{DC_FQDN}", "-b", "", "-s", "base",
                "defaultNamingContext", "dnsHostName", "supportedSASLMechanisms")  # fmt: skip
    session.kinit(machine)
    session.ads_search(machine, f"(sAMAccountName={machine.name})", "distinguishedName", "dNSHostName")
    files = _group_policy(session, machine, "machine")
    session.rpcclient(machine, DC_FQDN, "dsroledominfo; lsaquery")
    return {"kerberos_logons": 1, "sysvol_files": files}


def user_logon(session: Session) -> dict[str, int]:
    """The user logs on at the workstation: Kerberos, the workstation's own service ticket, the user's
    object, group policy and logon script, LSA lookups of the user; then the mapped drive."""
    user = session.ws.user
    session.kinit(user)
    session.run(user, "kvno", f"host/{session.ws.fqdn}")
    session.ads_search(user, f"(sAMAccountName={user.name})", "distinguishedName", "memberOf", "scriptPath")
    files = _group_policy(session, user, "user")
    session.smbclient(user, f"//{DC_FQDN}/netlogon", "get logon.cmd /dev/null")
    session.rpcclient(user, DC_FQDN, f"lsaquery; getusername; lookupnames {user.name}")
    session.smbclient(user, f"//{FILES_FQDN}/{SHARE}", "ls")
    return {"kerberos_logons": 1, "sysvol_files": files + 1}


def explorer_and_printer(session: Session, *, print_job: bool) -> dict[str, int]:
    """Explorer opens \\\\files once (its share list); the print dialog lists printers; one page printed."""
    user = session.ws.user
    session.rpcclient(user, FILES_FQDN, "srvinfo; netshareenumall")
    session.rpcclient(user, FILES_FQDN, "enumprinters")
    if print_job:
        page = _write(session.office.tmp / "clients" / "page.txt", "Meeting notes\n" + "- item\n" * 40)
        session.smbclient(user, f"//{FILES_FQDN}/{PRINTER}", f"print {page}")
    return {"print_jobs": int(print_job)}


def ntlm_fallback(session: Session) -> str:
    """A share opened by address (no service principal for an IP): Windows falls back to NTLM."""
    user = session.ws.user
    return session.run(
        user, "smbclient", f"//{FILES_IP}/{SHARE}", f"--configfile={session.smb_conf}", "--use-kerberos=off",
        "-U", f"{NETBIOS_DOMAIN}\\{user.name}%{user.password}", "-n", session.ws.netbios, "-c", "ls reports",
    )  # fmt: skip


def ordinary_work(
    session: Session, *, steps: int, seed: int, interval_s: tuple[float, float]
) -> dict[str, int]:
    """``steps`` rounds (bounded) of a name lookup, a file from the mapped drive and an intranet page."""
    rng = random.Random(seed)
    user = session.ws.user
    files = ["readme.txt", "reports\\q3-summary.txt", "reports\\budget.csv"]
    pages = ["/", "/news.html", "/timesheet.html"]
    counts = {"dns": 0, "smb_reads": 0, "http": 0}
    for step in range(steps):
        session.run(
            user, "getent", "ahostsv4", rng.choice([f"intranet.{DOMAIN}", FILES_FQDN, "cdn.example.test"])
        )
        counts["dns"] += 1
        session.smbclient(user, f"//{FILES_FQDN}/{SHARE}", f'get "{rng.choice(files)}" /dev/null')
        counts["smb_reads"] += 1
        curl(
            session.host,
            f"http://intranet.{DOMAIN}{rng.choice(pages)}",
            resolve=f"intranet.{DOMAIN}:80:10.231.2.22",
        )
        counts["http"] += 1
        if step < steps - 1:
            time.sleep(rng.uniform(*interval_s))
    return counts


def admin_work(session: Session) -> dict[str, int]:
    """Ordinary helpdesk work, once: the domain's user list, one user's account and lockout state."""
    admin = session.ws.user
    session.rpcclient(admin, DC_FQDN, "enumdomusers")
    session.rpcclient(admin, DC_FQDN, "queryuser bob")
    session.ads_search(admin, "(sAMAccountName=bob)", "lockoutTime", "badPwdCount", "pwdLastSet")
    return {"admin_calls": 3}


def _merge(*parts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for key, value in part.items():
            out[key] = out.get(key, 0) + value
    return out


def domain_logon(office: Office, who: str, *, print_job: bool = False) -> dict[str, int]:
    """Start-up and logon of one workstation, no pauses (the short session the lab test re-records)."""
    session = Session(office, WORKSTATIONS[who])
    return _merge(
        machine_startup(session), user_logon(session), explorer_and_printer(session, print_job=print_job)
    )


def _ws1_domain(office: Office) -> dict[str, int]:
    session = Session(office, WORKSTATIONS["ws1"])
    counts = domain_logon(office, "ws1", print_job=True)
    time.sleep(20)
    ntlm_fallback(session)
    return _merge(counts, {"ntlm": 1}, ordinary_work(session, steps=6, seed=404, interval_s=(15.0, 30.0)))


def _ws2_domain(office: Office) -> dict[str, int]:
    session = Session(office, WORKSTATIONS["ws2"])
    counts = domain_logon(office, "ws2")
    time.sleep(15)
    return _merge(counts, ordinary_work(session, steps=6, seed=505, interval_s=(15.0, 30.0)))


def _helpdesk_domain(office: Office) -> dict[str, int]:
    session = Session(office, WORKSTATIONS["helpdesk"])
    counts = domain_logon(office, "helpdesk")
    time.sleep(20)
    counts = _merge(counts, admin_work(session))
    time.sleep(20)
    return _merge(counts, ordinary_work(session, steps=4, seed=606, interval_s=(15.0, 30.0)))


SESSIONS: dict[str, Callable[[Office], dict[str, int]]] = {
    "ws1-domain": _ws1_domain,
    "ws2-domain": _ws2_domain,
    "helpdesk-domain": _helpdesk_domain,
}


def record(outdir: Path, only: Sequence[str] = ()) -> None:
    for name in list(only) or list(SESSIONS):
        t0 = time.monotonic()
        with domain_office() as place:
            ready = time.monotonic()
            with capture(place.lab, outdir / f"{name}.pcap"):
                counts = SESSIONS[name](place)
        print(
            f"{name}: {counts}; domain up in {ready - t0:.0f}s, session {time.monotonic() - ready:.0f}s",
            file=sys.stderr,
        )


def main() -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", action="append", choices=sorted(SESSIONS), default=[])
    args = parser.parse_args()
    if reason := unavailable_reason(TOOLS):
        parser.error(reason)
    if (code := in_private_netns_names("tests.lab.scenarios_domain", sys.argv[1:])) is not None:
        return code
    record(args.outdir, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
