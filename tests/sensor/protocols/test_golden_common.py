"""Shared driver for the SMB/NTLM/LDAP/Kerberos golden tests (no tests of its own).

Replays a capture through our sessions (via the test-only tshark extractor until the sensor core's
pipeline is used here), turns records into Zeek rows with each package's zeek.py, and compares them
with Zeek's own baseline logs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sensor.protocols import kerberos, ldap, ntlm, smb
from sensor.protocols.base import ConnContext, Emit, ErrorCounter, Session
from sensor.protocols.kerberos import zeek as krb_zeek
from sensor.protocols.ldap import zeek as ldap_zeek
from sensor.protocols.ntlm import zeek as ntlm_zeek
from sensor.protocols.smb import zeek as smb_zeek
from tests.sensor.protocols import _pcap_replay
from tests.sensor.protocols._pcap_replay import Replay, replay
from tests.sensor.zeek_baseline import match_rows, read_zeek_log, zeek_value

_BY_PORT: list[tuple[str, tuple[int, ...], tuple[str, ...], Any]] = [
    ("smb", smb.PORTS, smb.TRANSPORTS, smb.FACTORY),
    ("ldap", ldap.PORTS, ldap.TRANSPORTS, ldap.FACTORY),
    ("kerberos", kerberos.PORTS, kerberos.TRANSPORTS, kerberos.FACTORY),
    ("dce_rpc", ntlm.PORTS, ntlm.TRANSPORTS, ntlm.FACTORY),
]


def _looks_dcerpc_bind(payload: bytes) -> bool:
    # Connection-oriented DCE-RPC v5.0 bind: how dynamic-port RPC services (found via the endpoint
    # mapper) are recognised without their port.
    return len(payload) >= 16 and payload[0] == 5 and payload[1] == 0 and payload[2] == 11


def _pick(transport: str, orig_port: int, resp_port: int, payload: bytes) -> Callable[..., Session] | None:
    for _name, ports, transports, factory in _BY_PORT:
        if transport in transports and resp_port in ports:
            return factory  # type: ignore[no-any-return]
    if transport == "tcp" and _looks_dcerpc_bind(payload):
        return ntlm.FACTORY
    return None


def run(pcap: Path) -> Replay:
    chosen: dict[tuple[str, int, int], Callable[..., Session]] = {}

    def select(transport: str, orig_port: int, resp_port: int, payload: bytes) -> bool:
        factory = _pick(transport, orig_port, resp_port, payload)
        if factory is None:
            return False
        chosen[(transport, orig_port, resp_port)] = factory
        return True

    def factory(ctx: ConnContext, emit: Emit, count: ErrorCounter) -> Session:
        return chosen[(ctx.transport, ctx.orig_port, ctx.resp_port)](ctx, emit, count)

    # Zeek's btests read these traces with checksum validation off (several were anonymised, which broke
    # their checksums), while the shared extractor drops bad-checksum packets. Until it grows a flag,
    # turn tshark's validation off for our replays so every packet counts, as it did for Zeek.
    real_run = _pcap_replay.subprocess.run

    def no_checksums(cmd: list[str], **kwargs: Any) -> Any:
        cmd = [c.replace("_checksum:TRUE", "_checksum:FALSE") for c in cmd]
        return real_run(cmd, **kwargs)

    _pcap_replay.subprocess.run = no_checksums  # type: ignore[assignment]
    try:
        return replay(pcap, factory, select)
    finally:
        _pcap_replay.subprocess.run = real_run


def zeek_rows(result: Replay, log: str) -> list[dict[str, str]]:
    """Our records of one Zeek log, rendered as TSV strings with the connection columns."""
    rows: list[dict[str, str]] = []
    for rec in result.records:
        kind = rec.WhichOneof("kind")
        row: dict[str, Any]
        if log == "ntlm" and kind == "ntlm":
            row = ntlm_zeek.to_zeek(rec.ntlm)
            uid = rec.ntlm.uid
        elif log == "kerberos" and kind == "kerberos":
            row = krb_zeek.to_zeek(rec.kerberos)
            uid = rec.kerberos.uid
        elif log == "ldap" and kind == "ldap":
            row = ldap_zeek.message_to_zeek(rec.ldap)
            uid = rec.ldap.uid
        elif log == "ldap_search" and kind == "ldap_search":
            row = ldap_zeek.search_to_zeek(rec.ldap_search)
            uid = rec.ldap_search.uid
        elif log == "smb_mapping" and kind == "smb_tree_connect":
            row = smb_zeek.mapping_to_zeek(rec.smb_tree_connect)
            uid = rec.smb_tree_connect.uid
        elif log == "smb_files" and kind == "smb_file":
            row = smb_zeek.file_to_zeek(rec.smb_file)
            uid = rec.smb_file.uid
        else:
            continue
        ctx = result.contexts[uid]
        out = {k: zeek_value(v) for k, v in row.items()}
        out.update({"id.orig_h": ctx.orig_ip, "id.orig_p": str(ctx.orig_port),
                    "id.resp_h": ctx.resp_ip, "id.resp_p": str(ctx.resp_port)})  # fmt: skip
        rows.append(out)
    return rows


LOG_COLUMNS: dict[str, tuple[str, ...]] = {
    "ntlm": ("username", "hostname", "domainname", "server_nb_computer_name", "server_dns_computer_name",
             "server_tree_name", "success"),
    "kerberos": ("request_type", "client", "service", "success", "error_msg", "till", "cipher", "forwardable",
                 "renewable"),
    "ldap": ("message_id", "version", "opcode", "result", "diagnostic_message", "object", "argument"),
    "ldap_search": ("message_id", "scope", "deref_aliases", "base_object", "result_count", "result",
                    "diagnostic_message", "filter", "attributes"),
    "smb_mapping": ("path", "service", "native_file_system", "share_type"),
    "smb_files": ("action", "path", "name", "size"),
}  # fmt: skip
# Zeek leaves these unset when it does not learn them (e.g. NTLM success outside SMB, AP success in LDAP).
WILDCARD_UNSET: dict[str, frozenset[str]] = {
    "ntlm": frozenset({"success"}),
    "kerberos": frozenset({"success", "forwardable", "renewable"}),
    # Zeek logs requested attributes only with a policy script; its default rows leave them unset.
    "ldap_search": frozenset({"attributes"}),
}


def agreement(
    corpus: Path, log: str, cases: list[tuple[str, str]], baseline_conns_only: frozenset[str] = frozenset()
) -> tuple[int, int, list[str]]:
    """Compare our rows with each (capture, baseline log) pair; returns totals and disagreements."""
    total = agree = 0
    problems: list[str] = []
    cache: dict[str, Replay] = {}
    for pcap, baseline in cases:
        if pcap not in cache:
            cache[pcap] = run(corpus / pcap)
        expected = read_zeek_log(corpus / baseline)
        actual = zeek_rows(cache[pcap], log)
        if pcap in baseline_conns_only:
            # Trimmed baselines (btests that filter to one port) only speak for their connections.
            ports = {r.get("id.resp_p") for r in expected}
            actual = [r for r in actual if r.get("id.resp_p") in ports]
        t, a, p = match_rows(expected, actual, LOG_COLUMNS[log], WILDCARD_UNSET.get(log, frozenset()))
        total += t
        agree += a
        problems += [f"{pcap}: {x}" for x in p]
    return total, agree, problems
