"""Record the internal-attack scenarios: one capture each of recon, SMB brute force, LDAP enumeration, a
reverse-DNS sweep, a workstation that changes its NetBIOS name, and an SMBv1 client.

    python -m tests.lab.scenarios_internal OUTDIR [--only NAME]

Every scenario runs in the same lab (fixed ``lab_id`` ``5ca1``, so every MAC is the same in every capture
and in the benign baseline recorded with the same hosts)::

    LAN A  ws1 10.231.1.10   ws2 10.231.1.11   pi 10.231.1.12 (dc:a6:32:5c:a1:0c, Raspberry Pi OUI)
    LAN B  dc 10.231.2.20 (slapd, dnsmasq)   files 10.231.2.21 (smbd)   web 10.231.2.22 (http 80, tcp 22/3389)

Real servers (slapd, dnsmasq, smbd, Python's http.server) run in the foreground in their namespaces with
every config and state file in a temporary directory; real clients (nmap, smbclient, ldapsearch, dig, curl)
make the traffic; tcpdump on ``br-a`` in the gateway records it (``-s 0``, ``not arp and not ip6``). Each
scenario writes ``OUTDIR/NAME.pcap``; a capture starts early in a minute and lasts well under one, so the
master counts each attack in one window. The recorder re-runs itself with a private ``/run/netns`` so the
fixed namespace names cannot collide with another recording. Needs root, iproute2 and the tools above
(``make install``). The scenarios' truth files are ``tests/data/scenarios/internal-*.truth.yaml``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.lab.netns import (
    Host,
    HostSpec,
    Lab,
    bridge_capture,
    http_server,
    in_private_netns_names,
    lab,
    tcp_listener,
)

LAB_ID = "5ca1"
PI_MAC = "dc:a6:32:5c:a1:0c"
LAN_A_HOSTS: tuple[HostSpec, ...] = ("ws1", "ws2", ("pi", PI_MAC))
LAN_B_HOSTS: tuple[HostSpec, ...] = ("dc", "files", "web")
# The documentation-address "internet" of the external scenarios (cdn 198.51.100.30, rare .31).
INTERNET_HOSTS: tuple[HostSpec, ...] = ("cdn", "rare")
ATTACKER_IP = "10.231.1.12"
BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"

TOOLS: tuple[str, ...] = ("tcpdump", "nmap", "smbclient", "smbd", "smbpasswd", "slapd", "slapadd")
TOOLS += ("ldapsearch", "dnsmasq", "dig", "curl")

# Names, directory, accounts and share as in the benign sessions (tests/lab/scenarios_benign.py), so the
# attack captures and the baseline show one network.
DOMAIN = "corp.example.test"
LDAP_SUFFIX = "dc=corp,dc=example,dc=test"
WORKGROUP = "CORP"
# The SMB user has no Unix account of its own (the lab never touches /etc/passwd): smbd maps it onto the
# existing unprivileged "nobody" account through a username map in the temporary config.
SMB_USER = "alice"
SMB_UNIX_USER = "nobody"
SMB_PASSWORD = "Summer-Breeze-26"
SMB_SHARE = "projects"
LDAP_USERS = ("alice", "bob", "carol", "dave", "erin", "frank")
LDAP_PASSWORD = SMB_PASSWORD

# Event-time window of the master (master.window_s): each capture starts early in one and is shorter.
WINDOW_S = 60.0
# Bounds on one scenario: its whole recording (lab, servers, capture), and the capture's size.
MAX_SCENARIO_S = 300.0
MAX_CAPTURE_BYTES = 2_000_000


@dataclass
class Servers:
    """The running services and the temporary directory their configs and state live in."""

    tmp: Path
    client_conf: Path

    @property
    def dc(self) -> str:
        return "10.231.2.20"

    @property
    def files(self) -> str:
        return "10.231.2.21"

    @property
    def web(self) -> str:
        return "10.231.2.22"


# -- servers ---------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _wait_port(lab_: Lab, client: str, ip: str, port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 15
    while not lab_.hosts[client].can_connect(ip, port, timeout_s=0.5):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} is not listening on {ip}:{port}")
        time.sleep(0.2)


def start_dnsmasq(dc: Host, tmp: Path) -> subprocess.Popen[bytes]:
    hosts = _write(
        tmp / "dns" / "hosts",
        f"10.231.2.20 dc.{DOMAIN} dc\n10.231.2.21 files.{DOMAIN} files\n"
        f"10.231.2.22 web.{DOMAIN} intranet.{DOMAIN}\n",
    )
    return dc.spawn(
        "dnsmasq",
        "--no-daemon",
        "--conf-file=/dev/null",
        f"--listen-address={dc.ip}",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        f"--addn-hosts={hosts}",
        "--pid-file=",
        # Authoritative for the lab's names and reverse zones: anything unknown is NXDOMAIN, nothing is
        # ever forwarded (there is no upstream server at all).
        "--local=/test/",
        "--local=/231.10.in-addr.arpa/",
        "--bogus-priv",
        "--cache-size=0",
    )


def _ldif() -> str:
    people = "".join(
        f"dn: uid={u},ou=people,{LDAP_SUFFIX}\nobjectClass: inetOrgPerson\nuid: {u}\ncn: {u.title()}\n"
        f"sn: {u.title()}\nmail: {u}@{DOMAIN}\nuserPassword: {LDAP_PASSWORD}\n\n"
        for u in LDAP_USERS
    )
    groups = "".join(
        f"dn: cn={g},ou=groups,{LDAP_SUFFIX}\nobjectClass: groupOfNames\ncn: {g}\n"
        + "".join(f"member: uid={u},ou=people,{LDAP_SUFFIX}\n" for u in members)
        + "\n"
        for g, members in (
            ("staff", LDAP_USERS),
            ("it-admins", LDAP_USERS[:2]),
            ("finance", LDAP_USERS[2:4]),
        )
    )
    return (
        f"dn: {LDAP_SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: corp\no: Corp\n\n"
        f"dn: ou=people,{LDAP_SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"
        f"dn: ou=groups,{LDAP_SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n" + people + groups
    )


def start_slapd(dc: Host, tmp: Path) -> subprocess.Popen[bytes]:
    root = tmp / "ldap"
    (root / "db").mkdir(parents=True)
    schema = Path("/etc/ldap/schema")
    conf = _write(
        root / "slapd.conf",
        "".join(f"include {schema / s}.schema\n" for s in ("core", "cosine", "inetorgperson", "nis"))
        + "modulepath /usr/lib/ldap\nmoduleload back_mdb\n"
        + f"pidfile {root / 'slapd.pid'}\nargsfile {root / 'slapd.args'}\n"
        + f'database mdb\nmaxsize 16777216\nsuffix "{LDAP_SUFFIX}"\n'
        + f'rootdn "cn=admin,{LDAP_SUFFIX}"\nrootpw {LDAP_PASSWORD}\ndirectory {root / "db"}\n'
        + "access to attrs=userPassword by anonymous auth by self read by * none\n"
        + "access to * by users read by anonymous auth\n",
    )
    ldif = _write(root / "data.ldif", _ldif())
    load = subprocess.run(
        ["slapadd", "-q", "-f", str(conf), "-l", str(ldif)], capture_output=True, text=True, timeout=30
    )
    if load.returncode != 0:
        raise RuntimeError(f"slapadd failed: {load.stderr.strip()}")
    return dc.spawn("slapd", "-d", "0", "-h", f"ldap://{dc.ip}/", "-f", str(conf))


def start_smbd(files: Host, tmp: Path, allow_smb1: bool) -> tuple[subprocess.Popen[bytes], Path]:
    root = tmp / "smb"
    dirs = {d: root / d for d in ("private", "lock", "state", "cache", "pid", "ncalrpc", "share")}
    for path in dirs.values():
        path.mkdir(parents=True)
    _write(dirs["share"] / "readme.txt", "quarterly numbers are on the intranet\n")
    usermap = _write(root / "users.map", f"{SMB_UNIX_USER} = {SMB_USER}\n")
    paths = (
        f"  private dir = {dirs['private']}\n  lock directory = {dirs['lock']}\n"
        f"  state directory = {dirs['state']}\n  cache directory = {dirs['cache']}\n"
        f"  pid directory = {dirs['pid']}\n  ncalrpc dir = {dirs['ncalrpc']}\n"
    )
    conf = _write(
        root / "smb.conf",
        f"[global]\n  workgroup = {WORKGROUP}\n  netbios name = FILES\n  server role = standalone server\n"
        f"  passdb backend = tdbsam:{dirs['private'] / 'passdb.tdb'}\n{paths}"
        f"  log file = {root / 'log.smbd'}\n  log level = 1\n  max log size = 1000\n"
        f"  interfaces = {files.ip}/24\n  bind interfaces only = yes\n  smb ports = 445\n"
        f"  username map = {usermap}\n  map to guest = Never\n  disable netbios = yes\n"
        "  load printers = no\n  printing = bsd\n  printcap name = /dev/null\n  disable spoolss = yes\n"
        + f"  server min protocol = {'NT1' if allow_smb1 else 'SMB2_10'}\n"
        + f"[{SMB_SHARE}]\n  path = {dirs['share']}\n  read only = yes\n  valid users = {SMB_UNIX_USER}\n",
    )
    add = subprocess.run(
        ["smbpasswd", "-c", str(conf), "-a", "-s", SMB_UNIX_USER],
        input=f"{SMB_PASSWORD}\n{SMB_PASSWORD}\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    if add.returncode != 0:
        raise RuntimeError(f"smbpasswd failed: {add.stderr.strip() or add.stdout.strip()}")
    proc = files.spawn("smbd", "--foreground", "--no-process-group", f"--configfile={conf}")
    client_cache = root / "client-cache"
    client_cache.mkdir()
    client_conf = _write(
        root / "client.conf",
        f"[global]\n  workgroup = {WORKGROUP}\n"
        f"  cache directory = {client_cache}\n  lock directory = {client_cache}\n"
        f"  state directory = {client_cache}\n  private dir = {client_cache}\n"
        f"  pid directory = {client_cache}\n  ncalrpc dir = {client_cache}\n"
        "  client min protocol = SMB2_10\n  disable netbios = yes\n  name resolve order = host\n",
    )
    return proc, client_conf


@contextmanager
def servers(built: Lab, allow_smb1: bool = False) -> Iterator[Servers]:
    """Start every service of the fixed layout; the lab kills them, this removes their files."""
    tmp = Path(tempfile.mkdtemp(prefix="vg-scen-", dir="/tmp"))
    tmp.chmod(0o755)  # smbd serves the share as the unprivileged account
    try:
        dc, files, web = built.hosts["dc"], built.hosts["files"], built.hosts["web"]
        www = tmp / "www"
        _write(
            www / "index.html",
            "<html><head><title>Intranet</title></head><body><h1>Intranet</h1></body></html>\n",
        )
        _write(
            www / "news.html",
            "<html><body>" + "<p>Canteen menu and office news.</p>" * 40 + "</body></html>\n",
        )
        http_server(web, 80, root=www)
        for port in (22, 3389):
            tcp_listener(web, port)
        dns = start_dnsmasq(dc, tmp)
        ldap = start_slapd(dc, tmp)
        smb, client_conf = start_smbd(files, tmp, allow_smb1)
        built.wait_reachable("ws1", web.ip, 80)
        built.wait_reachable("ws1", web.ip, 3389)
        _wait_port(built, "ws1", dc.ip, 53, dns, "dnsmasq")
        _wait_port(built, "ws1", dc.ip, 389, ldap, "slapd")
        _wait_port(built, "ws1", files.ip, 445, smb, "smbd")
        yield Servers(tmp=tmp, client_conf=client_conf)
    finally:
        built.teardown()  # the processes first, so nothing still writes into tmp
        shutil.rmtree(tmp, ignore_errors=True)


# -- capture ---------------------------------------------------------------------------------------
@contextmanager
def capture(built: Lab, out: Path) -> Iterator[None]:
    """tcpdump on br-a in the gateway (full packets, IPv4 only) for the duration of the block."""
    with bridge_capture(built, out):
        yield
    if out.stat().st_size > MAX_CAPTURE_BYTES:
        raise RuntimeError(f"{out}: {out.stat().st_size} bytes, more than {MAX_CAPTURE_BYTES}")


def fresh_window(need_s: float) -> None:
    """Wait for the next event-time window when fewer than ``need_s`` seconds of the current one are left
    (sleeps at most one window). A capture started this way and shorter than ``need_s`` lies in one window
    of the master, both as recorded and when moved to start on a minute (tests/lab/compose.py --shift)."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < need_s:
        time.sleep(left + 0.5)


# -- clients ---------------------------------------------------------------------------------------
def _check(proc: subprocess.CompletedProcess[str], what: str, ok: Callable[[int], bool]) -> None:
    if not ok(proc.returncode):
        raise RuntimeError(f"{what} -> {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:400]}")


def ordinary(built: Lab, srv: Servers, rounds: int = 3, pause_s: float = 1.0) -> None:
    """ws1 and ws2 look names up at dc and browse the intranet (as in the benign sessions): a few seconds
    of ordinary office traffic around the attack. Bounded by ``rounds``."""
    pages = ("/", "/news.html", "/")
    for i in range(rounds):
        for name in ("ws1", "ws2"):
            host = built.hosts[name]
            host.run("dig", "+short", "+tries=1", "+time=2", f"@{srv.dc}", f"files.{DOMAIN}", timeout=10)
            host.run("dig", "+short", "+tries=1", "+time=2", f"@{srv.dc}", f"intranet.{DOMAIN}", timeout=10)
            host.run(
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "--max-time",
                "5",
                "-A",
                BROWSER_UA,
                "--resolve",
                f"intranet.{DOMAIN}:80:{srv.web}",
                f"http://intranet.{DOMAIN}{pages[i % len(pages)]}",
                timeout=15,
            )
        if i < rounds - 1:
            time.sleep(pause_s)


def smb_logon(
    host: Host,
    srv: Servers,
    user: str,
    password: str,
    netbios: str | None = None,
    protocol: str = "SMB3",
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """One smbclient session to the file server's share (one NTLM authentication)."""
    args = ["smbclient", f"//{srv.files}/{SMB_SHARE}", "-s", str(srv.client_conf), "-U", f"{user}%{password}"]
    args += ["-W", WORKGROUP, "-m", protocol, "-t", "5", "-c", "ls"]
    if netbios:
        args += ["-n", netbios]
    return host.run(*args, *extra, timeout=15)


def ldap_search(
    host: Host, srv: Servers, user: str, password: str, base: str, ldap_filter: str
) -> subprocess.CompletedProcess[str]:
    """One ldapsearch: a simple bind, then a subtree search (ldapsearch stops if the bind fails)."""
    return host.run(
        "env",
        "LDAPNOINIT=1",
        "ldapsearch",
        "-x",
        "-H",
        f"ldap://{srv.dc}/",
        "-D",
        f"uid={user},ou=people,{LDAP_SUFFIX}",
        "-w",
        password,
        "-b",
        base,
        "-s",
        "sub",
        "-o",
        "nettimeout=5",
        "-l",
        "5",
        ldap_filter,
        timeout=15,
    )


def _nmap(host: Host, *args: str, timeout_s: int = 60) -> subprocess.CompletedProcess[str]:
    # -n: never resolve names (there is no resolver outside the lab); every scan bounded by host timeout.
    proc = host.run("nmap", "-n", "-Pn", "--host-timeout", f"{timeout_s}s", *args, timeout=timeout_s + 60)
    _check(proc, f"nmap {' '.join(args)}", lambda rc: rc == 0)
    return proc


# -- scenarios -------------------------------------------------------------------------------------
def recon(built: Lab, srv: Servers) -> None:
    pi = built.hosts["pi"]
    ordinary(built, srv)
    # SYN ("stealth") scan: half-open probes to every open port, resets to closed ones, silence from the
    # addresses nobody holds.
    _nmap(pi, "-sS", "-T4", "--max-retries", "1", "-p", "22,80,135,139,445,3389,389,88", "10.231.2.1-40")
    # ...then a closer look at the live servers (what an intruder does next), again half-open.
    _nmap(pi, "-sS", "-T4", "--max-retries", "1", "--top-ports", "100", srv.dc, srv.files, srv.web)
    # Version detection of web's open ports and HTTP scripts: Nmap's probe paths (its 404 probe,
    # "/nice ports,/Trinity.txt.bak", goes to the services it cannot name) and the "Nmap Scripting Engine"
    # user agent. (http-enum would add ~2000 requests and 3 MB: left out.)
    scripts = "http-title,http-headers,http-methods,http-robots.txt"
    _nmap(pi, "-sV", "-T4", "-p", "22,80,3389", "--script", scripts, srv.web)
    ordinary(built, srv, rounds=1, pause_s=0)
    _nmap(pi, "-sU", "-T4", "--max-retries", "1", "-p", "53,123,137,161,500", "10.231.2.20-30")
    # An RDP sweep with full connects.
    _nmap(pi, "-sT", "-T4", "--max-retries", "1", "-p", "3389", "10.231.2.1-40")
    ordinary(built, srv)


def smb_brute(built: Lab, srv: Servers) -> None:
    pi, ws1 = built.hosts["pi"], built.hosts["ws1"]
    ordinary(built, srv)
    proc = smb_logon(ws1, srv, SMB_USER, SMB_PASSWORD, netbios="WS1")
    _check(proc, "ws1 smbclient", lambda rc: rc == 0)
    guesses = ["123456", "password", "Password1", "qwerty", "letmein", "Welcome1", "Summer2026!"]
    guesses += [
        "alice",
        "alice123",
        "Spring2026",
        "P@ssw0rd",
        "changeme",
        "Winter2025!",
        "abc123",
        "iloveyou",
    ]
    for guess in guesses:
        proc = smb_logon(pi, srv, SMB_USER, guess, netbios="RASPBERRYPI")
        _check(proc, "pi smbclient (wrong password)", lambda rc: rc != 0)
    for guess in ["admin", "Administrator1", "P@ssw0rd!", "Passw0rd", "Admin123", "root"]:
        proc = smb_logon(pi, srv, "Administrator", guess, netbios="RASPBERRYPI")
        _check(proc, "pi smbclient Administrator (wrong password)", lambda rc: rc != 0)
    ordinary(built, srv)


def ldap_enum(built: Lab, srv: Servers) -> None:
    pi, ws1 = built.hosts["pi"], built.hosts["ws1"]
    ordinary(built, srv)
    proc = ldap_search(ws1, srv, "alice", LDAP_PASSWORD, f"ou=people,{LDAP_SUFFIX}", "(uid=alice)")
    _check(proc, "ws1 ldapsearch", lambda rc: rc == 0)
    wrong = ("Winter2025!", "Password1", "bob123", "letmein")
    for i, password in enumerate(wrong):
        proc = ldap_search(pi, srv, "bob", password, LDAP_SUFFIX, "(objectClass=*)")
        _check(proc, f"pi ldapsearch wrong password {i}", lambda rc: rc == 49)  # invalidCredentials
    queries = (
        (f"ou=people,{LDAP_SUFFIX}", "(objectClass=person)"),
        (f"ou=groups,{LDAP_SUFFIX}", "(objectClass=groupOfNames)"),
        (LDAP_SUFFIX, "(objectClass=*)"),
        (f"ou=groups,{LDAP_SUFFIX}", "(cn=*admin*)"),
        (f"ou=people,{LDAP_SUFFIX}", "(mail=*)"),
        (LDAP_SUFFIX, "(member=*)"),
    )
    for i in range(12):
        base, ldap_filter = queries[i % len(queries)]
        proc = ldap_search(pi, srv, "alice", LDAP_PASSWORD, base, ldap_filter)
        _check(proc, f"pi ldapsearch {ldap_filter}", lambda rc: rc == 0)
    ordinary(built, srv)


def ptr_sweep(built: Lab, srv: Servers, quick: bool = False) -> None:
    pi = built.hosts["pi"]
    ordinary(built, srv, rounds=1 if quick else 3)
    batch = srv.tmp / "ptr-queries.txt"
    batch.write_text("".join(f"-x 10.231.2.{n}\n" for n in range(1, 255)))
    # One dig process, 254 queries (each its own UDP exchange), each with a 1 s timeout and no retry.
    proc = pi.run("dig", f"@{srv.dc}", "+time=1", "+tries=1", "+short", "-f", str(batch), timeout=120)
    _check(proc, "dig -x sweep", lambda rc: rc == 0)
    ordinary(built, srv, rounds=1 if quick else 3)


def hostname(built: Lab, srv: Servers) -> None:
    ws1 = built.hosts["ws1"]
    ordinary(built, srv, rounds=1)
    for _ in range(6):
        proc = smb_logon(ws1, srv, SMB_USER, SMB_PASSWORD, netbios="WS1")
        _check(proc, "ws1 smbclient as WS1", lambda rc: rc == 0)
        ordinary(built, srv, rounds=1, pause_s=0.5)
    proc = smb_logon(ws1, srv, SMB_USER, SMB_PASSWORD, netbios="EVIL-LAPTOP")
    _check(proc, "ws1 smbclient as EVIL-LAPTOP", lambda rc: rc == 0)
    ordinary(built, srv)


def external_scan(built: Lab, srv: Servers) -> None:
    """The Pi sweeps a block of internet addresses for SSH and web servers (as a bot recruiting does)."""
    pi = built.hosts["pi"]
    ordinary(built, srv)
    _nmap(pi, "-sS", "-T4", "--max-retries", "0", "-p", "22,80,443", "198.51.100.20-45", timeout_s=40)
    ordinary(built, srv)


def quiet_recon(built: Lab, srv: Servers) -> None:
    """ws2, a known workstation, turns to slow and small reconnaissance: a dozen reverse lookups, a few
    directory binds and searches, connect probes of admin ports on the servers. Each stays under its own
    model's floor; together they are what no single model explains (Significant Anomaly)."""
    ws2 = built.hosts["ws2"]
    ordinary(built, srv)
    batch = srv.tmp / "ptr-few.txt"
    batch.write_text("".join(f"-x 10.231.2.{n}\n" for n in range(10, 22)))
    proc = ws2.run("dig", f"@{srv.dc}", "+time=1", "+tries=1", "+short", "-f", str(batch), timeout=60)
    _check(proc, "dig -x (12 names)", lambda rc: rc == 0)
    for user in LDAP_USERS[:3]:
        proc = ldap_search(ws2, srv, user, LDAP_PASSWORD, LDAP_SUFFIX, "(objectClass=*)")
        _check(proc, f"ldapsearch as {user}", lambda rc: rc == 0)
    _nmap(ws2, "-sT", "-T3", "--max-retries", "0", "-p", "22,135,3389,5985", srv.dc, srv.files, timeout_s=30)
    ordinary(built, srv)


def smbv1(built: Lab, srv: Servers) -> None:
    ws2 = built.hosts["ws2"]
    ordinary(built, srv)
    for _ in range(2):
        proc = smb_logon(
            ws2,
            srv,
            SMB_USER,
            SMB_PASSWORD,
            netbios="WS2",
            protocol="NT1",
            extra=("--option=client min protocol=NT1", "--option=client max protocol=NT1"),
        )
        _check(proc, "ws2 smbclient -m NT1", lambda rc: rc == 0)
        ordinary(built, srv, rounds=1)
    ordinary(built, srv)


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[Lab, Servers], None]
    allow_smb1: bool = False
    # With the internet segment (its hosts come after the LANs', so every LAN MAC stays the same).
    internet: bool = False
    # Upper bound on the capture's length: the whole capture must fit in one 60 s window of the master.
    budget_s: float = 30.0


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("internal-recon", recon, budget_s=50),
    Scenario("internal-smb-brute", smb_brute),
    Scenario("internal-ldap", ldap_enum),
    Scenario("internal-ptr-sweep", ptr_sweep),
    Scenario("internal-hostname", hostname),
    Scenario("internal-smbv1", smbv1, allow_smb1=True),
    Scenario("internal-external-scan", external_scan, internet=True),
    Scenario("internal-quiet-recon", quiet_recon),
)
SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}


def record(scenario: Scenario, out: Path, lab_id: str | None = LAB_ID, align: bool = True) -> Path:
    """Build the lab, start the servers, capture ``scenario`` into ``out``; everything is torn down.

    With ``align`` the capture starts early in an event-time window (see :func:`fresh_window`), so every
    stage of the scenario is counted in the same window. ``lab_id`` None takes a random id (other MACs
    for ws1/ws2/servers): for tests that only look at the protocol records and must not collide with a
    recording that holds the fixed names."""
    started = time.monotonic()
    internet = INTERNET_HOSTS if scenario.internet else ()
    with (
        lab(LAN_A_HOSTS, LAN_B_HOSTS, internet, lab_id=lab_id) as built,
        servers(built, scenario.allow_smb1) as srv,
    ):
        if align:
            fresh_window(scenario.budget_s + 5)
        with capture(built, out):
            t0 = time.monotonic()
            scenario.run(built, srv)
            took = time.monotonic() - t0
    if took > scenario.budget_s:
        print(f"warning: {scenario.name} ran {took:.0f}s (budget {scenario.budget_s:.0f}s)", file=sys.stderr)
    if time.monotonic() - started > MAX_SCENARIO_S:
        print(f"warning: {scenario.name} took {time.monotonic() - started:.0f}s in all", file=sys.stderr)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", choices=sorted(SCENARIO_BY_NAME), action="append")
    args = parser.parse_args(argv)
    args_list = sys.argv[1:] if argv is None else list(argv)
    timeout = MAX_SCENARIO_S * (len(SCENARIOS) + 1)
    if (code := in_private_netns_names("tests.lab.scenarios_internal", args_list, timeout)) is not None:
        return code
    for scenario in SCENARIOS:
        if args.only and scenario.name not in args.only:
            continue
        out = record(scenario, args.outdir.resolve() / f"{scenario.name}.pcap")
        print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
