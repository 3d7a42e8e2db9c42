"""SMB1 session setups without extended security (MS-CIFS 2.2.4.53): the logons of old tools (Metasploit
smb_login, hydra, nmap smb-brute) carry the account and domain in clear next to LM/NTLM responses.

Truth comes from the captures: two corpus captures (read with tshark, commands in the comments) and a
capture each run makes of smbclient logging on to a real Samba in a network namespace it creates.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.logwriter import pipeline_records
from sensor.protocols.base import ParseError
from sensor.protocols.smb import parser as p
from tests.conftest import CORPUS
from tests.lab.netns import wait_until_still
from vigil.config import SensorConfig
from vigil.flow.v1 import smb_pb2

LOGON_FAILURE = 0xC000006D
INVALID_PARAMETER = 0xC000000D


def session_setups(capture: Path, config: SensorConfig | None = None) -> list[smb_pb2.SmbSessionSetup]:
    records = pipeline_records(config or SensorConfig(), [capture], seed=1)
    return [r.smb_session_setup for r in records if r.HasField("smb_session_setup")]


def shape(rec: smb_pb2.SmbSessionSetup) -> tuple[str, str, str, int]:
    return rec.auth_mechanism, rec.username, rec.domain, rec.status


# -- corpus captures -------------------------------------------------------------------------------


def test_ndpi_smbv1_anonymous_logon() -> None:
    capture = CORPUS / "reference/ndpi/smbv1.pcap"
    if not capture.is_file():
        pytest.skip(f"corpus capture missing: {capture}")
    # tshark -r smbv1.pcap -Y 'smb.cmd==0x73' -T fields -e smb.wct -e smb.ansi_pwlen -e smb.unicode_pwlen
    #   -e smb.account -e smb.primary_domain -e smb.nt_status
    # -> request: 13, 1, 0, "", "", 0x0; response: 3, ..., 0x00000000 (the OEM password is one NUL byte)
    assert [shape(r) for r in session_setups(capture)] == [("anonymous", "", "", 0)]


def test_nmap_version_scan_anonymous_logon_names_its_domain() -> None:
    capture = CORPUS / "wild/markofu__pcaps/version_scan.pcap"
    if not capture.is_file():
        pytest.skip(f"corpus capture missing: {capture}")
    # tshark -r version_scan.pcap -Y 'smb.cmd==0x73' -T fields -e smb.wct -e smb.ansi_pwlen
    #   -e smb.unicode_pwlen -e smb.account -e smb.primary_domain -e smb.nt_status
    # -> request (frame 2071): 13, 0, 0, "", "Microsoft"; response (2072): 0x00000000
    # The scanning host's own connect() segments carry offloaded TCP checksums (tshark -o
    # tcp.check_checksum:TRUE marks frames 2069 and 2071 bad), too few for "auto" to notice: read them as
    # Zeek -C would.
    config = SensorConfig(verify_l4_checksums="off")
    assert [shape(r) for r in session_setups(capture, config)] == [("anonymous", "", "Microsoft", 0)]


# -- parser, on messages built per MS-CIFS ----------------------------------------------------------


def smb1_header(command: int, *, flags2: int, status: bytes = b"\x00" * 4, response: bool = False) -> bytes:
    flags = p.SMB1_FLAGS_REPLY if response else 0
    return (
        p.SMB1_MAGIC
        + bytes([command])
        + status
        + bytes([flags])
        + flags2.to_bytes(2, "little")
        + b"\x00" * 20
    )


def setup_andx(oem: bytes, nt: bytes, account: str, domain: str, *, unicode: bool) -> bytes:
    """A Session Setup AndX request, WordCount 13 (MS-CIFS 2.2.4.53.1)."""
    flags2 = p.SMB1_FLAGS2_UNICODE if unicode else 0
    words = (
        bytes([0xFF, 0])
        + (0).to_bytes(2, "little")
        + (4356).to_bytes(2, "little")
        + (2).to_bytes(2, "little")
    )
    words += (1).to_bytes(2, "little") + (0).to_bytes(4, "little")
    words += (
        len(oem).to_bytes(2, "little")
        + len(nt).to_bytes(2, "little")
        + b"\x00" * 4
        + (0xD4).to_bytes(4, "little")
    )
    data = oem + nt
    strings = [account, domain, "Unix", "Samba"]
    if unicode:
        # Strings are 2-byte aligned from the header's start; 32 + 1 + 26 + 2 = 61 bytes precede the data.
        if (61 + len(data)) % 2:
            data += b"\x00"
        data += b"".join(s.encode("utf-16-le") + b"\x00\x00" for s in strings)
    else:
        data += b"".join(s.encode("latin-1") + b"\x00" for s in strings)
    body = bytes([13]) + words + len(data).to_bytes(2, "little") + data
    return smb1_header(p.SMB1_SESSION_SETUP_ANDX, flags2=flags2) + body


def parsed(msg: bytes) -> p.Smb1SessionSetup:
    message = p.parse_smb1(msg)
    found = p.smb1_session_setup_andx(message.blocks[0], message.header.unicode)
    assert found is not None
    return found


NTLMV2 = b"\x11" * 16 + b"\x01\x01\x00\x00" + b"\x00" * 4 + b"\x22" * 8 + b"\x33" * 8 + b"\x00" * 8


@pytest.mark.parametrize(
    ("oem", "nt", "account", "mech"),
    [
        (b"\x01" * 24, b"", "alice", "lm"),
        (b"\x01" * 24, b"\x01" * 24, "alice", "lm"),
        (b"\x01" * 24, b"\x02" * 24, "alice", "ntlmv1"),
        (b"\x00" * 24, b"\x02" * 24, "alice", "ntlmv1"),
        (b"\x01" * 24, NTLMV2, "alice", "ntlmv2"),
        (b"Secret1\x00", b"", "alice", "plaintext"),
        (b"", "Secret1".encode("utf-16-le"), "alice", "plaintext"),
        (b"", b"", "", "anonymous"),
        (b"\x00", b"", "", "anonymous"),
    ],
)
@pytest.mark.parametrize("unicode", [True, False])
def test_password_shapes_name_the_mechanism(
    oem: bytes, nt: bytes, account: str, mech: str, unicode: bool
) -> None:
    found = parsed(setup_andx(oem, nt, account, "LAB", unicode=unicode))
    assert (found.mechanism, found.account, found.domain) == (mech, account, "LAB")
    # Nothing of the secrets is kept on the parsed message.
    assert not any(isinstance(v, bytes) and v for v in (getattr(found, f) for f in found.__slots__))


def test_plaintext_when_the_server_asked_for_it() -> None:
    # A 24-byte password in clear is still clear when the server's negotiate said "no challenge/response".
    found = parsed(setup_andx(b"x" * 23 + b"\x00", b"", "alice", "LAB", unicode=False))
    assert p.smb1_logon_mechanism(found, encrypted_passwords=False) == "plaintext"
    assert p.smb1_logon_mechanism(found, encrypted_passwords=True) == "lm"


@pytest.mark.parametrize(
    ("error_class", "code", "nt_status"),
    [
        (0x00, 0x0000, 0x00000000),
        (0x02, 0x0002, LOGON_FAILURE),  # ERRSRV / ERRbadpw
        (0x01, 0x0005, 0xC0000022),  # ERRDOS / ERRnoaccess -> ACCESS_DENIED
        (0x02, 0x08C2, 0xC0000071),  # ERRSRV / ERRpasswordExpired
        (0x02, 0x0006, 0xC00000CC),  # ERRSRV / ERRinvnetname -> BAD_NETWORK_NAME
        (0x03, 0x001F, 0xC0000001),  # ERRHRD / ERRgeneral: no NT equivalent kept -> UNSUCCESSFUL
    ],
)
def test_dos_errors_are_mapped_to_nt_status(error_class: int, code: int, nt_status: int) -> None:
    raw = bytes([error_class, 0]) + code.to_bytes(2, "little")
    msg = p.parse_smb1(
        smb1_header(p.SMB1_SESSION_SETUP_ANDX, flags2=0x0001, status=raw, response=True) + b"\x00\x00\x00"
    )
    assert msg.header.status == nt_status
    # With the NT status flag set, the same four bytes are an NT status read as is.
    flags2 = p.SMB1_FLAGS2_NT_STATUS
    msg = p.parse_smb1(
        smb1_header(p.SMB1_SESSION_SETUP_ANDX, flags2=flags2, status=raw, response=True) + b"\x00\x00\x00"
    )
    assert msg.header.status == int.from_bytes(raw, "little")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_fuzzed_session_setup_raises_only_parse_error(tail: bytes, unicode: bool) -> None:
    base = setup_andx(b"\x01" * 24, b"\x02" * 24, "alice", "LAB", unicode=unicode)
    for msg in (base[:32] + tail, base[: 32 + len(tail) % 80] + tail):
        try:
            message = p.parse_smb1(msg)
            for block in message.blocks:
                found = p.smb1_session_setup_andx(block, message.header.unicode)
                if found is not None:
                    p.smb1_logon_mechanism(found, encrypted_passwords=True)
        except ParseError:
            pass


# -- a real Samba, in a namespace this test creates -------------------------------------------------

TOOLS = ("ip", "smbd", "smbclient", "smbpasswd", "tcpdump", "tshark")


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespace)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    return f"needs {', '.join(missing)}" if missing else None


# (smbclient arguments, the mechanism its session setup shows). Samba's client sends the NTLM response in
# both password fields unless "client lanman auth" is on, so the first attempt has the "lm" shape.
ATTEMPTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("-U", "alice%Wrong-Guess-1", "--option=client ntlmv2 auth=no"), "lm"),
    (
        ("-U", "alice%Right-Pass-1", "--option=client ntlmv2 auth=no", "--option=client lanman auth=yes"),
        "ntlmv1",
    ),
    (
        ("-U", "mallory%Wrong-Guess-2", "--option=client ntlmv2 auth=no", "--option=client lanman auth=yes"),
        "ntlmv1",
    ),
    (("-U", "alice%Wrong-Guess-3", "--option=client ntlmv2 auth=yes"), "ntlmv2"),
    (("-N", "-U", ""), "anonymous"),
    # Extended security (NTLMSSP in SPNEGO) on the same SMB1 dialect: user and domain come from AUTHENTICATE.
    (("-U", "alice%Wrong-Guess-4", "--option=client use spnego=yes"), "ntlm"),
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@contextlib.contextmanager
def _netns() -> Iterator[str]:
    name = f"vgsmb1-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, timeout=10)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    # A session of its own: smbd signals its whole process group when it stops, which must not be pytest's.
    return subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process _spawn started: the process first, so it can stop and reap what it forked (smbd's
    workers), then anything left in its process group."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)


@pytest.fixture(scope="module")
def samba_capture() -> Iterator[Path]:
    if reason := _unavailable():
        pytest.skip(reason)
    tmp = Path(tempfile.mkdtemp(prefix="vg-smb1-", dir="/tmp"))
    tmp.chmod(0o755)
    dirs = {d: tmp / d for d in ("private", "lock", "state", "cache", "pid", "ncalrpc", "share", "client")}
    for path in dirs.values():
        path.mkdir()
    state = "".join(f"  {k} = {dirs[v]}\n" for k, v in (
        ("private dir", "private"), ("lock directory", "lock"), ("state directory", "state"),
        ("cache directory", "cache"), ("pid directory", "pid"), ("ncalrpc dir", "ncalrpc"),
    ))  # fmt: skip
    usermap = _write(tmp / "users.map", "nobody = alice\n")
    conf = _write(
        tmp / "smb.conf",
        "[global]\n  workgroup = LAB\n  netbios name = FILES\n  server role = standalone server\n"
        f"  passdb backend = tdbsam:{dirs['private'] / 'passdb.tdb'}\n{state}"
        f"  log file = {tmp / 'log.smbd'}\n  interfaces = 127.0.0.1/8\n  bind interfaces only = yes\n"
        f"  smb ports = 445\n  disable netbios = yes\n  username map = {usermap}\n  map to guest = Never\n"
        "  load printers = no\n  printing = bsd\n  printcap name = /dev/null\n  disable spoolss = yes\n"
        # SMB1 and the old challenge/response forms, which Samba refuses by default.
        "  server min protocol = NT1\n  ntlm auth = yes\n  lanman auth = yes\n"
        f"[data]\n  path = {dirs['share']}\n  read only = yes\n  valid users = nobody\n",
    )
    client = _write(
        tmp / "client.conf",
        "[global]\n  workgroup = LAB\n  disable netbios = yes\n  name resolve order = host\n"
        + "".join(
            f"  {k} = {dirs['client']}\n"
            for k in (
                "private dir",
                "lock directory",
                "state directory",
                "cache directory",
                "pid directory",
                "ncalrpc dir",
            )
        )
        + "  client min protocol = NT1\n  client max protocol = NT1\n  client use spnego = no\n",
    )
    subprocess.run(
        ["smbpasswd", "-c", str(conf), "-a", "-s", "nobody"],
        input=b"Right-Pass-1\nRight-Pass-1\n", check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    out = tmp / "smb1-logons.pcap"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with _netns() as ns:
            ex = ("ip", "netns", "exec", ns)
            procs.append(_spawn(*ex, "smbd", "--foreground", "--no-process-group", f"--configfile={conf}"))
            procs.append(_spawn(*ex, "tcpdump", "-i", "lo", "-U", "-w", str(out), "tcp port 445"))
            deadline = time.monotonic() + 15
            while b":445 " not in subprocess.run([*ex, "ss", "-ltn"], capture_output=True, timeout=10).stdout:
                if time.monotonic() > deadline or procs[0].poll() is not None:
                    pytest.skip("smbd did not start listening")
                time.sleep(0.2)
            time.sleep(0.5)  # tcpdump's socket is open by now; a missed first SYN would only cost flags
            smbclient = [*ex, "smbclient", "//127.0.0.1/data", "-s", str(client), "-t", "20", "-c", "ls"]
            for args, _mech in ATTEMPTS:
                # On a loaded machine a client can time out before its session setup; that attempt is
                # made again (a few times at most) so the capture holds every logon the test asks for.
                for _try in range(3):
                    done = subprocess.run([*smbclient, *args], capture_output=True, timeout=60)
                    said = done.stdout + done.stderr
                    if not any(
                        m in said
                        for m in (
                            b"NT_STATUS_IO_TIMEOUT",
                            b"NT_STATUS_CONNECTION_REFUSED",
                            b"failed (Error NT_STATUS",
                        )
                    ):
                        break
            wait_until_still(out)
            for proc in reversed(procs):
                _stop(proc)
        yield out
    finally:
        for proc in procs:
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def tshark_logons(capture: Path) -> list[tuple[str, str, int]]:
    """(account, domain, NT status) of every final session setup, as tshark reads the capture: the account
    and domain of the request (SMB1 fields or NTLMSSP AUTHENTICATE), the status of its reply."""
    fields = ("smb.flags.response", "smb.account", "smb.primary_domain", "ntlmssp.auth.username",
              "ntlmssp.auth.domain", "smb.nt_status", "tcp.stream", "smb.mid")  # fmt: skip
    cmd = ["tshark", "-r", str(capture), "-Y", "smb.cmd == 0x73", "-T", "fields", "-E", "occurrence=f"]
    out = subprocess.run([*cmd, *(a for f in fields for a in ("-e", f))], capture_output=True, text=True,
                         timeout=60, check=True).stdout  # fmt: skip
    asked: dict[tuple[str, str], tuple[str, str]] = {}
    logons: list[tuple[str, str, int]] = []
    for line in out.splitlines():
        response, account, domain, ntlm_user, ntlm_domain, status, stream, mid = line.split("\t")
        if response in ("0", "False"):
            asked[(stream, mid)] = (account or ntlm_user, domain or ntlm_domain)
        elif int(status, 16) != p.STATUS_MORE_PROCESSING_REQUIRED and (stream, mid) in asked:
            logons.append((*asked.pop((stream, mid)), int(status, 16)))
    return logons


def test_samba_logons_are_reported_with_account_domain_mechanism_and_status(samba_capture: Path) -> None:
    truth = tshark_logons(samba_capture)
    ours = session_setups(samba_capture)
    assert [(r.username, r.domain, r.status) for r in ours] == truth
    assert [r.auth_mechanism for r in ours] == [mech for _args, mech in ATTEMPTS]
    statuses = {r.username: r.status for r in ours if r.auth_mechanism != "ntlm"}
    assert statuses["mallory"] == LOGON_FAILURE
    assert any(r.username == "alice" and r.status == 0 for r in ours)
    assert any(r.username == "alice" and r.status == INVALID_PARAMETER for r in ours)
    assert ("ntlm", "alice", "LAB", LOGON_FAILURE) in [shape(r) for r in ours]
