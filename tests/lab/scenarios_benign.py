"""Record short benign office sessions in the fixed scenario lab, one pcap per session.

    python -m tests.lab.scenarios_benign tests/data/scenarios/benign [--only ws1-morning]

The lab (shared by every scenario recording, so captures compose into one network): lab id ``5ca1``;
LAN A ws1 10.231.1.10, ws2 .11, pi .12 (Raspberry Pi MAC); LAN B dc 10.231.2.20 (slapd + dnsmasq),
files .21 (smbd), web .22 (intranet HTTP); "internet" cdn 198.51.100.30 (HTTP + TLS, used by
everyone) and rare 198.51.100.31 (an attacker's server). Every server is a real one, started in the
foreground in its host's namespace with its config and state in a temp dir deleted afterwards.
Captures are tcpdump on br-a in the gateway namespace (``-s 0``, ``not arp and not ip6``).

Each session is a few minutes of one workstation's ordinary work: DNS lookups to dc, browsing the
intranet and the CDN (HTTP and HTTPS), one SMB logon that lists and reads a share, one LDAP bind and
search. :mod:`tests.lab.compose` turns these into a multi-day baseline. Needs root.

The command re-runs itself under ``unshare --mount`` with a private tmpfs on /run/netns, so its
``vg5ca1-*`` namespace names cannot collide with another recording of the same layout running at the
same time (the names are fixed by the lab id). The gateway's bridge MACs are fixed too (the kernel
would pick random ones), so the router looks the same in every recording.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.lab.netns import Host, HostSpec, Lab, bridge_capture, http_server, in_private_netns_names, lab

LAB_ID = "5ca1"
LAN_A_HOSTS: list[HostSpec] = ["ws1", "ws2", ("pi", "dc:a6:32:5c:a1:0c")]
LAN_B_HOSTS: list[HostSpec] = ["dc", "files", "web"]
INTERNET_HOSTS: list[HostSpec] = ["cdn", "rare"]

DC_IP, FILES_IP, WEB_IP = "10.231.2.20", "10.231.2.21", "10.231.2.22"
CDN_IP, RARE_IP = "198.51.100.30", "198.51.100.31"
DOMAIN = "corp.example.test"
LDAP_BASE = "dc=corp,dc=example,dc=test"
USER, PASSWORD = "alice", "Summer-Breeze-26"
SHARE = "projects"
TUNNEL_DOMAIN = "tunnel.example.test"
BROWSER_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"

# Names dc answers (dnsmasq --addn-hosts). Everything under .test that is not listed is NXDOMAIN.
HOSTS_FILE = f"""\
{DC_IP} dc.{DOMAIN} dc
{FILES_IP} files.{DOMAIN} files
{WEB_IP} web.{DOMAIN} intranet.{DOMAIN}
{CDN_IP} cdn.example.test www.example.test static.example.test
"""

_LDIF = f"""\
dn: {LDAP_BASE}
objectClass: dcObject
objectClass: organization
o: Corp
dc: corp

dn: ou=people,{LDAP_BASE}
objectClass: organizationalUnit
ou: people

dn: uid={USER},ou=people,{LDAP_BASE}
objectClass: inetOrgPerson
uid: {USER}
cn: Alice Example
sn: Example
mail: {USER}@{DOMAIN}
userPassword: {PASSWORD}

dn: uid=bob,ou=people,{LDAP_BASE}
objectClass: inetOrgPerson
uid: bob
cn: Bob Example
sn: Example
mail: bob@{DOMAIN}
"""

# rare's web server: GET like http.server (a .bin is application/octet-stream), PUT/POST are read and
# discarded in bounded chunks (an exfiltration sink).
RARE_SERVER = """\
import http.server, sys

class Handler(http.server.SimpleHTTPRequestHandler):
    def _sink(self):
        left = int(self.headers.get("Content-Length", "0"))
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = _sink
    do_POST = _sink

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer.allow_reuse_address = True
handler = lambda *a, **k: Handler(*a, directory=sys.argv[2], **k)
http.server.ThreadingHTTPServer((sys.argv[1], 80), handler).serve_forever()
"""


@dataclass
class Office:
    lab: Lab
    tmp: Path

    def host(self, name: str) -> Host:
        return self.lab.hosts[name]


def wait_lab_free(lab_id: str = LAB_ID, timeout_s: float = 900) -> None:
    """The fixed lab id means fixed namespace names: wait (bounded) while another recording uses them."""
    deadline = time.monotonic() + timeout_s
    while True:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
        if f"vg{lab_id}-" not in listed:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"namespaces vg{lab_id}-* still in use after {timeout_s:.0f}s")
        print(f"lab {lab_id} busy (another recording?), waiting", file=sys.stderr)
        time.sleep(10)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _dns(office: Office, extra: Sequence[str] = ()) -> None:
    tmp = office.tmp / "dns"
    hosts = _write(tmp / "hosts", HOSTS_FILE)
    office.host("dc").spawn(
        "dnsmasq",
        "--no-daemon",
        "--conf-file=/dev/null",
        f"--listen-address={DC_IP}",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        f"--addn-hosts={hosts}",
        "--pid-file=",
        "--user=root",
        "--group=root",
        "--local=/test/",
        "--local-ttl=300",
        # The tunnel domain is delegated to rare (the attacker's name server); dc forwards to it.
        f"--server=/{TUNNEL_DOMAIN}/{RARE_IP}",
        *extra,
    )


def _ldap(office: Office) -> None:
    tmp = office.tmp / "ldap"
    (tmp / "db").mkdir(parents=True)
    conf = _write(
        tmp / "slapd.conf",
        "\n".join(
            [
                *(f"include /etc/ldap/schema/{s}.schema" for s in ("core", "cosine", "inetorgperson", "nis")),
                f"pidfile {tmp}/slapd.pid",
                f"argsfile {tmp}/slapd.args",
                "modulepath /usr/lib/ldap",
                "moduleload back_mdb",
                "database mdb",
                "maxsize 16777216",
                f'suffix "{LDAP_BASE}"',
                f'rootdn "cn=admin,{LDAP_BASE}"',
                f"rootpw {PASSWORD}",
                f"directory {tmp}/db",
                "access to attrs=userPassword by anonymous auth by self read by * none",
                "access to * by users read by anonymous auth",
                "",
            ]
        ),
    )
    ldif = _write(tmp / "base.ldif", _LDIF)
    # Offline load (no traffic): the directory exists before the server starts.
    subprocess.run(["slapadd", "-f", str(conf), "-l", str(ldif)], check=True, capture_output=True, timeout=30)
    office.host("dc").spawn("slapd", "-d", "0", "-h", f"ldap://{DC_IP}/", "-f", str(conf))


def _smb(office: Office) -> None:
    tmp = office.tmp / "smb"
    share = tmp / "share"
    for sub in ("private", "lock", "state", "cache", "pid", "log", "ncalrpc", "share/reports"):
        (tmp / sub).mkdir(parents=True, exist_ok=True)
    _write(share / "readme.txt", "Project share. Please keep reports under reports/.\n")
    _write(share / "reports" / "q3-summary.txt", "Q3 summary\n" + "figures and notes\n" * 200)
    usermap = _write(tmp / "users.map", f"root = {USER}\n")
    conf = _write(
        tmp / "smb.conf",
        f"""\
[global]
  workgroup = CORP
  netbios name = FILES
  server role = standalone server
  security = user
  map to guest = never
  username map = {usermap}
  passdb backend = tdbsam:{tmp}/private/passdb.tdb
  private dir = {tmp}/private
  lock directory = {tmp}/lock
  state directory = {tmp}/state
  cache directory = {tmp}/cache
  pid directory = {tmp}/pid
  ncalrpc dir = {tmp}/ncalrpc
  binddns dir = {tmp}/private
  log file = {tmp}/log/smbd.log
  max log size = 1000
  interfaces = {FILES_IP}/24
  bind interfaces only = yes
  disable netbios = yes
  smb ports = 445
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  server min protocol = SMB2_10

[{SHARE}]
  path = {share}
  read only = no
  valid users = root
""",
    )
    subprocess.run(
        ["smbpasswd", "-a", "-s", "-c", str(conf), "root"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=30,
    )
    # Its own UTS namespace, so smbd announces the name "files" (not the recording machine's hostname).
    office.host("files").spawn(
        "unshare", "--uts", "sh", "-c", 'hostname files && exec "$@"', "sh",
        "smbd", "--foreground", "--no-process-group", f"--configfile={conf}",
    )  # fmt: skip
    # smbclient's own state (gencache etc.) also stays in the temp dir.
    _write(
        office.tmp / "smbclient.conf",
        f"""\
[global]
  workgroup = CORP
  lock directory = {tmp}/client-lock
  state directory = {tmp}/client-state
  cache directory = {tmp}/client-cache
  private dir = {tmp}/client-private
  client min protocol = SMB2_10
""",
    )


def _web(office: Office) -> None:
    root = office.tmp / "web"
    _write(root / "index.html", "<html><body><h1>Intranet</h1><a href='news.html'>News</a></body></html>\n")
    _write(
        root / "news.html", "<html><body>" + "<p>Canteen menu and office news.</p>" * 40 + "</body></html>\n"
    )
    _write(root / "timesheet.html", "<html><body><form>Hours: <input name=h></form></body></html>\n")
    http_server(office.host("web"), 80, root)


def _cdn(office: Office) -> None:
    root = office.tmp / "cdn"
    _write(
        root / "index.html",
        "<html><head><script src='/static/app.js'></script></head><body>cdn</body></html>\n",
    )
    _write(root / "static" / "app.js", "/* app */\n" + "function f(x){return x*2;}\n" * 300)
    _write(root / "static" / "style.css", "body{font-family:sans-serif}\n" * 100)
    cdn = office.host("cdn")
    http_server(cdn, 80, root)
    key, cert = office.tmp / "cdn.key", office.tmp / "cdn.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=cdn.example.test",
            "-addext",
            "subjectAltName=DNS:cdn.example.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    cdn.spawn(
        "openssl",
        "s_server",
        "-quiet",
        "-accept",
        f"{CDN_IP}:443",
        "-www",
        "-cert",
        str(cert),
        "-key",
        str(key),
        stdin=subprocess.DEVNULL,
    )


def _rare(office: Office) -> None:
    root = office.tmp / "rare"
    _write(root / "index.html", "<html><body>It works</body></html>\n")
    _write(root / "api" / "v1" / "status.json", '{"status":"ok","next":60}\n')
    rng = random.Random(31)
    for name in ("stage.bin", "task.bin", "update.bin"):
        (root / "dl").mkdir(parents=True, exist_ok=True)
        (root / "dl" / name).write_bytes(rng.randbytes(rng.randrange(6_000, 24_000)))
    script = _write(office.tmp / "rare_server.py", RARE_SERVER)
    office.host("rare").spawn("python3", str(script), RARE_IP, str(root))


def fix_gateway_macs(built: Lab) -> None:
    """Give the gateway's bridges MACs derived from the lab id (the kernel picks random ones), so the
    router's MAC, seen as the peer of every routed flow, is the same in every recording."""
    for index, bridge in enumerate(("br-a", "br-b", "br-c"), start=0xFA):
        if built.gateway_run("ip", "link", "show", bridge).returncode == 0:
            mac = f"02:76:67:{built.lab_id[:2]}:{built.lab_id[2:]}:{index:02x}"
            proc = built.gateway_run("ip", "link", "set", bridge, "address", mac)
            if proc.returncode != 0:
                raise RuntimeError(f"cannot set {bridge} MAC: {proc.stderr.strip()}")


@contextlib.contextmanager
def _lab_when_free(
    lab_id: str, attempts: int = 6, lan_a: Sequence[HostSpec] = tuple(LAN_A_HOSTS)
) -> Iterator[Lab]:
    """``lab()`` with the fixed id, retried (bounded) when another recording grabbed the names first.
    ``lan_a`` may add hosts after the usual ones: those keep their LAN A addresses and MACs (the hosts behind
    the gateway then get other MACs, which a capture on br-a never shows)."""
    for attempt in range(attempts):
        wait_lab_free(lab_id)
        try:
            context = lab(lan_a, LAN_B_HOSTS, INTERNET_HOSTS, lab_id=lab_id)
            built = context.__enter__()
        except RuntimeError as exc:
            if "exists" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(5 + 5 * attempt)
            continue
        try:
            yield built
        finally:
            context.__exit__(None, None, None)
        return


@contextlib.contextmanager
def office(dns_extra: Sequence[str] = (), lab_id: str = LAB_ID) -> Iterator[Office]:
    """The scenario lab with every server running; torn down (processes, namespaces, temp dir) on exit.

    Recordings always use :data:`LAB_ID` (fixed MACs); another ``lab_id`` is only for trying things out.
    """
    with tempfile.TemporaryDirectory(prefix="vigil-office-") as tmp, contextlib.ExitStack() as stack:
        built = stack.enter_context(_lab_when_free(lab_id))
        fix_gateway_macs(built)
        place = Office(built, Path(tmp))
        _dns(place, dns_extra)
        _ldap(place)
        _smb(place)
        _web(place)
        _cdn(place)
        _rare(place)
        services = [(DC_IP, 389), (FILES_IP, 445), (WEB_IP, 80), (CDN_IP, 80), (CDN_IP, 443), (RARE_IP, 80)]
        for ip, port in services:
            built.wait_reachable("pi", ip, port, timeout_s=20)
        deadline = time.monotonic() + 20
        while not dig(place.host("pi"), f"web.{DOMAIN}"):
            if time.monotonic() > deadline:
                raise RuntimeError("dnsmasq on dc does not answer")
            time.sleep(0.5)
        yield place


@contextlib.contextmanager
def capture(built: Lab, out: Path, snaplen: int = 0) -> Iterator[Path]:
    """tcpdump on br-a in the gateway namespace for the duration of the block; the pcap ends at ``out``."""
    with bridge_capture(built, out, snaplen=snaplen):
        yield out
    print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)


# --- what a workstation does (each call is one bounded real tool run) ---


def dig(host: Host, name: str, qtype: str = "A") -> list[str]:
    proc = host.run("dig", "+short", "+tries=1", "+time=2", f"@{DC_IP}", name, qtype, timeout=10)
    return [line for line in proc.stdout.splitlines() if line.strip()]


def curl(
    host: Host,
    url: str,
    *,
    agent: str | None = BROWSER_UA,
    resolve: str | None = None,
    extra: Sequence[str] = (),
    max_time: float = 10,
) -> str:
    """One HTTP(S) request with curl; returns the status code curl reports ("000" on failure)."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(max_time)]
    if agent is not None:  # None: curl's own user agent
        args += ["-A", agent]
    if resolve is not None:
        args += ["--resolve", resolve]
    proc = host.run(*args, *extra, url, timeout=max_time + 10)
    return proc.stdout.strip() or "000"


def browse(host: Host, name: str, path: str = "/", *, https: bool = False) -> str:
    """Look a name up at dc, then fetch a page from the address it resolves to (as a browser would)."""
    addresses = dig(host, name)
    if not addresses:
        return "000"
    port = 443 if https else 80
    scheme = "https" if https else "http"
    extra = ("-k",) if https else ()
    return curl(host, f"{scheme}://{name}{path}", resolve=f"{name}:{port}:{addresses[-1]}", extra=extra)


def smb_logon(office: Office, host: Host, netbios: str, commands: str = "ls; cd reports; ls") -> str:
    proc = host.run(
        "smbclient",
        f"//{FILES_IP}/{SHARE}",
        "-U",
        f"{USER}%{PASSWORD}",
        "-n",
        netbios,
        "-W",
        "CORP",
        f"--configfile={office.tmp / 'smbclient.conf'}",
        "-c",
        commands,
        timeout=30,
    )
    return proc.stdout + proc.stderr


def ldap_search(host: Host, flt: str = f"(uid={USER})") -> str:
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            host.netns,
            "ldapsearch",
            "-x",
            "-LLL",
            "-H",
            f"ldap://{DC_IP}",
            "-D",
            f"uid={USER},ou=people,{LDAP_BASE}",
            "-w",
            PASSWORD,
            "-b",
            LDAP_BASE,
            flt,
            "cn",
            "mail",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        env={"LDAPNOINIT": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    return proc.stdout + proc.stderr


# --- sessions ---


def office_session(
    office: Office,
    who: str,
    netbios: str,
    *,
    steps: int,
    seed: int,
    interval_s: tuple[float, float] = (10.0, 20.0),
    smb_step: int = 1,
    ldap_step: int = 3,
    smb_commands: str = "ls; cd reports; ls",
) -> dict[str, int]:
    """``steps`` rounds of lookups and browsing, one SMB logon and one LDAP search; bounded by ``steps``."""
    host = office.host(who)
    rng = random.Random(seed)
    intranet = ["/", "/news.html", "/timesheet.html"]
    cdn = ["/", "/static/app.js", "/static/style.css"]
    counts = {"dns": 0, "http": 0, "https": 0, "smb": 0, "ldap": 0}
    for step in range(steps):
        for name in rng.sample([f"dc.{DOMAIN}", f"files.{DOMAIN}", "static.example.test"], k=1):
            dig(host, name)
            counts["dns"] += 1
        browse(host, f"intranet.{DOMAIN}", rng.choice(intranet))
        browse(host, "cdn.example.test", rng.choice(cdn))
        browse(host, "cdn.example.test", "/", https=True)
        counts["dns"] += 3
        counts["http"] += 2
        counts["https"] += 1
        if step == smb_step:
            smb_logon(office, host, netbios, smb_commands)
            counts["smb"] += 1
        if step == ldap_step:
            ldap_search(host)
            counts["ldap"] += 1
        if step < steps - 1:
            time.sleep(rng.uniform(*interval_s))
    return counts


def _ws1_morning(office: Office) -> dict[str, int]:
    return office_session(office, "ws1", "WS1", steps=10, seed=101)


def _ws2_morning(office: Office) -> dict[str, int]:
    return office_session(office, "ws2", "WS2", steps=10, seed=202, smb_step=2, ldap_step=1)


def _ws1_afternoon(office: Office) -> dict[str, int]:
    return office_session(
        office,
        "ws1",
        "WS1",
        steps=11,
        seed=303,
        smb_step=4,
        ldap_step=6,
        smb_commands="cd reports; get q3-summary.txt /dev/null; ls",
    )


SESSIONS: dict[str, Callable[[Office], dict[str, int]]] = {
    "ws1-morning": _ws1_morning,
    "ws2-morning": _ws2_morning,
    "ws1-afternoon": _ws1_afternoon,
}


def record(outdir: Path, only: Sequence[str] = ()) -> None:
    # One lab per session: the fixed lab id is shared with other recordings, so hold it briefly.
    for name in list(only) or list(SESSIONS):
        with office() as place, capture(place.lab, outdir / f"{name}.pcap"):
            t0 = time.monotonic()
            counts = SESSIONS[name](place)
        print(f"{name}: {counts} in {time.monotonic() - t0:.0f}s", file=sys.stderr)


def terminate_cleanly() -> None:
    """SIGTERM raises SystemExit, so the lab is torn down (processes killed, namespaces deleted)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main() -> int:
    terminate_cleanly()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--only", action="append", choices=sorted(SESSIONS), default=[])
    args = parser.parse_args()
    if (code := in_private_netns_names("tests.lab.scenarios_benign", sys.argv[1:])) is not None:
        return code
    record(args.outdir, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
