"""The `vigil` command: one entry point for every service and tool.

vigil up        all-in-one: embedded nats-server + Valkey, then sensor, master, responder
vigil sensor    the sensor service (pcap files or a live tap)
vigil sensor read CAPTURE --format zeek-json|jsonl --out DIR
vigil master    the master service
vigil responder the responder service
vigil analyze   offline: captures -> breaches and the actions policy would take
vigil models    the model catalog: what makes each model breach, and the response
vigil eval      offline: scenario captures + truth files -> recall, precision, time to detect, false positives
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from vigil import __version__
from vigil import log as vlog
from vigil.config import ConfigError, VigilConfig, load


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``--set master.scan_window_s=10`` -> nested override mapping."""
    tree: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError([f"--set {item}: expected key.path=value"])
        key, raw = item.split("=", 1)
        node = tree
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError([f"--set {item}: empty key"])
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw else ""
    return tree


def _merge(tree: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil", description="Self-learning network detection and response."
    )
    parser.add_argument("--version", action="version", version=f"vigil {__version__}")
    parser.add_argument(
        "--config", type=Path, help="YAML config file (also VIGIL_CONFIG); VIGIL_* env overrides"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set master.scan_window_s=10 (repeatable)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run everything on embedded servers")
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

    sensor = sub.add_parser("sensor", help="run the sensor, or read a capture to logs")
    sensor.add_argument("--pcap", type=Path, action="append", default=[], help="capture file(s) to read")
    sensor.add_argument("--interface", help="capture live on this interface (root)")
    sensor_sub = sensor.add_subparsers(dest="sensor_command")
    read = sensor_sub.add_parser("read", help="decode a capture to Zeek-compatible JSON logs or JSON lines")
    read.add_argument("captures", type=Path, nargs="+")
    read.add_argument("--format", choices=["zeek-json", "jsonl"], default="zeek-json")
    read.add_argument("--out", type=Path, required=True, help="output directory")

    sub.add_parser("master", help="run the master")
    responder = sub.add_parser("responder", help="run the responder")
    responder.add_argument("--backend", choices=["dryrun", "nftables"])

    analyze = sub.add_parser("analyze", help="offline: captures -> breaches and actions")
    analyze.add_argument("captures", type=Path, nargs="+")
    analyze.add_argument("--json", action="store_true", help="one JSON object per line")
    analyze.add_argument(
        "--learn",
        type=Path,
        action="append",
        default=[],
        metavar="BASELINE",
        help="learn from this capture first, without reporting it (repeatable: --learn A --learn B)",
    )

    models = sub.add_parser(
        "models", help="the model catalog: what makes each model breach, and the response"
    )
    models.add_argument("--json", action="store_true", help="one JSON object per model")

    evaluate = sub.add_parser(
        "eval", help="recall, precision, time to detect, false positives per device-day"
    )
    evaluate.add_argument("directory", type=Path, help="a directory of *.truth.yaml files and their captures")
    evaluate.add_argument("--json", action="store_true", help="the table as one JSON object")
    return parser


def _config(args: argparse.Namespace) -> VigilConfig:
    overrides = _parse_set(args.overrides)
    if args.command == "up":
        if args.pcap:
            _merge(overrides, ["sensor", "source"], "pcap")
            _merge(overrides, ["sensor", "pcap_files"], [str(p) for p in args.pcap])
        if args.interface:
            _merge(overrides, ["sensor", "source"], "tap")
            _merge(overrides, ["sensor", "interface"], args.interface)
        if args.realtime:
            _merge(overrides, ["sensor", "pcap_realtime"], True)
        if args.backend:
            _merge(overrides, ["responder", "backend"], args.backend)
        if args.data_dir:
            _merge(overrides, ["up", "data_dir"], str(args.data_dir))
    elif args.command == "sensor" and args.sensor_command is None:
        if args.pcap:
            _merge(overrides, ["sensor", "source"], "pcap")
            _merge(overrides, ["sensor", "pcap_files"], [str(p) for p in args.pcap])
        if args.interface:
            _merge(overrides, ["sensor", "source"], "tap")
            _merge(overrides, ["sensor", "interface"], args.interface)
    elif args.command == "responder" and args.backend:
        _merge(overrides, ["responder", "backend"], args.backend)
    path = args.config or (Path(os.environ["VIGIL_CONFIG"]) if os.environ.get("VIGIL_CONFIG") else None)
    return load(path, overrides=overrides)


def _models(as_json: bool) -> int:
    import json

    from master.breaches import model_id
    from master.catalog import catalog_rows
    from master.policy import playbook_text

    for base in catalog_rows():
        row = {"model_id": model_id(base["model"]), **base, "response": playbook_text(base["model"])}
        if as_json:
            print(json.dumps(row, sort_keys=True))
            continue
        print(row["model"])
        print(f"    breaches when: {row['breaches_when']}")
        if row["techniques"]:
            print(f"    ATT&CK: {row['techniques']}")
        print(f"    response: {row['response']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = _config(args)
    except ConfigError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    vlog.configure(cfg.log)
    from vigil import wiring

    try:
        if args.command == "up":
            return asyncio.run(wiring.up(cfg, exit_when_done=args.exit_when_done))
        if args.command == "sensor":
            if args.sensor_command == "read":
                return wiring.sensor_read(cfg, args.captures, args.format, args.out)
            return asyncio.run(wiring.sensor(cfg))
        if args.command == "master":
            return asyncio.run(wiring.master(cfg))
        if args.command == "responder":
            return asyncio.run(wiring.responder(cfg))
        if args.command == "analyze":
            return wiring.analyze(cfg, args.captures, as_json=args.json, learn=args.learn)
        if args.command == "models":
            try:
                return _models(as_json=args.json)
            except BrokenPipeError:  # `vigil models | head`
                sys.stderr.close()
                return 0
        if args.command == "eval":
            return wiring.evaluate(cfg, args.directory, as_json=args.json)
    except KeyboardInterrupt:
        return 130
    except wiring.UserError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
