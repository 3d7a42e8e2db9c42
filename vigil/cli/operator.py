"""The operator's commands on the console API: ``vigil incidents|breaches|devices|actions ...``.

Each command is one or a few ConsoleService calls over gRPC (the token as ``authorization: Bearer ...``
metadata, mutual TLS when ``console.client.tls`` is set) and a rendering of the answer:

- ``--json``: JSON Lines, always. A list prints one object per item, ``show`` and every change print
  exactly one object; each object is the API's protobuf in its JSON form (proto field names, times in
  RFC 3339 UTC), so a script reads the same fields the HTTP API serves.
- otherwise aligned tables (wide fields cut with an ellipsis) and ``key  value`` blocks, times in ISO 8601
  UTC. Text that came off the wire (host names, URLs) has its control characters replaced, so a hostile
  hostname cannot drive the operator's terminal.

A refusal, a missing thing, an unreachable console: one line on stderr and its exit code (vigil.exitcodes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from vigil.alert.v1 import alert_pb2
from vigil.config import VigilConfig
from vigil.console.v1 import console_pb2 as pb
from vigil.console.v1 import console_pb2_grpc as pb_grpc
from vigil.exitcodes import Exit
from vigil.responder.v1 import responder_pb2
from vigil.tls import TlsSetupError, channel_credentials, channel_options

COMMANDS = ("incidents", "breaches", "devices", "actions")
TOKEN_ENV = "VIGIL_TOKEN"
# A token file larger than this is not a token (the console refuses longer Authorization values anyway).
MAX_TOKEN_BYTES = 4096
# The API's own page bound; lists follow next_page_token up to --limit items.
MAX_PAGE = 500
# `breaches show` pages through the newest breaches looking for the id, at most this many.
MAX_SHOW_SCAN = 20_000
ELLIPSIS = "…"

# How each gRPC status the console answers with ends the command.
_STATUS_EXIT: Mapping[grpc.StatusCode, Exit] = {
    grpc.StatusCode.UNAUTHENTICATED: Exit.REFUSED,
    grpc.StatusCode.PERMISSION_DENIED: Exit.REFUSED,
    grpc.StatusCode.NOT_FOUND: Exit.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: Exit.USAGE,
    grpc.StatusCode.FAILED_PRECONDITION: Exit.CONFLICT,
    grpc.StatusCode.UNAVAILABLE: Exit.DEPENDENCY,
    grpc.StatusCode.DEADLINE_EXCEEDED: Exit.DEPENDENCY,
}

_EXIT_EPILOG = (
    "exit codes: 0 done, 1 token or certificate file unreadable, 2 usage or configuration (also a change "
    "the console finds invalid), 5 console (or the responder behind it) unreachable, 7 token refused, "
    "8 no such incident/breach/device/action, 9 the change does not apply to the current state, "
    "70 internal error, 130 interrupted."
)
_TOKEN_HELP = (
    "The console is console.client.address (default console.grpc_listen), with mutual TLS when "
    "console.client.tls is set; the token is VIGIL_TOKEN or the first line of console.client.token_file."
)


class CommandFailed(Exception):
    """Ends an operator command with one line on stderr and a documented exit code."""

    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.code = code


# -- the command line ---------------------------------------------------------------------------------------


def _leaf(
    group: Any, name: str, help_text: str, example: str, parents: list[argparse.ArgumentParser]
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(
        name,
        help=help_text,
        description=_wrap(f"{help_text}. {_TOKEN_HELP}"),
        epilog=f"examples:\n  {example}\n\n{_wrap(_EXIT_EPILOG)}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=parents,
    )
    parser.add_argument("--json", action="store_true", help="JSON Lines: one object per item (one for show)")
    return parser


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=78)


def _group(
    sub: Any, name: str, help_text: str, examples: Sequence[str], parents: list[argparse.ArgumentParser]
) -> Any:
    """``vigil NAME`` and its subcommands; its help shows a few examples and how the console is reached."""
    parser = sub.add_parser(
        name,
        help=help_text,
        description=_wrap(f"{help_text}. {_TOKEN_HELP} --json prints JSON Lines."),
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples) + "\n\n" + _wrap(_EXIT_EPILOG),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=parents,
    )
    return parser.add_subparsers(dest="operator_command", required=True, metavar="COMMAND")


def _reason(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", required=True, help="why (required; audited with your token's name)")


def _limit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="at most N items, newest first (50)"
    )


def register(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add the four command groups to ``vigil``'s subparsers (what vigil/cli/__init__.py calls)."""
    inc = _group(
        sub,
        "incidents",
        "list, show, acknowledge or resolve incidents (console API)",
        ["vigil incidents list --status new", "vigil incidents show ID --json"],
        parents,
    )
    p = _leaf(inc, "list", "list incidents, newest first", "vigil incidents list --status new", parents)
    p.add_argument("--status", choices=["new", "acknowledged", "resolved"], help="only this status")
    _limit(p)
    p = _leaf(
        inc, "show", "one incident: summary, phases, ATT&CK, timeline", "vigil incidents show ID", parents
    )
    p.add_argument("incident_id", metavar="ID")
    for name, what in (("acknowledge", "acknowledged"), ("resolve", "resolved")):
        p = _leaf(
            inc,
            name,
            f"mark an incident {what}",
            f"VIGIL_TOKEN=... vigil incidents {name} ID --reason 'on it'",
            parents,
        )
        p.add_argument("incident_id", metavar="ID")
        _reason(p)

    br = _group(
        sub,
        "breaches",
        "list, show, acknowledge or suppress breaches (console API)",
        ["vigil breaches list --min-severity high --since 24h", "vigil breaches show ID"],
        parents,
    )
    p = _leaf(
        br,
        "list",
        "list breaches, newest first (suppressed ones hidden)",
        "vigil breaches list --min-severity high --since 24h",
        parents,
    )
    p.add_argument("--device", help="only this device id")
    p.add_argument("--model", help="only this model, e.g. 'Device / Network Scan'")
    p.add_argument(
        "--min-severity", choices=["low", "medium", "high", "critical"], help="this band and above"
    )
    p.add_argument("--since", type=_when, metavar="TIME", help="ISO 8601 time, or a duration ago (24h, 30m)")
    p.add_argument("--until", type=_when, metavar="TIME", help="ISO 8601 time, or a duration ago")
    p.add_argument("--include-suppressed", action="store_true", help="also the suppressed ones")
    _limit(p)
    p = _leaf(br, "show", "one breach with its evidence", "vigil breaches show BREACH_ID", parents)
    p.add_argument("breach_id", metavar="ID")
    p = _leaf(
        br,
        "acknowledge",
        "mark a breach seen",
        "VIGIL_TOKEN=... vigil breaches acknowledge ID --reason seen",
        parents,
    )
    p.add_argument("breach_id", metavar="ID")
    _reason(p)
    p = _leaf(
        br,
        "suppress",
        "hide a model's breaches (for one device or all) for a while, earlier ones included",
        "vigil breaches suppress --model 'Device / Network Scan' --device dev-1 --for 8h --reason 'pen test'",
        parents,
    )
    p.add_argument("--model", required=True, help="the model to suppress")
    p.add_argument("--device", help="only for this device id (default: every device)")
    p.add_argument(
        "--for",
        dest="duration",
        type=_duration,
        required=True,
        metavar="DURATION",
        help="e.g. 3600s, 90m, 8h, 2d",
    )
    _reason(p)

    dev = _group(
        sub,
        "devices",
        "list or show devices and their pattern of life (console API)",
        ["vigil devices list", "vigil devices show ID --json"],
        parents,
    )
    p = _leaf(dev, "list", "list the devices the master knows", "vigil devices list --json", parents)
    _limit(p)
    p = _leaf(
        dev, "show", "one device and its learned pattern of life", "vigil devices show DEVICE_ID", parents
    )
    p.add_argument("device_id", metavar="ID")

    act = _group(
        sub,
        "actions",
        "list, show, confirm, extend or revoke response actions (console API)",
        ["vigil actions list --all", "VIGIL_TOKEN=... vigil actions confirm ID --reason 'scanner, contain'"],
        parents,
    )
    p = _leaf(
        act,
        "list",
        "actions proposed, pending and active (--all: also finished)",
        "vigil actions list",
        parents,
    )
    p.add_argument("--all", action="store_true", help="also finished actions (expired, revoked, ...)")
    p = _leaf(
        act, "show", "one action and the responder's view of it", "vigil actions show ACTION_ID", parents
    )
    p.add_argument("action_id", metavar="ID")
    p = _leaf(
        act,
        "confirm",
        "confirm a proposed action: the responder enforces it",
        "VIGIL_TOKEN=... vigil actions confirm ID --reason 'scanner, contain'",
        parents,
    )
    p.add_argument("action_id", metavar="ID")
    _reason(p)
    p = _leaf(
        act,
        "extend",
        "keep an action longer",
        "vigil actions extend ID --by 30m --reason 'still scanning'",
        parents,
    )
    p.add_argument("action_id", metavar="ID")
    p.add_argument("--by", type=_duration, required=True, metavar="DURATION", help="e.g. 1800s, 30m, 2h")
    _reason(p)
    p = _leaf(
        act,
        "revoke",
        "lift an action now (or reject a proposed one); the API calls it clear",
        "vigil actions revoke ID --reason 'cleaned up'",
        parents,
    )
    p.add_argument("action_id", metavar="ID")
    _reason(p)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1_000_000:
        raise argparse.ArgumentTypeError("must be 1-1000000")
    return value


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^(\d{1,9})([smhdw]?)$")
# The longest duration the command line takes (ten years, as for configuration durations).
MAX_DURATION_S = 10 * 366 * 86400


def parse_duration(text: str) -> int:
    """``3600``, ``3600s``, ``90m``, ``8h``, ``2d``, ``1w`` -> seconds (positive, at most ten years)."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration (e.g. 3600s, 90m, 8h, 2d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 0 < seconds <= MAX_DURATION_S:
        raise ValueError(f"{text!r}: a duration must be positive and at most ten years")
    return seconds


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_when(text: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise) or a duration meaning that long before ``now``."""
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither an ISO 8601 time nor a duration ago (24h)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _when(text: str) -> datetime:
    try:
        return parse_when(text, datetime.now(UTC))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- connecting ---------------------------------------------------------------------------------------------


def console_address(cfg: VigilConfig) -> str:
    """Where to dial: console.client.address, else grpc_listen with a wildcard host made loopback."""
    if cfg.console.client.address:
        return cfg.console.client.address
    host, _, port = cfg.console.grpc_listen.rpartition(":")
    if host in ("0.0.0.0", "", "[::]"):
        host = "[::1]" if host == "[::]" else "127.0.0.1"
    return f"{host}:{port}"


def read_token(cfg: VigilConfig, environ: Mapping[str, str]) -> str:
    """The bearer token: VIGIL_TOKEN, else the first line of console.client.token_file."""
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return _checked_token(token, TOKEN_ENV)
    path = cfg.console.client.token_file
    if path is None:
        raise CommandFailed(
            f"no console token: set {TOKEN_ENV} or console.client.token_file (a file only you can read)",
            Exit.USAGE,
        )
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise CommandFailed(f"console.client.token_file {path}: not a regular file", Exit.ENVIRONMENT)
            data = fh.read(MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise CommandFailed(
            f"console.client.token_file {path}: cannot read: {exc.strerror}", Exit.ENVIRONMENT
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CommandFailed(
            f"console.client.token_file {path}: readable by other users; chmod 600 it", Exit.ENVIRONMENT
        )
    if len(data) > MAX_TOKEN_BYTES:
        raise CommandFailed(f"console.client.token_file {path}: too large to hold a token", Exit.ENVIRONMENT)
    try:
        first = data.decode("utf-8").strip().splitlines()
    except UnicodeDecodeError:
        raise CommandFailed(f"console.client.token_file {path}: not UTF-8 text", Exit.ENVIRONMENT) from None
    if not first or not first[0].strip():
        raise CommandFailed(f"console.client.token_file {path}: empty", Exit.ENVIRONMENT)
    return _checked_token(first[0].strip(), f"console.client.token_file {path}")


def _checked_token(token: str, where: str) -> str:
    # gRPC metadata values are printable ASCII; anything else is a mistake in the file or variable.
    if not all(" " < ch < "\x7f" for ch in token):
        raise CommandFailed(f"{where}: the token must be printable ASCII without spaces", Exit.USAGE)
    return token


@dataclass
class Console:
    """One channel to the console and the metadata every call carries."""

    stub: pb_grpc.ConsoleServiceStub
    channel: grpc.Channel
    metadata: tuple[tuple[str, str], ...]
    timeout_s: float
    address: str

    def call(self, method: str, request: Message) -> Any:
        try:
            return getattr(self.stub, method)(request, metadata=self.metadata, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise _failure(exc, self.address) from None


def _failure(exc: grpc.RpcError, address: str) -> CommandFailed:
    code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
    detail = (exc.details() if isinstance(exc, grpc.Call) else "") or ""
    detail = _clean(detail)[:300]
    if code == grpc.StatusCode.UNAVAILABLE and not detail.startswith(("no responder", "the responder")):
        return CommandFailed(f"console unreachable at {address}: {detail}", Exit.DEPENDENCY)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CommandFailed(f"console at {address} did not answer in time", Exit.DEPENDENCY)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return CommandFailed(f"console refused the token ({detail})", Exit.REFUSED)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return CommandFailed(f"console refused the change: {detail}", Exit.REFUSED)
    return CommandFailed(detail or code.name.lower(), _STATUS_EXIT.get(code, Exit.INTERNAL))


def connect(cfg: VigilConfig, environ: Mapping[str, str]) -> Console:
    client = cfg.console.client
    address = console_address(cfg)
    token = read_token(cfg, environ)
    if client.tls.active:
        try:
            credentials = channel_credentials(client.tls)
        except TlsSetupError as exc:
            raise CommandFailed(f"console.client.tls: {exc}", Exit.ENVIRONMENT) from None
        channel = grpc.secure_channel(address, credentials, options=channel_options(client.tls))
    else:
        channel = grpc.insecure_channel(address)
    return Console(
        pb_grpc.ConsoleServiceStub(channel),
        channel,
        (("authorization", f"Bearer {token}"),),
        client.timeout_s,
        address,
    )


# -- rendering ----------------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _clean(text: str) -> str:
    """Wire text made safe for a terminal: control characters (escape sequences, newlines) become '?'."""
    return _CONTROL.sub("?", text)


def cut(text: str, width: int) -> str:
    text = _clean(text)
    return text if len(text) <= width else text[: width - 1] + ELLIPSIS


def iso(ts: Timestamp) -> str:
    """ISO 8601 UTC to the second, or '-' for an unset time."""
    if ts.seconds == 0 and ts.nanos == 0:
        return "-"
    return datetime.fromtimestamp(ts.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Column:
    title: str
    width: int  # the widest a value is shown; longer ones are cut with an ellipsis


def table(columns: Sequence[Column], rows: Iterable[Sequence[str]]) -> list[str]:
    """Aligned lines: a header, then each row, every column as wide as its widest (cut) value."""
    cells = [[cut(value, col.width) for value, col in zip(row, columns, strict=True)] for row in rows]
    widths = [max([len(col.title), *(len(r[i]) for r in cells)]) for i, col in enumerate(columns)]
    lines = []
    for row in [[c.title for c in columns], *cells]:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return lines


def block(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """``key  value`` lines, keys aligned (values are cleaned, not cut: show is for reading in full)."""
    items = list(pairs)
    width = max((len(k) for k, _ in items), default=0)
    return [f"{k.ljust(width)}  {_clean(v)}" for k, v in items]


def as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _device(ref: alert_pb2.DeviceRef) -> str:
    return ref.ip or ref.hostname or ref.device_id


def _status(value: alert_pb2.IncidentStatus.ValueType) -> str:
    return alert_pb2.IncidentStatus.Name(value).removeprefix("INCIDENT_STATUS_").lower()


def _kind(value: responder_pb2.ActionKind.ValueType) -> str:
    return responder_pb2.ActionKind.Name(value).removeprefix("ACTION_KIND_").lower()


def _protocol(value: responder_pb2.IpProtocol.ValueType) -> str:
    return responder_pb2.IpProtocol.Name(value).removeprefix("IP_PROTOCOL_").lower()


def _responder_state(value: responder_pb2.ActionState.ValueType) -> str:
    return responder_pb2.ActionState.Name(value).removeprefix("ACTION_STATE_").lower()


INCIDENT_COLUMNS = (
    Column("INCIDENT", 40),
    Column("STATUS", 12),
    Column("SCORE", 5),
    Column("STARTED", 20),
    Column("UPDATED", 20),
    Column("DEVICES", 34),
    Column("PHASES", 40),
    Column("SUMMARY", 60),
)


def incident_row(incident: alert_pb2.Incident) -> list[str]:
    return [
        incident.incident_id,
        _status(incident.status),
        str(incident.score),
        iso(incident.start_time),
        iso(incident.update_time),
        ",".join(_device(d) for d in incident.devices),
        ",".join(incident.phases),
        incident.summary,
    ]


def incident_lines(incident: alert_pb2.Incident) -> list[str]:
    lines = block(
        [
            ("incident", incident.incident_id),
            ("status", _status(incident.status)),
            ("score", str(incident.score)),
            ("started", iso(incident.start_time)),
            ("updated", iso(incident.update_time)),
            ("devices", ", ".join(f"{_device(d)} ({d.device_id})" for d in incident.devices)),
            ("phases", " -> ".join(incident.phases) or "-"),
            ("tactics", ", ".join(incident.tactics) or "-"),
            ("techniques", ", ".join(incident.mitre_techniques) or "-"),
            ("breaches", ", ".join(incident.breach_ids)),
            ("summary", incident.summary),
        ]
    )
    lines.append("")
    lines += table(
        (
            Column("TIME", 20),
            Column("PHASE", 22),
            Column("DEVICE", 24),
            Column("SCORE", 5),
            Column("EVIDENCE", 100),
        ),
        (
            [iso(t.time), t.phase, _device(t.device), str(t.score), t.text or t.explanation]
            for t in incident.timeline
        ),
    )
    return lines


BREACH_COLUMNS = (
    Column("BREACH", 40),
    Column("TIME", 20),
    Column("SEVERITY", 8),
    Column("SCORE", 5),
    Column("MODEL", 36),
    Column("DEVICE", 24),
    Column("PEER", 22),
    Column("ACK", 3),
    Column("EXPLANATION", 60),
)


def _peer(breach: alert_pb2.ModelBreach) -> str:
    if not breach.peer_ip:
        return "-"
    return f"{breach.peer_ip}:{breach.peer_port}" if breach.peer_port else breach.peer_ip


def breach_row(breach: alert_pb2.ModelBreach, acknowledged: bool) -> list[str]:
    return [
        breach.breach_id,
        iso(breach.time),
        breach.severity or "-",
        str(breach.score),
        breach.model,
        _device(breach.device),
        _peer(breach),
        "yes" if acknowledged else "",
        breach.explanation,
    ]


def breach_lines(breach: alert_pb2.ModelBreach, acknowledged: bool) -> list[str]:
    lines = block(
        [
            ("breach", breach.breach_id),
            ("model", breach.model),
            ("time", iso(breach.time)),
            ("window", f"{iso(breach.window_start)} .. {iso(breach.window_end)}"),
            ("severity", f"{breach.severity or '-'} (score {breach.score})"),
            ("device", f"{_device(breach.device)} ({breach.device.device_id})"),
            ("peer", _peer(breach)),
            ("techniques", ", ".join(breach.mitre_techniques) or "-"),
            ("acknowledged", "yes" if acknowledged else "no"),
            ("explanation", breach.explanation),
        ]
    )
    lines.append("")
    lines += table(
        (
            Column("FEATURE", 36),
            Column("OBSERVED", 12),
            Column("EXPECTED", 12),
            Column("P", 10),
            Column("EXAMPLES", 80),
        ),
        (
            [e.feature, f"{e.observed:g}", f"{e.expected:g}", f"{e.probability:.3g}", ", ".join(e.examples)]
            for e in breach.evidence
        ),
    )
    return lines


DEVICE_COLUMNS = (
    Column("DEVICE", 40),
    Column("IP", 39),
    Column("MAC", 17),
    Column("HOSTNAME", 30),
    Column("FIRST SEEN", 20),
    Column("LAST SEEN", 20),
    Column("FLOWS", 10),
    Column("TAGS", 30),
)


def device_row(device: pb.Device) -> list[str]:
    return [
        device.device_id,
        device.ip,
        device.mac or "-",
        device.hostname or "-",
        iso(device.first_seen_time),
        iso(device.last_seen_time),
        str(device.flows_count),
        ",".join(device.tags),
    ]


def device_lines(device: pb.Device) -> list[str]:
    life = device.pattern_of_life
    lines = block(
        [
            ("device", device.device_id),
            ("ip", device.ip),
            ("addresses", ", ".join(device.ips) or "-"),
            ("mac", device.mac or "-"),
            ("hostname", device.hostname or "-"),
            ("first seen", iso(device.first_seen_time)),
            ("last seen", iso(device.last_seen_time)),
            ("flows", str(device.flows_count)),
            ("tags", ", ".join(device.tags) or "-"),
            (
                "active hours",
                ",".join(str(h) for h in life.active_hours) + " (UTC)" if life.active_hours else "-",
            ),
        ]
    )
    lines.append("")
    lines += table(
        (
            Column("USUAL PEER", 60),
            Column("CONNECTIONS", 11),
            Column("MEAN BYTES", 12),
            Column("LAST SEEN", 20),
        ),
        (
            [p.endpoint, str(p.connections_count), f"{p.mean_bytes:.0f}", iso(p.last_seen_time)]
            for p in life.usual_peers
        ),
    )
    lines.append("")
    lines += table(
        (Column("USUAL VOLUME", 48), Column("MEAN PER WINDOW", 15), Column("WINDOWS", 9)),
        ([v.feature, f"{v.mean_per_window:.3g}", f"{v.windows_learned:.0f}"] for v in life.usual_volumes),
    )
    return lines


ACTION_COLUMNS = (
    Column("ACTION", 40),
    Column("STATE", 9),
    Column("RESPONDER", 9),
    Column("KIND", 22),
    Column("TARGET", 39),
    Column("CREATED", 20),
    Column("EXPIRES", 20),
    Column("MODE", 9),
    Column("REASON", 50),
)


def action_row(record: pb.ActionRecord, responder: responder_pb2.ActionStatus | None) -> list[str]:
    action = record.action
    return [
        action.action_id,
        record.state,
        _responder_state(responder.state) if responder is not None else "-",
        _kind(action.kind),
        action.target_ip,
        iso(action.create_time),
        iso(responder.action.expire_time if responder is not None else action.expire_time),
        record.mode or "-",
        action.reason,
    ]


def action_doc(record: pb.ActionRecord, responder: responder_pb2.ActionStatus | None) -> dict[str, Any]:
    """An action record as JSON, with what the responder reports of it under "responder" (when it does)."""
    doc = as_dict(record)
    if responder is not None:
        doc["responder"] = as_dict(responder)
    return doc


def action_lines(record: pb.ActionRecord, responder: responder_pb2.ActionStatus | None) -> list[str]:
    action = record.action
    scopes = [f"{s.peer_ip or 'any'}:{s.port or 'any'}/{_protocol(s.protocol)}" for s in action.scopes]
    pairs = [
        ("action", action.action_id),
        ("state", record.state),
        ("mode", record.mode or "-"),
        ("kind", _kind(action.kind)),
        ("target", action.target_ip),
        ("scopes", ", ".join(scopes) or "-"),
        ("created", iso(action.create_time)),
        ("expires", iso(action.expire_time)),
        ("breach", action.breach_id or "-"),
        ("incident", action.incident_id or "-"),
        ("reason", action.reason),
        ("detail", record.detail or "-"),
        ("attempts", str(record.attempts)),
    ]
    if responder is not None:
        pairs += [
            ("responder", f"{_responder_state(responder.state)} on {responder.backend or '?'}"),
            ("enforced until", iso(responder.action.expire_time)),
            ("responder detail", responder.detail or "-"),
        ]
    return block(pairs)


# -- the commands -------------------------------------------------------------------------------------------


@dataclass
class Output:
    as_json: bool
    write: Callable[[str], None]

    def doc(self, value: Mapping[str, Any]) -> None:
        self.write(json.dumps(value, sort_keys=True, ensure_ascii=False))

    def lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)


_T = TypeVar("_T")


def _pages(
    console: Console,
    method: str,
    make: Callable[[int, str], Message],
    items: Callable[[Any], Sequence[_T]],
    limit: int,
) -> Iterator[tuple[Any, _T]]:
    """Up to ``limit`` items over as many pages as it takes, each with the response it came in."""
    token, seen = "", 0
    while seen < limit:
        answer = console.call(method, make(min(MAX_PAGE, limit - seen), token))
        for item in items(answer)[: limit - seen]:
            seen += 1
            yield answer, item
        token = answer.next_page_token
        if not token:
            return


def _incidents(console: Console, args: argparse.Namespace, out: Output) -> None:
    cmd = args.operator_command
    if cmd == "list":
        status = alert_pb2.INCIDENT_STATUS_UNSPECIFIED
        if args.status:
            status = alert_pb2.IncidentStatus.Value(f"INCIDENT_STATUS_{args.status.upper()}")

        def make(size: int, token: str) -> Message:
            return pb.ListIncidentsRequest(page_size=size, page_token=token, status=status)

        found = [i for _, i in _pages(console, "ListIncidents", make, lambda a: a.incidents, args.limit)]
        if out.as_json:
            for incident in found:
                out.doc(as_dict(incident))
        else:
            out.lines(table(INCIDENT_COLUMNS, (incident_row(i) for i in found)))
        return
    if cmd == "show":
        incident = console.call("GetIncident", pb.GetIncidentRequest(incident_id=args.incident_id)).incident
        if out.as_json:
            out.doc(as_dict(incident))
        else:
            out.lines(incident_lines(incident))
        return
    if cmd == "acknowledge":
        console.call("Acknowledge", pb.AcknowledgeRequest(id=args.incident_id, reason=args.reason))
        incident = console.call("GetIncident", pb.GetIncidentRequest(incident_id=args.incident_id)).incident
    else:  # resolve
        incident = console.call(
            "SetIncidentStatus",
            pb.SetIncidentStatusRequest(
                incident_id=args.incident_id, status=alert_pb2.INCIDENT_STATUS_RESOLVED, reason=args.reason
            ),
        ).incident
    if out.as_json:
        out.doc(as_dict(incident))
    else:
        out.write(f"incident {_clean(incident.incident_id)} is {_status(incident.status)}")


def _ts(when: datetime | None) -> Timestamp | None:
    if when is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(when.astimezone(UTC))
    return stamp


def _breaches(console: Console, args: argparse.Namespace, out: Output) -> None:
    cmd = args.operator_command
    if cmd == "list":

        def make(size: int, token: str) -> Message:
            return pb.ListBreachesRequest(
                page_size=size,
                page_token=token,
                device_id=args.device or "",
                model=args.model or "",
                min_severity=args.min_severity or "",
                since_time=_ts(args.since),
                until_time=_ts(args.until),
                include_suppressed=args.include_suppressed,
            )

        found = list(_pages(console, "ListBreaches", make, lambda a: a.breaches, args.limit))
        rows = [(b, b.breach_id in answer.acknowledged_breach_ids) for answer, b in found]
        if out.as_json:
            for breach, acked in rows:
                out.doc({**as_dict(breach), "acknowledged": acked})
        else:
            out.lines(table(BREACH_COLUMNS, (breach_row(b, acked) for b, acked in rows)))
        return
    if cmd == "show":

        def every(size: int, token: str) -> Message:
            return pb.ListBreachesRequest(page_size=size, page_token=token, include_suppressed=True)

        for answer, breach in _pages(console, "ListBreaches", every, lambda a: a.breaches, MAX_SHOW_SCAN):
            if breach.breach_id == args.breach_id:
                acked = breach.breach_id in answer.acknowledged_breach_ids
                if out.as_json:
                    out.doc({**as_dict(breach), "acknowledged": acked})
                else:
                    out.lines(breach_lines(breach, acked))
                return
        raise CommandFailed(f"no breach {args.breach_id!r} among the newest {MAX_SHOW_SCAN}", Exit.NOT_FOUND)
    if cmd == "acknowledge":
        console.call("Acknowledge", pb.AcknowledgeRequest(id=args.breach_id, reason=args.reason))
        if out.as_json:
            out.doc({"breach_id": args.breach_id, "acknowledged": True})
        else:
            out.write(f"breach {_clean(args.breach_id)} acknowledged")
        return
    answer = console.call(
        "Suppress",
        pb.SuppressRequest(
            model=args.model,
            device_id=args.device or "",
            duration=Duration(seconds=args.duration),
            reason=args.reason,
        ),
    )
    if out.as_json:
        out.doc(as_dict(answer))
    else:
        scope = f"device {args.device}" if args.device else "every device"
        out.write(
            f"suppression {_clean(answer.suppression_id)}: {_clean(args.model)} on {_clean(scope)} "
            f"for {args.duration}s (earlier breaches included)"
        )


def _devices(console: Console, args: argparse.Namespace, out: Output) -> None:
    if args.operator_command == "list":

        def make(size: int, token: str) -> Message:
            return pb.ListDevicesRequest(page_size=size, page_token=token)

        found = [d for _, d in _pages(console, "ListDevices", make, lambda a: a.devices, args.limit)]
        if out.as_json:
            for device in found:
                out.doc(as_dict(device))
        else:
            out.lines(table(DEVICE_COLUMNS, (device_row(d) for d in found)))
        return
    device = console.call("GetDevice", pb.GetDeviceRequest(device_id=args.device_id)).device
    if out.as_json:
        out.doc(as_dict(device))
    else:
        out.lines(device_lines(device))


def _actions(console: Console, args: argparse.Namespace, out: Output) -> None:
    cmd = args.operator_command
    if cmd in ("list", "show"):
        include_inactive = cmd == "show" or args.all
        answer = console.call("ListActions", pb.ListActionsRequest(include_inactive=include_inactive))
        seen = {s.action.action_id: s for s in answer.actions}
        records = list(answer.records)
        if cmd == "show":
            records = [r for r in records if r.action.action_id == args.action_id]
            if not records:
                raise CommandFailed(f"no action {args.action_id!r}", Exit.NOT_FOUND)
            if not out.as_json:
                out.lines(action_lines(records[0], seen.get(args.action_id)))
                return
        if out.as_json:
            for record in records:
                out.doc(action_doc(record, seen.get(record.action.action_id)))
        else:
            out.lines(table(ACTION_COLUMNS, (action_row(r, seen.get(r.action.action_id)) for r in records)))
        return
    if cmd == "confirm":
        result = console.call(
            "ConfirmAction", pb.ConfirmActionRequest(action_id=args.action_id, reason=args.reason)
        )
    elif cmd == "extend":
        result = console.call(
            "ExtendAction",
            pb.ExtendActionRequest(
                action_id=args.action_id, extension=Duration(seconds=args.by), reason=args.reason
            ),
        )
    else:  # revoke: ClearAction in the API
        result = console.call(
            "ClearAction", pb.ClearActionRequest(action_id=args.action_id, reason=args.reason)
        )
    status = result.status if result.HasField("status") else None
    if out.as_json:
        out.doc(action_doc(result.record, status))
        return
    record = result.record
    said = f"action {_clean(record.action.action_id)} is {record.state}"
    if status is not None:
        said += f"; responder: {_responder_state(status.state)}"
        if status.state in (responder_pb2.ACTION_STATE_PENDING, responder_pb2.ACTION_STATE_ACTIVE):
            said += f" until {iso(status.action.expire_time)}"
    out.write(said)


_GROUPS: Mapping[str, Callable[[Console, argparse.Namespace, Output], None]] = {
    "incidents": _incidents,
    "breaches": _breaches,
    "devices": _devices,
    "actions": _actions,
}


def run(args: argparse.Namespace, cfg: VigilConfig, environ: Mapping[str, str] | None = None) -> int:
    """Run one operator command; failures end in one line on stderr and their exit code."""
    out = Output(args.json, print)
    try:
        console = connect(cfg, os.environ if environ is None else environ)
        try:
            _GROUPS[args.command](console, args, out)
        finally:
            console.channel.close()
    except CommandFailed as exc:
        sys.stdout.flush()
        print(f"vigil: {exc}", file=sys.stderr)
        return exc.code
    return Exit.OK
