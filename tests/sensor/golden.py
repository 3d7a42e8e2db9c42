"""What the golden tests and ``python -m tests.sensor.golden_report`` compare with Zeek, and how.

Each capture of the shared reference corpus runs through the real sensor (SensorPipeline with the
default analyzers) and the row mapping of ``vigil sensor read --format zeek-json``
(:mod:`sensor.logwriter`); the rows are rendered as Zeek's TSV writer would and matched with Zeek's
own baseline logs for that capture by connection (uids are random, so they never take part).

Per log, :data:`SPECS` says which captures and baselines, which columns carry meaning (and why the
others do not), and the agreement the tests require. The tests and the report both read it, so they
can not drift apart.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from sensor.analyzers import default_registry
from sensor.logwriter import pipeline_records, zeek_logs
from sensor.protocols.dhcp import DhcpSessionFactory, TransactionTable
from sensor.protocols.smb import parser as smb_parser
from sensor.registry import Registry
from tests.sensor.zeek_baseline import match_rows, read_zeek_log, zeek_value
from vigil.config import SensorConfig
from vigil.sensor.v1 import sensor_pb2

# Columns that identify rather than describe: the connection (compared through the row matching
# itself), uids (random per run, in Zeek as in Vigil) and ts (equal by construction: both take the
# packet's timestamp; it would only restate the pairing).
CONN_COLUMNS = frozenset({"ts", "uid", "uids", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"})


@dataclass(frozen=True)
class Case:
    capture: str
    baseline: str
    # Btests that filter their output to some ports speak only for those connections.
    baseline_conns_only: bool = False
    # DHCP btests that redefine the per-row limits of Zeek's DHCP script: (max_msg_types, max_uids).
    dhcp_limits: tuple[int, int] | None = None


@dataclass(frozen=True)
class LogSpec:
    log: str
    cases: tuple[Case, ...]
    # The columns compared; None means every column the baseline has except CONN_COLUMNS and ``skip``.
    columns: tuple[str, ...] | None
    why: str
    skip: frozenset[str] = frozenset()
    # Columns where Zeek's unset ("-") accepts any value of ours (Zeek did not learn it there).
    wildcard_unset: frozenset[str] = frozenset()
    # Required record-level agreement; None: reported only.
    target: float | None = None


def _discover(corpus: Path, name: str, exclude: tuple[str, ...] = ()) -> Iterator[Case]:
    """Every ``<capture>.baseline/**/<name>`` of the corpus, as a Case."""
    for log in sorted(corpus.rglob(name)):
        if any(x in str(log) for x in exclude):
            continue
        base = next(p for p in log.parents if p.name.endswith(".baseline"))
        capture = base.with_name(base.name.removesuffix(".baseline"))
        limits = None
        if "dhcp-prevent-large-msgtypes" in str(log):
            limits = (8, TransactionTable().max_uids)
        elif "dhcp-prevent-large-uids" in str(log):
            limits = (TransactionTable().max_msg_types, 5)
        yield Case(str(capture.relative_to(corpus)), str(log.relative_to(corpus)), dhcp_limits=limits)


_P = "scripts.base.protocols"
_L = f"{_P}.ldap"


def _cases(*pairs: tuple[str, str], conns_only: tuple[str, ...] = ()) -> tuple[Case, ...]:
    return tuple(Case(c, b, baseline_conns_only=c in conns_only) for c, b in pairs)


NTLM = LogSpec(
    "ntlm",
    _cases(
        ("zeek/ldap/sasl-ntlm.pcap", f"zeek/ldap/sasl-ntlm.pcap.baseline/{_L}.sasl-ntlm/ntlm.log"),
        ("zeek/ldap/aduser1-ntlm.pcap", f"zeek/ldap/aduser1-ntlm.pcap.baseline/{_L}.aduser1/ntlm.ntlm.log"),
        (
            "zeek/ldap/ctu-60387-63723-ldap.pcap",
            f"zeek/ldap/ctu-60387-63723-ldap.pcap.baseline/{_L}.sasl-gss-spnego-ntlm/ntlm.log",
        ),
        (
            "zeek/dce-rpc/dce_rpc_ntlm.pcapng",
            f"zeek/dce-rpc/dce_rpc_ntlm.pcapng.baseline/{_P}.dce-rpc.dce_rpc_ntlm/ntlm.log",
        ),
        ("zeek/dce-rpc/mapi.pcap", f"zeek/dce-rpc/mapi.pcap.baseline/{_P}.dce-rpc.mapi/ntlm.log"),
    ),
    (
        "username",
        "hostname",
        "domainname",
        "server_nb_computer_name",
        "server_dns_computer_name",
        "server_tree_name",
        "success",
    ),
    "every column of ntlm.log but the connection: who authenticated from where, to which server, and "
    "whether it worked",
    # Zeek learns NTLM success only from carriers it follows to the end (SMB); elsewhere it stays unset.
    wildcard_unset=frozenset({"success"}),
    target=0.98,
)

KERBEROS = LogSpec(
    "kerberos",
    _cases(
        ("zeek/krb/kinit.pcap", f"zeek/krb/kinit.pcap.baseline/{_P}.krb.kinit/kerberos.log"),
        ("zeek/krb/auth.pcap", f"zeek/krb/auth.pcap.baseline/{_P}.krb.tgs/kerberos.log"),
        (
            "zeek/krb/kerberos_tso.pcapng",
            f"zeek/krb/kerberos_tso.pcapng.baseline/{_P}.tcp.krb-tcp-tso/kerberos.log",
        ),
        ("zeek/krb/smb_gssapi.pcap", f"zeek/krb/smb_gssapi.pcap.baseline/{_P}.krb.smb_gssapi/kerberos.log"),
        (
            "zeek/dce-rpc/kerberos445_auth.pcapng",
            f"zeek/dce-rpc/kerberos445_auth.pcapng.baseline/{_P}.dce-rpc.spnego-gssapi-kerberos/kerberos.log.445",
        ),
        ("zeek/ldap/aduser1.pcap", f"zeek/ldap/aduser1.pcap.baseline/{_L}.aduser1/krb.kerberos.log"),
        conns_only=("zeek/ldap/aduser1.pcap",),
    ),
    (
        "request_type",
        "client",
        "service",
        "success",
        "error_msg",
        "till",
        "cipher",
        "forwardable",
        "renewable",
    ),
    "the exchange and its outcome; error_code duplicates error_msg, from/client_cert_* are absent from "
    "every baseline",
    # Zeek leaves success unset for AP exchanges it cannot see answered, and the KDC options unset
    # outside KDC requests.
    wildcard_unset=frozenset({"success", "forwardable", "renewable"}),
    target=0.98,
)

LDAP = LogSpec(
    "ldap",
    _cases(
        ("zeek/ldap/sasl-ntlm.pcap", f"zeek/ldap/sasl-ntlm.pcap.baseline/{_L}.sasl-ntlm/ldap.log"),
        ("zeek/ldap/aduser1.pcap", f"zeek/ldap/aduser1.pcap.baseline/{_L}.aduser1/krb.ldap.log"),
        ("zeek/ldap/aduser1-ntlm.pcap", f"zeek/ldap/aduser1-ntlm.pcap.baseline/{_L}.aduser1/ntlm.ldap.log"),
        (
            "zeek/ldap/ctu-sme-11-win7ad-1-ldap-tcp-50041.pcap",
            f"zeek/ldap/ctu-sme-11-win7ad-1-ldap-tcp-50041.pcap.baseline/{_L}.spnego-ntlmssp/ldap.log",
        ),
        (
            "zeek/ldap/krb5-sign-seal-01.pcap",
            f"zeek/ldap/krb5-sign-seal-01.pcap.baseline/{_L}.sasl-encrypted/ldap.log",
        ),
        ("zeek/ldap/ldap-add.pcap", f"zeek/ldap/ldap-add.pcap.baseline/{_L}.add/ldap.log"),
        ("zeek/ldap/ldap-starttls.pcap", f"zeek/ldap/ldap-starttls.pcap.baseline/{_L}.starttls/ldap.log"),
        ("zeek/ldap/ldap-who-am-i.pcap", f"zeek/ldap/ldap-who-am-i.pcap.baseline/{_L}.who-am-i/ldap.log"),
        (
            "zeek/ldap/ldap_invalid_credentials.pcap",
            f"zeek/ldap/ldap_invalid_credentials.pcap.baseline/{_L}.invalid_credentials/ldap.log",
        ),
        (
            "zeek/ldap/missing_krbtgt_ldap_request.pcapng",
            f"zeek/ldap/missing_krbtgt_ldap_request.pcapng.baseline/{_L}.sasl-signed-clear-2/ldap.log",
        ),
        (
            "zeek/ldap/missing_ldap_logs.pcapng",
            f"zeek/ldap/missing_ldap_logs.pcapng.baseline/{_L}.sasl-signed-clear/ldap.log",
        ),
        (
            "zeek/ldap/modify-request.pcapng",
            f"zeek/ldap/modify-request.pcapng.baseline/{_L}.modify-request/ldap.log",
        ),
        ("zeek/ldap/simpleauth.pcap", f"zeek/ldap/simpleauth.pcap.baseline/{_L}.basic/ldap.log"),
    ),
    ("message_id", "version", "opcode", "result", "diagnostic_message", "object", "argument"),
    "every column of ldap.log but the connection",
    target=0.98,
)

LDAP_SEARCH = LogSpec(
    "ldap_search",
    _cases(
        ("zeek/ldap/sasl-ntlm.pcap", f"zeek/ldap/sasl-ntlm.pcap.baseline/{_L}.sasl-ntlm/ldap_search.log"),
        ("zeek/ldap/aduser1.pcap", f"zeek/ldap/aduser1.pcap.baseline/{_L}.aduser1/krb.ldap_search.log"),
        (
            "zeek/ldap/aduser1-ntlm.pcap",
            f"zeek/ldap/aduser1-ntlm.pcap.baseline/{_L}.aduser1/ntlm.ldap_search.log",
        ),
        (
            "zeek/ldap/krb5-sign-seal-01.pcap",
            f"zeek/ldap/krb5-sign-seal-01.pcap.baseline/{_L}.sasl-encrypted/ldap_search.log",
        ),
        (
            "zeek/ldap/issue-32.pcapng",
            f"zeek/ldap/issue-32.pcapng.baseline/{_L}.search_filter_extended/ldap_search.log",
        ),
        (
            "zeek/ldap/ldap_escaping_test.pcapng",
            f"zeek/ldap/ldap_escaping_test.pcapng.baseline/{_L}.filter_escaping/ldap_search.log.1",
        ),
        (
            "zeek/ldap/ldap_star_single.pcapng",
            f"zeek/ldap/ldap_star_single.pcapng.baseline/{_L}.ldap_substring_search/ldap_search.log",
        ),
        (
            "zeek/ldap/missing_krbtgt_ldap_request.pcapng",
            f"zeek/ldap/missing_krbtgt_ldap_request.pcapng.baseline/{_L}.sasl-signed-clear-2/ldap_search.log",
        ),
        (
            "zeek/ldap/missing_ldap_logs.pcapng",
            f"zeek/ldap/missing_ldap_logs.pcapng.baseline/{_L}.sasl-signed-clear/ldap_search.log",
        ),
        # The "attributes" variant logs the requested attributes, which we always record.
        ("zeek/ldap/simpleauth.pcap", f"zeek/ldap/simpleauth.pcap.baseline/{_L}.attributes/ldap_search.log"),
    ),
    (
        "message_id",
        "scope",
        "deref_aliases",
        "base_object",
        "result_count",
        "result",
        "diagnostic_message",
        "filter",
        "attributes",
    ),
    "every column of ldap_search.log but the connection",
    # Zeek logs requested attributes only with a policy script; its default rows leave them unset.
    wildcard_unset=frozenset({"attributes"}),
    target=0.98,
)

SMB_MAPPING = LogSpec(
    "smb_mapping",
    _cases(
        ("zeek/smb/smb2.pcap", f"zeek/smb/smb2.pcap.baseline/{_P}.smb.smb2/smb_mapping.log"),
        ("zeek/smb/smb3.pcap", f"zeek/smb/smb3.pcap.baseline/{_P}.smb.smb3/smb_mapping.log"),
    ),
    ("path", "service", "native_file_system", "share_type"),
    "every column of smb_mapping.log but the connection",
)

SMB_FILES = LogSpec(
    "smb_files",
    _cases(
        ("zeek/smb/smb1.pcap", f"zeek/smb/smb1.pcap.baseline/{_P}.smb.smb1/smb_files.log"),
        ("zeek/smb/smb2.pcap", f"zeek/smb/smb2.pcap.baseline/{_P}.smb.smb2/smb_files.log"),
        (
            "zeek/smb/smb2readwrite.pcap",
            f"zeek/smb/smb2readwrite.pcap.baseline/{_P}.smb.smb2-read-write/smb_files.log",
        ),
        (
            "zeek/smb/smb2.delete-on-close-perms-delete-existing.pcap",
            f"zeek/smb/smb2.delete-on-close-perms-delete-existing.pcap.baseline/"
            f"{_P}.smb.smb2-create-delete-on-close/smb_files.log",
        ),
    ),
    ("action", "path", "name", "size"),
    "what was done to which file; fuid and the times.* columns come from Zeek's file analysis and "
    "MAC times, which Vigil does not extract",
)

SPECS: tuple[LogSpec, ...] = (NTLM, KERBEROS, LDAP, LDAP_SEARCH, SMB_MAPPING, SMB_FILES)


def discovered_specs(corpus: Path) -> tuple[LogSpec, ...]:
    """The logs whose cases are every baseline of that name in the corpus."""
    return (
        LogSpec(
            "dns",
            tuple(_discover(corpus, "dns.log")),
            None,
            "every column of dns.log but the connection",
            target=0.98,
        ),
        LogSpec(
            "dhcp",
            tuple(_discover(corpus, "dhcp.log")),
            None,
            "every column of dhcp.log; uids only by their number (uids are random)",
            target=0.98,
        ),
        LogSpec(
            "ssl",
            tuple(
                c
                for c in _discover(corpus, "ssl.log")
                # Trimmed baselines without the connection id cannot be matched row by row.
                if "id.orig_p" in (read_zeek_log(corpus / c.baseline) or [{}])[0]
            ),
            None,
            "every column of ssl.log but the connection",
            # Certificate fingerprints come from Zeek's file analysis of the chain, which Vigil does not do.
            skip=frozenset({"cert_chain_fps", "client_cert_chain_fps", "sni_matches_cert"}),
        ),
        LogSpec(
            "http",
            # A Spicy test that feeds UDP/53 payload into the HTTP analyzer by script, not traffic.
            tuple(_discover(corpus, "http.log", exclude=("spicy.",))),
            None,
            "every column of http.log but the connection",
            # File-analysis ids and names: Vigil does not extract files.
            skip=frozenset({"orig_fuids", "resp_fuids", "orig_filenames", "resp_filenames"}),
        ),
    )


def conn_spec(corpus: Path) -> LogSpec:
    cases = tuple(
        # This btest reads missing_krbtgt_ldap_request.pcapng although the corpus filed its baseline
        # under missing_ldap_logs (the LDAP cases above pair it the same way).
        replace(c, capture="zeek/ldap/missing_krbtgt_ldap_request.pcapng")
        if "missing_ldap_logs.pcapng.baseline/scripts.base.protocols.ldap.sasl-signed-clear-2/" in c.baseline
        else c
        for c in _discover(corpus, "conn.log")
        # Trimmed baselines without the connection id cannot be matched row by row.
        if "id.orig_p" in (read_zeek_log(corpus / c.baseline) or [{}])[0]
    )
    return LogSpec(
        "conn",
        cases,
        (
            "conn_state",
            "history",
            "orig_bytes",
            "resp_bytes",
            "orig_pkts",
            "resp_pkts",
            "orig_ip_bytes",
            "resp_ip_bytes",
            "missed_bytes",
        ),
        "the connection's life and size; service and duration are left out: service names differ by "
        "design (Zeek names every analyzer it ran, e.g. gssapi/ntlm inside ldap) and duration is "
        "last-minus-first packet time in both, so it restates the packet counts",
    )


def all_specs(corpus: Path) -> tuple[LogSpec, ...]:
    return (conn_spec(corpus), *discovered_specs(corpus), *SPECS)


def spec(corpus: Path, log: str) -> LogSpec:
    return next(s for s in all_specs(corpus) if s.log == log)


# --- running the sensor ---------------------------------------------------------------------------


def registry(dhcp_limits: tuple[int, int] | None) -> Registry:
    """default_registry(), with DHCP's per-row limits as a btest redefined them."""
    if dhcp_limits is None:
        return default_registry()
    out = Registry()
    max_msg_types, max_uids = dhcp_limits
    table = TransactionTable(max_msg_types=max_msg_types, max_uids=max_uids)
    # Registered first, so the port lookup finds it before the default DHCP analyzer (skipped below).
    out.register("dhcp", ("udp",), (67, 68), DhcpSessionFactory(table), server_ports=(67,))
    for a in default_registry().analyzers:
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


# Zeek's btests mostly read traces with -C (checksums ignored); these ran without it, so Zeek dropped
# packets with a bad IPv4 header checksum as a host would, and so must we to compare like with like.
ZEEK_VERIFIED_CHECKSUMS = frozenset({"dns-txt-multiple.pcap"})


@functools.cache
def run(capture: Path, dhcp_limits: tuple[int, int] | None = None) -> Run:
    """The capture through SensorPipeline + sensor.logwriter (cached: several logs share captures)."""
    metrics = CollectorRegistry()
    records = list(
        pipeline_records(
            SensorConfig(
                verify_ip_checksums=capture.name in ZEEK_VERIFIED_CHECKSUMS,
                # Zeek verifies TCP/UDP checksums exactly when it verifies IP ones (no -C).
                verify_l4_checksums="on" if capture.name in ZEEK_VERIFIED_CHECKSUMS else "off",
            ),
            [capture],
            registry(dhcp_limits),
            seed=1,
            metrics_registry=metrics,
        )
    )
    logs = {log: [tsv(r) for r in rows] for log, rows in zeek_logs(records).items()}
    errors: dict[tuple[str, str], float] = {}
    for metric in metrics.collect():
        if metric.name == "vigil_sensor_parse_errors":
            for s in metric.samples:
                if s.name.endswith("_total") and s.value:
                    errors[(s.labels["protocol"], s.labels["reason"])] = s.value
    return Run(logs, records, errors)


# --- comparing -------------------------------------------------------------------------------------


@dataclass
class Disagreement:
    log: str
    capture: str
    conn: str
    detail: str


@dataclass
class Result:
    log: str
    captures: int = 0
    rows: int = 0
    agreeing: int = 0
    reference_rows: int = 0
    our_rows: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        return self.agreeing / self.rows if self.rows else 1.0


def columns_of(spec: LogSpec, expected: list[dict[str, str]]) -> tuple[str, ...]:
    if spec.columns is not None:
        return spec.columns
    present = expected[0].keys() if expected else ()
    return tuple(c for c in present if c not in CONN_COLUMNS and c not in spec.skip)


def compare(corpus: Path, spec: LogSpec) -> Result:
    result = Result(spec.log)
    captures: set[str] = set()
    for case in spec.cases:
        expected = read_zeek_log(corpus / case.baseline)
        actual = run(corpus / case.capture, case.dhcp_limits).logs.get(spec.log, [])
        if case.baseline_conns_only:
            ports = {r.get("id.resp_p") for r in expected}
            actual = [r for r in actual if r.get("id.resp_p") in ports]
        if spec.log == "dhcp":
            # uids are random; what carries meaning is how many connections an exchange spanned.
            expected = [{**r, "uids": str(len(r["uids"].split(",")))} for r in expected]
            actual = [{**r, "uids": str(len(r["uids"].split(",")))} for r in actual]
        columns = columns_of(spec, expected)
        if spec.log == "dhcp":
            columns = (*columns, "uids")
        total, agree, problems = match_rows(expected, actual, columns, spec.wildcard_unset)
        captures.add(case.capture)
        result.rows += total
        result.agreeing += agree
        result.reference_rows += len(expected)
        result.our_rows += len(actual)
        for p in problems:
            conn, _, detail = p.partition(": ")
            result.disagreements.append(Disagreement(spec.log, case.capture, conn, detail))
    result.captures = len(captures)
    return result


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
