"""What the golden tests and ``python -m tests.sensor.golden_report`` compare with Zeek, and how.

Each capture of the shared reference corpus runs through the real sensor (SensorPipeline with the
default analyzers) and the row mapping of ``vigil sensor read --format zeek-json``
(:mod:`sensor.logwriter`); the rows are rendered as Zeek's TSV writer would and matched with Zeek's
own baseline logs for that capture by connection (uids are random, so they never take part).

The comparison is strict: every baseline of a compared log in the corpus takes part (trimmed ones on
the columns they have), each run the way its btest ran Zeek (:data:`BTESTS`: which trace, with or
without ``-C``); the originator must be Zeek's; a field one side sets and the other leaves unset is a
disagreement (counted apart, as "set-vs-unset"). :func:`all_specs` says, per log, which columns are
not compared and why, and the agreement the tests require. The tests and the report both read it, so
they can not drift apart.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry

from sensor.analyzers import default_registry
from sensor.logwriter import pipeline_records, zeek_logs
from sensor.protocols.dhcp import DhcpSessionFactory, TransactionTable
from sensor.protocols.smb import parser as smb_parser
from sensor.registry import Registry
from tests.sensor.records import parse_errors
from tests.sensor.zeek_baseline import SET_VS_UNSET, VALUE, match_rows, read_zeek_log, zeek_value
from vigil.config import SensorConfig
from vigil.sensor.v1 import sensor_pb2

# Columns that identify rather than describe: the connection (compared through the row matching
# itself, direction included), uids (random per run, in Zeek as in Vigil) and ts (btest baselines
# canonify every time stamp to XXXXXXXXXX.XXXXXX).
CONN_COLUMNS = frozenset({"ts", "uid", "uids", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"})


@dataclass(frozen=True)
class BTest:
    """One of Zeek's btests whose baselines the corpus holds: what it read, and how.

    ``verified_checksums`` is True when the test ran Zeek without ``-C``: Zeek then dropped packets
    whose IPv4, TCP or UDP checksum is wrong, as a receiving host would, and the sensor must be run
    the same way to compare like with like. ``reads`` names the capture a baseline file came from when
    it is not the capture the corpus filed it under (a test that read two traces, or a baseline the
    corpus copied beside both), by a substring of the file's name. ``excluded`` says why none of the
    test's baselines can be compared with the sensor.
    """

    verified_checksums: bool
    reads: tuple[tuple[str, str], ...] = ()
    dhcp_limits: tuple[int, int] | None = None
    # redef LDAP::default_log_search_attributes = T
    ldap_search_attributes: bool = False
    # redef SMB::logged_file_actions += { SMB::FILE_READ, SMB::FILE_WRITE }
    smb_reads_writes: bool = False
    excluded: str = ""
    # `zeek -b` loading base/protocols/dce-rpc alone: no SMB analyzer ran, so DCE-RPC over SMB named pipes
    # (ports 139/445) has no rows in the baseline; the sensor's rows there are left out of the comparison.
    without_smb: bool = False


# Every btest directory of the corpus's baselines (Zeek's Baseline/<test id>/), with the command line of
# the test (from zeek/zeek's testing/btest tree, path in the corpus manifest's reference_extraction).
BTESTS: dict[str, BTest] = {
    # zeek -C -r aduser1.pcap; mv *.log krb/; zeek -C -r aduser1-ntlm.pcap; mv *.log ntlm/
    "scripts.base.protocols.ldap.aduser1": BTest(
        False, (("krb.", "zeek/ldap/aduser1.pcap"), ("ntlm.", "zeek/ldap/aduser1-ntlm.pcap"))
    ),
    # zeek -Cr kerberos135_auth.pcapng -> kerberos.log.135; zeek -Cr kerberos445_auth.pcapng -> .445
    "scripts.base.protocols.dce-rpc.spnego-gssapi-kerberos": BTest(
        False,
        (
            (".135", "zeek/dce-rpc/kerberos135_auth.pcapng"),
            (".445", "zeek/dce-rpc/kerberos445_auth.pcapng"),
        ),
    ),
    "scripts.base.protocols.dce-rpc.dce_rpc_ntlm": BTest(True, without_smb=True),  # zeek -b -r
    "scripts.base.protocols.dce-rpc.mapi": BTest(True, without_smb=True),  # bro -b -r
    "scripts.base.protocols.dce-rpc.context": BTest(False, without_smb=True),  # zeek -b -C -r
    "scripts.base.protocols.dce-rpc.dce_rpc_netlogon": BTest(True, without_smb=True),  # zeek -b -r
    "scripts.base.protocols.smb.smb1-transaction-dcerpc": BTest(False),  # bro -b -C -r
    "scripts.base.protocols.dhcp.dhcp-all-msg-types": BTest(True),  # zeek -b -r
    "scripts.base.protocols.dhcp.dhcp-discover-msg-types": BTest(True),
    "scripts.base.protocols.dhcp.inform": BTest(True),
    # zeek -b -r dhcp_flood.pcap -e 'redef DHCP::max_uids_per_log_entry=500;
    #   redef DHCP::max_msg_types_per_log_entry=8;'
    "scripts.base.protocols.dhcp.dhcp-prevent-large-msgtypes": BTest(True, dhcp_limits=(8, 500)),
    # zeek -b -r dhcp_flood.pcap -e 'redef DHCP::max_uids_per_log_entry=5' (msg types at Zeek's default)
    "scripts.base.protocols.dhcp.dhcp-prevent-large-uids": BTest(True, dhcp_limits=(-1, 5)),
    "scripts.base.protocols.dns.multiple-txt-strings": BTest(True),  # bro -r
    "scripts.base.protocols.dns.duplicate-reponses": BTest(True),  # zeek -b -r
    "scripts.base.protocols.dns.dynamic-update": BTest(False),  # zeek -b -C -r
    "scripts.base.protocols.dns.flip": BTest(True),  # bro -r
    "scripts.base.protocols.dns.tkey": BTest(False),  # zeek -b -C -r
    "scripts.base.protocols.dns.dns-edns-ecs": BTest(True),  # weird.log only
    "scripts.base.protocols.http.http-methods": BTest(True),  # bro -r
    # zeek -C -r ... -b; zeek-cut -m uid method host uri tags < http.log > http.log.cut
    "scripts.policy.protocols.http.sql-injection-plus-dvwa2": BTest(False),
    "scripts.base.protocols.krb.kinit": BTest(True),  # zeek -b -r
    "scripts.base.protocols.krb.smb_gssapi": BTest(False),  # zeek -b -C -r
    "scripts.base.protocols.krb.tgs": BTest(True),  # zeek -b -r
    "scripts.policy.protocols.krb.ticket-logging": BTest(True),  # zeek -b -r
    "scripts.base.protocols.tcp.krb-tcp-tso": BTest(False),  # zeek -C -r
    "scripts.base.protocols.ldap.add": BTest(True),  # zeek -r
    # zeek -C -r simpleauth.pcap; redef LDAP::default_log_search_attributes = T
    "scripts.base.protocols.ldap.attributes": BTest(False, ldap_search_attributes=True),
    "scripts.base.protocols.ldap.basic": BTest(False),  # zeek -C -r
    "scripts.base.protocols.ldap.log_policy": BTest(False),
    # zeek -C -r ldap_escaping_test.pcapng -> ldap_search.log.1; zeek -C -r ldap_search_umlaut.pcap -> .2
    "scripts.base.protocols.ldap.filter_escaping": BTest(
        False,
        (
            (".log.1", "zeek/ldap/ldap_escaping_test.pcapng"),
            (".log.2", "zeek/ldap/ldap_search_umlaut.pcap"),
        ),
    ),
    "scripts.base.protocols.ldap.invalid_credentials": BTest(False),
    "scripts.base.protocols.ldap.ldap_substring_search": BTest(False),
    "scripts.base.protocols.ldap.modify-request": BTest(False),
    "scripts.base.protocols.ldap.sasl-encrypted": BTest(False),
    "scripts.base.protocols.ldap.sasl-gss-spnego-ntlm": BTest(False),
    "scripts.base.protocols.ldap.sasl-ntlm": BTest(False),
    # The corpus filed this test's baselines beside missing_ldap_logs.pcapng too; it read this trace.
    "scripts.base.protocols.ldap.sasl-signed-clear-2": BTest(
        False, (("", "zeek/ldap/missing_krbtgt_ldap_request.pcapng"),)
    ),
    "scripts.base.protocols.ldap.sasl-signed-clear": BTest(False),
    "scripts.base.protocols.ldap.search_filter_extended": BTest(False),
    "scripts.base.protocols.ldap.spnego-ntlmssp": BTest(False),
    "scripts.base.protocols.ldap.starttls": BTest(True),  # zeek -r
    "scripts.base.protocols.ldap.who-am-i": BTest(True),  # zeek -r
    "scripts.base.protocols.quic.merlinc2": BTest(False),  # zeek -Cr
    "scripts.base.protocols.smb.smb1": BTest(True),  # bro -b -r
    "scripts.base.protocols.smb.smb2": BTest(True),  # bro -r
    "scripts.base.protocols.smb.smb3": BTest(True),  # zeek -r
    # zeek -C -r; both redef SMB::logged_file_actions += { SMB::FILE_READ, SMB::FILE_WRITE }
    "scripts.base.protocols.smb.smb2-read-write": BTest(False, smb_reads_writes=True),
    "scripts.base.protocols.smb.smb2-create-delete-on-close": BTest(False, smb_reads_writes=True),
    "scripts.base.protocols.smb.smb2-max-pending-messages": BTest(True),  # weird.log only
    "scripts.base.protocols.smb.smb2-read-response-non-zero-reserved1": BTest(True),  # files.log only
    "scripts.base.protocols.websocket.wstunnel-https": BTest(True),  # zeek -b -r
    "scripts.base.protocols.websocket.wstunnel-ssh": BTest(True),
    "scripts.base.protocols.websocket.wstunnel-ssh-configure": BTest(True),
    "scripts.base.protocols.websocket.wstunnel-ssh-configure-break": BTest(True),
    "scripts.base.protocols.websocket.wstunnel-ssh-configure-wrong": BTest(True),
    "scripts.base.protocols.websocket.wstunnel-ssh-disabled": BTest(True),
    "scripts.base.protocols.websocket.wstunnel-ssh-spicy": BTest(True),
    # zeek -C -r http-post-large.pcap (conn-post-large.log); its wikipedia.pcap run wrote conn-wiki.log
    "scripts.policy.protocols.conn.speculative-service": BTest(
        False, (("conn-post-large", "zeek/http/http-post-large.pcap"), ("conn-wiki", "zeek/wikipedia.pcap"))
    ),
    "scripts.base.protocols.socks.trace1": BTest(True),
    "scripts.base.protocols.mysql.caching_sha2_password-auth-switch-to-test-sha256_password": BTest(True),
    "scripts.base.protocols.rfb.vnc-scanner": BTest(True),
    "scripts.policy.misc.capture-loss": BTest(True),
    "scripts.policy.protocols.dns.detect-external-names-mdns-broadcast": BTest(True),
    "scripts.policy.protocols.dns.detect-external-names-mdns-broadcast-2": BTest(True),
    "scripts.policy.protocols.ftp.bruteforce": BTest(False),  # zeek -b -Cr
    "scripts.policy.protocols.ssh.detect-bruteforcing": BTest(True),
    "spicy.protocol-analyzer-data-in-from-tcp-to-udp": BTest(
        True,
        excluded="a Spicy test script hands the UDP/53 payload to the HTTP analyzer by hand "
        "(analyzer_... from script); no traffic analysis writes this http.log",
    ),
    "spicy.terminate-session": BTest(
        True,
        excluded="a Spicy analyzer written for the test ends the UDP session after 10 packets "
        "(zeek::terminate_session), splitting one connection into two conn.log rows",
    ),
}

# The logs Vigil writes in Zeek's format and compares; dce_rpc is reported (0 rows of ours) until the
# DCE-RPC analyzer writes it.
LOGS = (
    "conn", "dns", "dhcp", "ssl", "http", "ntlm", "kerberos", "ldap", "ldap_search",
    "smb_mapping", "smb_files", "dce_rpc", "websocket", "ftp",
)  # fmt: skip

# "krb.kerberos.log", "kerberos.log.135", "http.log.cut", "conn-wiki.log", "conn.log.cut.spicy", ...
_BASELINE_NAME = re.compile(r"^(?:[a-z]+\.)??([a-z_]+)(?:-[a-z-]+)?\.log(?:\..+)?$")


def log_of(name: str) -> str | None:
    """The log a baseline file is a copy of, from its file name."""
    m = _BASELINE_NAME.match(name)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Case:
    capture: str
    baseline: str
    # The test ran Zeek without -C (see BTest).
    verified_checksums: bool = False
    # DHCP btests that redefine the per-row limits of Zeek's DHCP script: (max_msg_types, max_uids).
    dhcp_limits: tuple[int, int] | None = None
    ldap_search_attributes: bool = False
    without_smb: bool = False
    smb_reads_writes: bool = False


@dataclass(frozen=True)
class Excluded:
    """A baseline of a compared log that can not be compared, and why."""

    baseline: str
    why: str


@dataclass(frozen=True)
class LogSpec:
    log: str
    cases: tuple[Case, ...]
    why: str
    # Columns not compared, each for a reason written in ``why``.
    skip: frozenset[str] = frozenset()
    # Required record-level agreement (strict: every row equal in every compared column).
    target: float | None = 0.98
    excluded: tuple[Excluded, ...] = ()


def _test_id(baseline: Path) -> str:
    return baseline.parent.name


def _capture_for(corpus: Path, log_file: Path) -> tuple[str, BTest]:
    base = next(p for p in log_file.parents if p.name.endswith(".baseline"))
    test_id = _test_id(log_file)
    btest = BTESTS.get(test_id)
    if btest is None:
        raise KeyError(f"{log_file}: btest {test_id} is not in golden.BTESTS; add its command line")
    capture = base.with_name(base.name.removesuffix(".baseline"))
    for needle, read in btest.reads:
        if needle in log_file.name:
            return read, btest
    return str(capture.relative_to(corpus)), btest


def _dhcp_limits(limits: tuple[int, int] | None) -> tuple[int, int] | None:
    if limits is None:
        return None
    default = TransactionTable()
    msg_types, uids = limits
    return (default.max_msg_types if msg_types < 0 else msg_types, default.max_uids if uids < 0 else uids)


def discover(corpus: Path, log: str) -> tuple[tuple[Case, ...], tuple[Excluded, ...]]:
    """Every baseline of ``log`` in the corpus, once each (the corpus copies a btest's baselines beside
    every trace the test read; the copies are the same file), as a Case or, when it can not be compared,
    an Excluded with the reason."""
    cases: list[Case] = []
    excluded: list[Excluded] = []
    seen: set[tuple[str, str]] = set()
    for log_file in sorted(corpus.rglob("*.baseline/*/*")):
        if not log_file.is_file() or log_of(log_file.name) != log:
            continue
        capture, btest = _capture_for(corpus, log_file)
        key = (_test_id(log_file), log_file.name)
        if key in seen:
            continue
        seen.add(key)
        baseline = str(log_file.relative_to(corpus))
        if btest.excluded:
            excluded.append(Excluded(baseline, btest.excluded))
        elif not (corpus / capture).exists():
            excluded.append(Excluded(baseline, f"the trace the test read ({capture}) is not in the corpus"))
        else:
            cases.append(
                Case(
                    capture,
                    baseline,
                    btest.verified_checksums,
                    _dhcp_limits(btest.dhcp_limits),
                    btest.ldap_search_attributes,
                    btest.without_smb,
                    btest.smb_reads_writes,
                )
            )
    return tuple(cases), tuple(excluded)


_WHY: dict[str, tuple[str, frozenset[str]]] = {
    "conn": (
        "the connection's life and size; service is left out: Zeek names every analyzer it ran "
        "(e.g. ntlm,ldap_tcp,krb,gssapi) where Vigil names the application protocol; local_orig/local_resp "
        "depend on Zeek's Site::local_nets, which the sensor is not told; speculative_service is a policy "
        "script's",
        frozenset({"service", "local_orig", "local_resp", "speculative_service"}),
    ),
    "dns": ("every column of dns.log but the connection", frozenset()),
    "dhcp": ("every column of dhcp.log; uids only by their number (uids are random)", frozenset()),
    "ssl": (
        "every column of ssl.log but the connection; certificate fingerprints come from Zeek's file "
        "analysis of the chain, which Vigil does not do",
        frozenset({"cert_chain_fps", "client_cert_chain_fps", "sni_matches_cert"}),
    ),
    "http": (
        "every column of http.log but the connection; file-analysis ids, names and MIME types are "
        "Zeek's file analysis, which Vigil does not do",
        frozenset({"orig_fuids", "resp_fuids", "orig_filenames", "resp_filenames"}),
    ),
    "ntlm": ("every column of ntlm.log but the connection", frozenset()),
    "kerberos": (
        "every column of kerberos.log but the connection; client/server_cert_fuid are Zeek's file "
        "analysis ids (random, like uids)",
        frozenset({"client_cert_fuid", "server_cert_fuid"}),
    ),
    "ldap": ("every column of ldap.log but the connection", frozenset()),
    "ldap_search": ("every column of ldap_search.log but the connection", frozenset()),
    "smb_mapping": ("every column of smb_mapping.log but the connection", frozenset()),
    "smb_files": (
        "every column of smb_files.log but the connection; fuid is Zeek's file-analysis id (random)",
        frozenset({"fuid"}),
    ),
    "dce_rpc": ("every column of dce_rpc.log but the connection", frozenset()),
    "websocket": ("every column of websocket.log but the connection", frozenset()),
    "ftp": (
        "every column of ftp.log but the connection; mime_type and fuid come from Zeek's file analysis of "
        "the data connection, which Vigil does not do (a password Zeek writes for an anonymous user "
        "would differ: Vigil keeps none)",
        frozenset({"mime_type", "fuid"}),
    ),
}


def all_specs(corpus: Path) -> tuple[LogSpec, ...]:
    out = []
    for log in LOGS:
        cases, excluded = discover(corpus, log)
        why, skip = _WHY[log]
        out.append(LogSpec(log, cases, why, skip, excluded=excluded))
    return tuple(out)


def spec(corpus: Path, log: str) -> LogSpec:
    return next(s for s in all_specs(corpus) if s.log == log)


# --- running the sensor ---------------------------------------------------------------------------


def registry(dhcp_limits: tuple[int, int] | None) -> Registry:
    """default_registry(), with DHCP's per-row limits as a btest redefined them."""
    if dhcp_limits is None:
        return default_registry()
    default = default_registry()
    # The same table of expected connections: the FTP factory announces its data connections there.
    out = Registry(expected=default.expected)
    max_msg_types, max_uids = dhcp_limits
    table = TransactionTable(max_msg_types=max_msg_types, max_uids=max_uids)
    # Registered first, so the port lookup finds it before the default DHCP analyzer (skipped below).
    out.register("dhcp", ("udp",), (67, 68), DhcpSessionFactory(table), server_ports=(67,))
    for a in default.analyzers:
        if a.name != "dhcp":
            out.register(a.name, a.transports, a.ports, a.factory, a.heuristic)
    return out


@dataclass
class Run:
    """One capture through the sensor: Zeek rows per log (TSV strings) and parse-error counts."""

    logs: dict[str, list[dict[str, str]]]
    records: list[sensor_pb2.Record]
    parse_errors: dict[tuple[str, str], float] = field(default_factory=dict)


def tsv(row: dict[str, object]) -> dict[str, str]:
    return {k: zeek_value(v) for k, v in row.items()}


@functools.cache
def run(capture: Path, dhcp_limits: tuple[int, int] | None = None, verified_checksums: bool = False) -> Run:
    """The capture through SensorPipeline + sensor.logwriter (cached: several logs share captures).

    ``verified_checksums`` as the btest ran Zeek: without -C it drops packets whose IPv4, TCP or UDP
    checksum is wrong (so does the sensor, checking every segment); with -C it checks none.
    """
    metrics = CollectorRegistry()
    records = list(
        pipeline_records(
            SensorConfig(
                verify_ip_checksums=verified_checksums,
                verify_l4_checksums="on" if verified_checksums else "off",
                # Zeek checks every sender alike: no host is spared for looking like it offloads.
                spare_offloading_senders=not verified_checksums,
            ),
            [capture],
            registry(dhcp_limits),
            seed=1,
            metrics_registry=metrics,
        )
    )
    logs = {log: [tsv(r) for r in rows] for log, rows in zeek_logs(records).items()}
    return Run(logs, records, parse_errors(metrics))


# --- comparing -------------------------------------------------------------------------------------


@dataclass
class Disagreement:
    log: str
    capture: str
    conn: str
    detail: str
    # zeek_baseline's kinds: direction, value, set-vs-unset, missing, extra.
    kind: str = VALUE
    baseline: str = ""


@dataclass
class Result:
    log: str
    captures: int = 0
    rows: int = 0
    agreeing: int = 0
    reference_rows: int = 0
    our_rows: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    excluded: tuple[Excluded, ...] = ()

    @property
    def agreement(self) -> float:
        return self.agreeing / self.rows if self.rows else 1.0

    @property
    def set_vs_unset(self) -> int:
        """Rows whose only differences are fields one side set and the other left unset."""
        return sum(1 for d in self.disagreements if d.kind == SET_VS_UNSET)


def columns_of(spec: LogSpec, expected: list[dict[str, str]]) -> tuple[str, ...]:
    """Every column the baseline has (trimmed ones included) but the connection's and the skipped."""
    present = expected[0].keys() if expected else ()
    return tuple(c for c in present if c not in CONN_COLUMNS and c not in spec.skip)


def _count_uids(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    # dhcp.log's uids are random; what carries meaning is how many connections an exchange spanned.
    return [{**r, "uids": str(len(r["uids"].split(",")))} if "uids" in r else r for r in rows]


def compare(corpus: Path, spec: LogSpec) -> Result:
    result = Result(spec.log, excluded=spec.excluded)
    captures: set[str] = set()
    for case in spec.cases:
        expected = read_zeek_log(corpus / case.baseline)
        ran = run(corpus / case.capture, case.dhcp_limits, case.verified_checksums)
        logs = ran.logs
        if case.ldap_search_attributes or case.smb_reads_writes:
            remapped = zeek_logs(ran.records, case.ldap_search_attributes, case.smb_reads_writes)
            logs = {log: [tsv(r) for r in rows] for log, rows in remapped.items()}
        actual = logs.get(spec.log, [])
        if case.without_smb:
            actual = [r for r in actual if r.get("id.resp_p") not in _SMB_PORTS]
        columns = columns_of(spec, expected)
        if spec.log == "dhcp":
            expected, actual = _count_uids(expected), _count_uids(actual)
            columns = (*columns, "uids")
        total, agree, problems = match_rows(expected, actual, columns)
        captures.add(case.capture)
        result.rows += total
        result.agreeing += agree
        result.reference_rows += len(expected)
        result.our_rows += len(actual)
        for p in problems:
            result.disagreements.append(
                Disagreement(spec.log, case.capture, p.conn, p.detail, p.kind, case.baseline)
            )
    result.captures = len(captures)
    return result


_SMB_PORTS = frozenset({"139", "445"})


# --- SMB dialects ------------------------------------------------------------------------------------
# Zeek logs no negotiated dialect (smb1/smb2 negotiation has no log in its base scripts), so the
# reference is tshark's independent dissection of the same captures.

DIALECT_CAPTURES = (
    "zeek/smb/smb2.pcap",
    "zeek/smb/smb3.pcap",
    "zeek/smb/smb311.pcap",
    "zeek/smb/smb1.pcap",
    "zeek/smb/smb3_negotiate_context.pcap",
    "zeek/smb/SMBGhost.pcap",
    "zeek/smb/cifs_negotiate_lanman.pcap",
    "zeek/smb/raw_ntlm_in_smb.pcap",
    "zeek/smb/smb_v2_only_non_zero_reserved1.pcap",
    "suricata-verify/smb1-02/smb1_osx.pcap",
    "suricata-verify/smb-eicar-file/input.pcap",
    "ndpi/smbv1.pcap",
    "suricata-verify/smb2-ntlmssp-negotiateflags/input.pcap",
)


def have_tshark() -> bool:
    return shutil.which("tshark") is not None


def tshark_dialects(pcap: Path) -> list[str]:
    """Negotiated dialects per tshark: SMB2 DialectRevision of negotiate responses, SMB1 chosen strings."""
    out = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(pcap),
            "-o",
            "tcp.check_checksum:FALSE",
            "-T",
            "fields",
            "-Y",
            "smb2.cmd == 0 && smb2.flags.response == 1 && smb2.nt_status == 0",
            "-e",
            "smb2.dialect",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = [smb_parser.dialect_name(int(v, 16)) for v in out.split() if v]
    # SMB1: the response names an index into the dialect list of the request on the same stream.
    out1 = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(pcap),
            "-T",
            "fields",
            "-Y",
            "smb.cmd == 0x72",
            "-e",
            "tcp.stream",
            "-e",
            "smb.flags.response",
            "-e",
            "smb.dialect",
            "-e",
            "smb.dialect.index",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    offered: dict[str, list[str]] = {}
    for line in out1.splitlines():
        stream, response, dialects, index = [*line.split("\t"), "", "", "", ""][:4]
        if response in {"0", "False"}:
            offered[stream] = dialects.split(",")
        elif index and stream in offered and int(index) < len(offered[stream]):
            names.append(offered[stream][int(index)])
        elif index:
            # tshark did not decode this stream's request (capture starts mid-stream): unknown name.
            names.append("?")
    return sorted(names)


def compare_dialects(corpus: Path) -> Result:
    """Negotiated SMB dialects of the sensor against tshark's, per capture (multiset agreement)."""
    result = Result("smb dialects")
    for name in DIALECT_CAPTURES:
        pcap = corpus / name
        if not pcap.exists():
            continue
        ours = sorted(
            rec.smb_negotiate.negotiated_dialect
            for rec in run(pcap).records
            if rec.WhichOneof("kind") == "smb_negotiate" and rec.smb_negotiate.negotiated_dialect
        )
        theirs = tshark_dialects(pcap)
        result.captures += 1
        result.rows += max(len(ours), len(theirs))
        result.reference_rows += len(theirs)
        result.our_rows += len(ours)
        common = sum(min(ours.count(d), theirs.count(d)) for d in set(ours))
        common += min(theirs.count("?"), len(ours) - common)
        result.agreeing += common
        if common < max(len(ours), len(theirs)):
            result.disagreements.append(
                Disagreement("smb dialects", name, "()", f"ours={ours} tshark={theirs}")
            )
    return result
