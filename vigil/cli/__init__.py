"""The `vigil` command: one entry point for every service and tool.

vigil up        all-in-one: embedded nats-server + Valkey, then sensor, master, responder, console
vigil sensor    the sensor service (pcap files or a live tap)
vigil sensor read CAPTURE --format zeek-json|jsonl --out DIR   (- for stdin / stdout)
vigil master    the master service
vigil responder the responder service
vigil console   the operator's API (gRPC ConsoleService and HTTP/JSON with /openapi.json)
vigil analyze   offline: captures -> breaches and the actions policy would take
vigil models    the model catalog: what makes each model breach, and the response
vigil eval      offline: scenario captures + truth files -> recall, precision, time to detect, false positives
vigil completion bash|zsh   the shell completion script
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import sys
import textwrap
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vigil import __version__
from vigil import log as vlog
from vigil.cli.completion import SHELLS
from vigil.cli.completion import script as completion_script
from vigil.config import ConfigError, VigilConfig, load, set_overrides, set_path
from vigil.exitcodes import Exit
from vigil.service import ListenError


class UsageError(Exception):
    """Flags that contradict each other; reported like argparse's own errors (exit 2)."""


def _common_options(after: bool) -> argparse.ArgumentParser:
    """--config and --set, accepted before the subcommand and after it (``vigil analyze --set k=v F``).

    After the subcommand they land in their own attributes: argparse copies a subcommand's namespace over
    the top-level one, which would otherwise replace the --set items given before it.
    """
    suffix = "_after" if after else ""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        dest="config" + suffix,
        type=Path,
        default=argparse.SUPPRESS if after else None,
        help="YAML config file (also VIGIL_CONFIG); VIGIL_* env overrides",
    )
    common.add_argument(
        "--set",
        dest="overrides" + suffix,
        action="append",
        default=argparse.SUPPRESS if after else [],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set master.window_s=10 (repeatable)",
    )
    return common


# One example or more per command, shown at the end of its --help (a capture path of "-" reads standard
# input; --out - writes to standard output).
EXAMPLES = {
    "up": (
        "vigil up --pcap capture.pcap --exit-when-done  # replay a capture through it all, then stop",
        "vigil up --interface eth1 --backend nftables   # watch a live interface, enforce actions",
    ),
    "sensor": (
        "vigil sensor --interface eth1 --set nats.url=nats://master:4222",
        "tcpdump -i eth1 -w - | vigil sensor --pcap -    # a capture on standard input",
    ),
    "sensor read": (
        "vigil sensor read capture.pcap --out logs/      # conn.log, dns.log, ... as Zeek JSON",
        "vigil sensor read - --out - <capture.pcap | jq 'select(._path == \"dns\")'",
    ),
    "master": ("vigil master --config /etc/vigil/vigil.yaml",),
    "responder": ("vigil responder --backend nftables --set responder.listen=0.0.0.0:50051",),
    "analyze": (
        "vigil analyze capture.pcap                      # breaches, incidents, actions",
        "vigil analyze --learn baseline.pcap --json day2.pcap | jq .model",
    ),
    "models": ("vigil models --json | jq -r .model_id",),
    "eval": ("vigil eval tests/data/scenarios                # recall, precision, time to detect",),
    "completion": (
        "source <(vigil completion bash)                 # in ~/.bashrc",
        "source <(vigil completion zsh)                  # in ~/.zshrc",
    ),
    "console": ("vigil console --config /etc/vigil/vigil.yaml  # gRPC and HTTP/JSON for operators",),
}
# The operator's commands (vigil/cli/operator.py) carry their examples beside their own options; their
# groups are listed here for `vigil --help`.
OPERATOR_EXAMPLES = {
    "incidents": ("vigil incidents list --status new",),
    "breaches": ("vigil breaches list --min-severity high --since 24h",),
    "devices": ("vigil devices show DEVICE_ID",),
    "actions": ("vigil actions confirm ACTION_ID --reason 'scanner, contain'",),
}
# From the codes themselves, so --help and vigil/exitcodes.py cannot disagree (the README's table is
# checked against them by tests/test_hostile_input.py).
EXIT_CODES_HELP = textwrap.fill(
    "exit codes: " + ", ".join(f"{int(code)} {code.meaning}" for code in Exit) + ".", width=100
)


def _example(line: str) -> str:
    """An example with its comment (after "  # ") in one column."""
    text, sep, comment = line.partition("  # ")
    return f"  {text.rstrip():<46}  # {comment}" if sep else f"  {line}"


def _epilog(command: str) -> str:
    lines = "\n".join(_example(line) for line in EXAMPLES[command])
    return f"examples:\n{lines}\n\n{EXIT_CODES_HELP}"


def _add(
    sub: Any, command: str, help: str, parents: list[argparse.ArgumentParser]
) -> argparse.ArgumentParser:
    """One subcommand, with its examples in its --help."""
    parser: argparse.ArgumentParser = sub.add_parser(
        command.rsplit(maxsplit=1)[-1],
        help=help,
        description=help[0].upper() + help[1:] + ".",
        parents=parents,
        epilog=_epilog(command),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil",
        description="Self-learning network detection and response.",
        parents=[_common_options(after=False)],
        epilog="examples:\n"
        + "\n".join(_example(lines[0]) for lines in (*EXAMPLES.values(), *OPERATOR_EXAMPLES.values()))
        + f"\n\n{EXIT_CODES_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vigil {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    common = [_common_options(after=True)]

    up = _add(sub, "up", "run everything on embedded servers", common)
    up.add_argument("--pcap", type=Path, action="append", default=[], help="replay capture file(s)")
    up.add_argument("--interface", help="capture live on this interface (root)")
    up.add_argument("--backend", choices=["dryrun", "nftables"], help="responder backend (default dryrun)")
    up.add_argument("--data-dir", type=Path, help="where embedded servers keep state (default var/vigil-up)")
    up.add_argument(
        "--exit-when-done",
        action="store_true",
        help="with --pcap: stop once the capture is processed and every action is settled",
    )
    up.add_argument("--realtime", action="store_true", help="with --pcap: replay at capture speed")
    up.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help="with --pcap: replay paced at X times capture speed (--realtime is X = 1)",
    )
    up.add_argument(
        "--zeek-logs",
        type=Path,
        metavar="DIR",
        help="write the sensor's rotated Zeek logs (conn.log, ...) here (default DATA_DIR/zeek-logs)",
    )
    up.add_argument(
        "--fresh",
        action="store_true",
        help="forget what an earlier run in the data directory learned (its telemetry, models and actions)",
    )

    sensor = _add(sub, "sensor", "run the sensor, or read a capture to logs", common)
    sensor.add_argument(
        "--pcap",
        type=Path,
        action="append",
        default=[],
        help="capture file(s) to read (- for standard input)",
    )
    sensor.add_argument("--interface", help="capture live on this interface (root)")
    sensor.add_argument(
        "--zeek-logs",
        type=Path,
        metavar="DIR",
        help="also write Zeek logs (conn.log, dns.log, ..., weird.log), rotated, into DIR",
    )
    sensor_sub = sensor.add_subparsers(dest="sensor_command")
    read = _add(
        sensor_sub, "sensor read", "decode captures to Zeek-compatible JSON logs or JSON lines", common
    )
    read.add_argument("captures", type=Path, nargs="+", help="capture files (- for standard input)")
    read.add_argument("--format", choices=["zeek-json", "jsonl"], default="zeek-json")
    read.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output directory, or - for standard output (zeek-json rows then name their log in _path)",
    )

    _add(sub, "master", "run the master", common)
    responder = _add(sub, "responder", "run the responder", common)
    responder.add_argument("--backend", choices=["dryrun", "nftables"])
    _add(sub, "console", "run the operator's API (gRPC and HTTP/JSON) on the master's store", common)

    analyze = _add(sub, "analyze", "offline: captures -> breaches and actions", common)
    analyze.add_argument("captures", type=Path, nargs="+", help="capture files (- for standard input)")
    analyze.add_argument("--json", action="store_true", help="one JSON object per line")
    analyze.add_argument(
        "--learn",
        type=Path,
        action="append",
        default=[],
        metavar="BASELINE",
        help="learn from this capture first, without reporting it (repeatable: --learn A --learn B)",
    )

    models = _add(sub, "models", "the model catalog: what makes each model breach, and the response", common)
    models.add_argument("--json", action="store_true", help="one JSON object per model")

    evaluate = _add(sub, "eval", "recall, precision, time to detect, false positives per device-day", common)
    evaluate.add_argument("directory", type=Path, help="a directory of *.truth.yaml files and their captures")
    evaluate.add_argument("--json", action="store_true", help="the table as one JSON object")
    from vigil.cli import operator  # vigil incidents|breaches|devices|actions: the console API's client

    operator.register(sub, common)

    completion = _add(sub, "completion", "print the shell completion script", [])
    completion.add_argument("shell", choices=SHELLS)
    return parser


def _check_flags(args: argparse.Namespace) -> None:
    """Flags that cannot mean anything together are refused rather than one silently winning."""
    live_or_replay = args.command in ("up", "sensor") and getattr(args, "sensor_command", None) is None
    if live_or_replay and args.pcap and args.interface:
        raise UsageError("--pcap and --interface exclude each other: replay captures or capture live")
    if args.command == "up" and any(str(p) == "-" for p in args.pcap):
        # up restarts a sensor that dies, and a pipe cannot be read twice.
        raise UsageError("vigil up reads captures by name; for standard input use vigil sensor --pcap -")
    if args.command == "up" and args.interface:
        if args.exit_when_done:
            raise UsageError("--exit-when-done needs --pcap: a live interface is never done")
        if args.realtime or args.speed is not None:
            raise UsageError("--realtime and --speed pace a --pcap replay; a live interface is real time")


def _check_source(args: argparse.Namespace, cfg: VigilConfig) -> None:
    """A sensor (alone or under `vigil up`) needs something to read, from the flags or the configuration."""
    runs_sensor = args.command == "up" or (args.command == "sensor" and args.sensor_command is None)
    if runs_sensor and cfg.sensor.source == "pcap" and not cfg.sensor.pcap_files:
        raise UsageError("nothing to watch: give --pcap FILE or --interface IFACE (or sensor.pcap_files)")


def _config_path(args: argparse.Namespace) -> Path | None:
    before, after = args.config, getattr(args, "config_after", None)
    if before is not None and after is not None and before != after:
        raise UsageError(f"--config given twice ({before} and {after})")
    path = after or before
    if path is None and os.environ.get("VIGIL_CONFIG"):
        path = Path(os.environ["VIGIL_CONFIG"])
    return path if isinstance(path, Path) else None


def _config(args: argparse.Namespace) -> VigilConfig:
    overrides = set_overrides([*args.overrides, *getattr(args, "overrides_after", [])])
    if args.command in ("up", "sensor") and getattr(args, "sensor_command", None) is None:
        if args.pcap:
            set_path(overrides, ["sensor", "source"], "pcap")
            set_path(overrides, ["sensor", "pcap_files"], [str(p) for p in args.pcap])
        if args.interface:
            set_path(overrides, ["sensor", "source"], "tap")
            set_path(overrides, ["sensor", "interface"], args.interface)
        if args.zeek_logs:
            set_path(overrides, ["sensor", "zeek_logs", "directory"], str(args.zeek_logs))
    if args.command == "up":
        if args.realtime or args.speed is not None:
            set_path(overrides, ["sensor", "pcap_realtime"], True)
        if args.speed is not None:
            set_path(overrides, ["sensor", "pcap_speed"], args.speed)
        if args.backend:
            set_path(overrides, ["responder", "backend"], args.backend)
        if args.data_dir:
            set_path(overrides, ["up", "data_dir"], str(args.data_dir))
    elif args.command == "responder" and args.backend:
        set_path(overrides, ["responder", "backend"], args.backend)
    return load(_config_path(args), overrides=overrides)


def _models(as_json: bool) -> int:
    import json

    from master.catalog import catalog_rows

    for row in catalog_rows():
        if as_json:
            print(json.dumps(row, sort_keys=True))
            continue
        print(row["model"])
        print(f"    breaches when: {row['breaches_when']}")
        if row["techniques"]:
            print(f"    ATT&CK: {row['techniques']}")
        print(f"    response: {row['response']}")
    return Exit.OK


def _run(args: argparse.Namespace, cfg: VigilConfig) -> int:
    from vigil.cli import wiring

    if args.command == "up":
        return asyncio.run(wiring.up(cfg, exit_when_done=args.exit_when_done, fresh=args.fresh))
    if args.command == "sensor":
        if args.sensor_command == "read":
            return wiring.sensor_read(cfg, args.captures, args.format, args.out)
        return asyncio.run(wiring.sensor(cfg))
    if args.command == "master":
        return asyncio.run(wiring.master(cfg))
    if args.command == "responder":
        return asyncio.run(wiring.responder(cfg))
    if args.command == "console":
        return asyncio.run(wiring.console(cfg))
    if args.command == "analyze":
        return wiring.analyze(cfg, args.captures, as_json=args.json, learn=args.learn)
    if args.command == "models":
        return _models(as_json=args.json)
    if args.command == "eval":
        return wiring.evaluate(cfg, args.directory, as_json=args.json)
    from vigil.cli import operator

    if args.command in operator.COMMANDS:
        return operator.run(args, cfg)
    raise UsageError(f"unknown command {args.command}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or argparse's own usage error (already printed)
        return int(exc.code) if isinstance(exc.code, int) else Exit.USAGE
    if args.command == "completion":
        return _print(completion_script(parser, args.shell))
    try:
        _check_flags(args)
        cfg = _config(args)
        _check_source(args, cfg)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"vigil: error: {exc}", file=sys.stderr)
        return Exit.USAGE
    except ConfigError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return Exit.USAGE
    vlog.configure(cfg.log)
    if args.command == "up":
        # `vigil up` forks servers and services while gRPC's threads run; they exec at once and need none
        # of gRPC's fork handlers (which otherwise log a line on the operator's console at every start).
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from vigil.cli import wiring

    try:
        code = _run(args, cfg)
        # Output still buffered fails here, where it is handled, rather than at the interpreter's exit.
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return Exit.INTERRUPTED
    except BrokenPipeError:
        # Output piped into `head` or a closed pager: what was asked for was written.
        _quiet_stdout()
        return Exit.OK
    except (wiring.UserError, ListenError) as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return Exit.ENVIRONMENT
    except wiring.DependencyError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return Exit.DEPENDENCY
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            return _internal_error(exc, cfg.log.level)
        # A full disk, a read-only file system, a file it may not touch: the operator's to fix, not a bug.
        where = exc.filename or "cannot write"
        print(f"vigil: {where}: {exc.strerror or exc}", file=sys.stderr)
        if exc.filename is None:
            _quiet_stdout()  # what stdout still buffers would fail again at exit
        return Exit.ENVIRONMENT
    except Exception as exc:
        return _internal_error(exc, cfg.log.level)


# Errors of the machine, not of Vigil (exit 1): no space or quota left, a read-only file system, no right.
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _internal_error(exc: BaseException, level: str) -> int:
    """The last resort: a bug still ends in one clear line, not a traceback on the operator's screen."""
    print(
        f"vigil: internal error ({type(exc).__name__}: {str(exc)[:200]}); "
        "run with --set log.level=debug for the traceback, and please report it",
        file=sys.stderr,
    )
    if level == "debug":
        traceback.print_exception(exc)
    return Exit.INTERNAL


def _print(text: str) -> int:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
    return Exit.OK


def _quiet_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
