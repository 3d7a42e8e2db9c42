"""``make bench``: Vigil's sensor and master against reference tools on one capture, same machine, same run.

    .venv/bin/python -m bench.run [--packets N | --quick] [--skip tshark,nfstream,prev,master]
        [--rounds N] [--out bench/results.json]

What is measured (every tool in its own child process, so its peak RSS — ``ru_maxrss`` from ``os.wait4``,
which covers the child and the descendants it reaped — belongs to it alone):

- ``sensor.vigil_pps``: capture read + decode + flow table + every shipped analyzer, packets per CPU-second
  of the child, timed in-process by ``bench.sensor_speed.run`` after one untimed warm-up pass (the same
  protocol as ``bench/sensor_speed.py``). ``sensor.vigil_flows_only_pps``: the same without analyzers.
  Vigil, tshark and NFStream run in ``--rounds`` interleaved rounds (``sensor.rounds``); each figure is the
  median over the rounds and each ratio the median of the rounds' own ratios, so that the speed of a
  shared machine drifting between one tool's turn and the next does not decide a comparison.
- ``sensor.tshark_pps`` / ``sensor.nfstream_pps``: packets per CPU-second (user+sys from ``wait4``, NFStream's
  meter processes included) minus the CPU the same command spends on a one-packet capture, so interpreter
  and dissector start-up are not charged to throughput — Vigil's in-process timing excludes them too.
- ``sensor.prev_commit_pps``: HEAD~1's own ``bench/sensor_speed.py`` on the same file, in a throw-away
  ``git worktree`` under bench/work/, run with the current venv.
- ``master.records_per_s``: the records Vigil's sensor produced from the capture, in batches of 500, all
  waiting at once (a throughput test is a backlog), processed as the consumer does then: consecutive batches
  as units of work of up to ``master.unit_max_records`` records (:func:`master.ingest.work_units`), through
  :class:`master.ingest.BatchProcessor` + :class:`master.store.RedisStore` on a real Valkey, per
  CPU-second of client *plus* server (the loop is strictly sequential, so on an idle machine that sum
  is the wall time minus socket latency, while on a shared one it does not count other people's work).
  ``master.records_per_s_memory``: the same over :class:`master.store.MemoryStore`.
  ``master.records_per_s_per_batch``: Valkey again, one 500-record batch per unit (a stream that never
  backs up: each batch is processed as it arrives). ``master.redis_round_trips_per_unit`` and
  ``master.redis_round_trips_per_batch``: requests the batch path waits for (dedup check, the three loads,
  WATCH/EXISTS/EXEC of the commit) per unit of the backlog run and per batch of the one-batch run.
  ``master.state_bytes_per_device``: every key under the prefix after the run, divided by the devices;
  ``master.model_state_bytes_per_device``: only what was learned (beliefs, bindings, endpoint rarity,
  beacon series; LEARNED_STATE_KINDS);
  ``master.window_state_bytes_per_device``: the feature windows still open at the end.
- Ceilings of the present design, for deciding where speed must come from: ``sensor.analyzer_share`` is the
  share of one extra pass (first round) spent inside analyzer code, every session call timed
  (:func:`bench.sensor_speed.analyzer_share`); ``sensor.ceiling_pps_analyzers_only`` = ``vigil_pps`` / that
  share: the packets/s Vigil could not exceed with its Python analyzers even if reading, decoding, the flow
  table and reassembly cost nothing. ``master.ceiling_records_per_s_decode_extract``: records per
  CPU-second of decoding the protobuf records and extracting their observations alone
  (:meth:`master.pipeline.Pipeline.extract`), before any entity, model or store work: the most a master
  reading one protobuf record at a time could do.

Why CPU time: the machine is shared and noisy, and wall time charges whatever else ran to the tool being
measured. Wall-clock figures are recorded next to the CPU ones (``*_wall``) for reference. Ratios are always
between figures taken in this one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import inspect
import json
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
DEFAULT_OUT = ROOT / "bench" / "results.json"
DEFAULT_PACKETS = 1_000_000
QUICK_PACKETS = 100_000
DEFAULT_ROUNDS = 3
BATCH_RECORDS = 500  # what the master is fed per BatchProcessor.process call (as the brief for the service)
SKIPPABLE = ("tshark", "nfstream", "prev", "master")

# The 5-tuple plus the application fields Vigil's analyzers extract: tshark must dissect as deep as Vigil.
TSHARK_FIELDS = (
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "ip.proto",
    "dns.qry.name",
    "dns.qry.type",
    "dns.flags.rcode",
    "http.request.method",
    "http.host",
    "http.request.uri",
    "http.user_agent",
    "tls.handshake.extensions_server_name",
    "ntlmssp.auth.username",
    "ntlmssp.auth.hostname",
    "smb2.dialect",
    "kerberos.CNameString",
    "ldap.baseObject",
    "dhcp.option.hostname",
)

# Keys later work relies on; each is present in results.json (null when its tool was skipped/unavailable).
STABLE_KEYS = (
    "commit",
    "date",
    "machine",
    "sensor.vigil_pps",
    "sensor.vigil_flows_only_pps",
    "sensor.tshark_pps",
    "sensor.nfstream_pps",
    "sensor.prev_commit_pps",
    "sensor.ratio_vs_tshark",
    "sensor.ratio_vs_nfstream",
    "sensor.ratio_vs_prev_commit",
    "sensor.vigil_peak_rss_mb",
    "sensor.tshark_peak_rss_mb",
    "sensor.nfstream_peak_rss_mb",
    "sensor.packets",
    "sensor.capture_bytes",
    "master.records_per_s",
    "master.records_per_s_memory",
    "master.state_bytes_per_device",
    "master.devices",
    "sensor.analyzer_share",
    "sensor.ceiling_pps_analyzers_only",
    "master.ceiling_records_per_s_decode_extract",
)

Json = dict[str, Any]


def log(msg: str) -> None:
    # Progress goes to stderr so stdout carries only the table.
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --- child processes ----------------------------------------------------------------------------------


@dataclass
class ChildRun:
    returncode: int
    stdout: bytes
    stderr: str
    wall_s: float
    cpu_s: float  # user + sys of the child and every descendant it reaped
    peak_rss_mb: float

    def result(self) -> Json:
        """The JSON object a ``--child`` run prints as its last stdout line."""
        lines = [ln for ln in self.stdout.decode(errors="replace").splitlines() if ln.strip()]
        if self.returncode != 0 or not lines:
            raise RuntimeError(f"child failed (rc {self.returncode}): {self.stderr[-2000:]}")
        value = json.loads(lines[-1])
        if not isinstance(value, dict):
            raise RuntimeError("child printed no JSON object")
        return value


def run_child(
    cmd: Sequence[str],
    *,
    capture_stdout: bool = True,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> ChildRun:
    """Run ``cmd`` and reap it with ``os.wait4`` so its CPU time and peak RSS are its own."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=err,
            cwd=cwd,
            env=env,
        )
        out = proc.stdout.read() if proc.stdout is not None else b""
        if proc.stdout is not None:
            proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        # Tell Popen the child is reaped, or it would try to wait for the pid again later.
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    return ChildRun(
        returncode=proc.returncode,
        stdout=out,
        stderr=stderr,
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # Linux reports KiB
    )


def child_cmd(kind: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "bench.run", "--child", kind, *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The children import bench.* and the project from this checkout whatever the caller's cwd.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


# --- the capture --------------------------------------------------------------------------------------


def generator_version() -> str:
    """A digest of the generator's source: the cached capture is rebuilt exactly when the generator changes.

    Keyed on the generating functions rather than the whole of sensor_speed.py, whose measurement code
    changes often without changing the bytes it would generate.
    """
    from bench import sensor_speed as ss

    parts = [str(getattr(ss, "GENERATOR_VERSION", ""))]
    for name in (
        "_ip4",
        "_with_l4_checksum",
        "_Gen",
        "MAC_C",
        "MAC_S",
        "tcp_session",
        "tls_record",
        "tls_client_hello",
        "tls_server_hello",
        "dns_exchange",
        "syn_probe",
        "generate",
    ):
        obj = getattr(ss, name, None)
        if obj is None:
            parts.append(f"{name}:absent")
        elif isinstance(obj, bytes):
            parts.append(f"{name}:{obj.hex()}")
        else:
            parts.append(inspect.getsource(obj))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def ensure_capture(packets: int) -> Path:
    from bench import sensor_speed as ss

    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"capture-{packets}-g{generator_version()}.pcap"
    if path.exists():
        return path
    log(f"generating {packets:,} packets -> {path.relative_to(ROOT)}")
    started = time.perf_counter()
    # Write aside and rename: a concurrent run (the smoke test) never sees a half-written capture.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ss.generate(tmp, packets)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    log(f"generated in {time.perf_counter() - started:.1f}s")
    return path


def head_capture(src: Path, dst: Path, packets: int) -> None:
    """The first ``packets`` records of a classic pcap: the start-up baseline for the reference tools."""
    with open(src, "rb") as fh, open(dst, "wb") as out:
        out.write(fh.read(24))
        for _ in range(packets):
            rec = fh.read(16)
            if len(rec) < 16:
                break
            (incl,) = struct.unpack_from("<I", rec, 8)
            out.write(rec + fh.read(incl))


# --- sensor measurements ------------------------------------------------------------------------------


def child_vigil(capture: Path, analyzers: bool, records_out: Path | None, share: bool = False) -> Json:
    """In the child: warm up (and, with analyzers, dump the records for the master run), then time;
    with ``share``, one more pass with the analyzers timed (:func:`bench.sensor_speed.analyzer_share`)."""
    from bench import sensor_speed as ss
    from sensor.capture import read_capture
    from sensor.pipeline import SensorPipeline, tune_gc
    from vigil.config import SensorConfig

    tune_gc()  # as the sensor service and sensor_speed.py do at start-up
    if records_out is None:
        ss.run(capture, analyzers)  # warm-up: page cache, imports, numpy kernels
    else:
        # The warm-up pass doubles as the producer of the master's input, streamed to disk so it costs
        # this child no memory: one sensor pass fewer than producing them separately.
        pipe = SensorPipeline(SensorConfig(), ss.default_registry(), seed=1)
        with open(records_out, "wb") as fh:

            def dump(records: Sequence[Any]) -> None:
                for record in records:
                    raw = record.SerializeToString()
                    fh.write(struct.pack("<I", len(raw)))
                    fh.write(raw)

            for block in read_capture(capture):
                dump(pipe.feed(block))
            dump(pipe.flush())
    out: Json = ss.run(capture, analyzers)
    if share:
        out.update(ss.analyzer_share(capture))
    return out


def measure_vigil(
    capture: Path, analyzers: bool, records_out: Path | None, share: bool = False
) -> tuple[Json, ChildRun]:
    args = [str(capture), "--analyzers" if analyzers else "--no-analyzers"]
    if records_out is not None:
        args += ["--records-out", str(records_out)]
    if share:
        args.append("--analyzer-share")
    run = run_child(child_cmd("vigil", *args), env=child_env())
    return run.result(), run


def measure_external(cmd: Sequence[str], baseline_cmd: Sequence[str], capture_stdout: bool) -> Json:
    """CPU seconds of ``cmd`` net of what ``baseline_cmd`` (same tool, one-packet capture) costs."""
    base = run_child(baseline_cmd, capture_stdout=capture_stdout, env=child_env())
    if base.returncode != 0:
        raise RuntimeError(f"baseline failed (rc {base.returncode}): {base.stderr[-2000:]}")
    full = run_child(cmd, capture_stdout=capture_stdout, env=child_env())
    if full.returncode != 0:
        raise RuntimeError(f"failed (rc {full.returncode}): {full.stderr[-2000:]}")
    return {"run": full, "startup_cpu_s": base.cpu_s, "net_cpu_s": max(full.cpu_s - base.cpu_s, 1e-9)}


def tshark_cmd(capture: Path) -> list[str]:
    exe = shutil.which("tshark") or "/usr/bin/tshark"
    cmd = [exe, "-r", str(capture), "-T", "fields"]
    for field in TSHARK_FIELDS:
        cmd += ["-e", field]
    return cmd


def child_nfstream(capture: Path) -> Json:
    from nfstream import NFStreamer

    # Default settings, as the brief asks: NFStream picks its own meter count and dissection depth.
    flows = sum(1 for _ in NFStreamer(source=str(capture)))
    return {"flows": flows}


def measure_prev_commit(capture: Path, packets: int) -> Json | None:
    """HEAD~1's bench/sensor_speed.py on the same capture, from a temporary worktree; None if it has none."""
    if subprocess.run(
        ["git", "rev-parse", "-q", "--verify", "HEAD~1"], cwd=ROOT, capture_output=True
    ).returncode:
        log("prev: no HEAD~1")
        return None
    WORK.mkdir(parents=True, exist_ok=True)
    tree = WORK / f"prev-{os.getpid()}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(tree), "HEAD~1"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    try:
        script = tree / "bench" / "sensor_speed.py"
        if not script.is_file():
            log("prev: HEAD~1 has no bench/sensor_speed.py")
            return None
        out_json = tree / "bench" / "prev-result.json"
        env = dict(os.environ)
        # The worktree's packages must win over the editable install of this checkout.
        env["PYTHONPATH"] = str(tree)
        cmd = [sys.executable, str(script), "--file", str(capture), "--packets", str(packets)]
        run = run_child([*cmd, "--json", str(out_json)], cwd=tree, env=env)
        if run.returncode == 2 and "--json" in run.stderr:  # an older script without --json
            run = run_child(cmd, cwd=tree, env=env)
        if run.returncode != 0:
            raise RuntimeError(f"prev sensor_speed.py failed (rc {run.returncode}): {run.stderr[-2000:]}")
        if out_json.exists():
            pps = float(json.loads(out_json.read_text())["pkts_per_cpu_s"])
        else:
            found = re.search(r"([\d,.]+) pkt/s per CPU-second", run.stdout.decode(errors="replace"))
            if found is None:
                raise RuntimeError("prev sensor_speed.py printed no per-CPU-second figure")
            pps = float(found.group(1).replace(",", ""))
        return {"pps": pps, "peak_rss_mb": run.peak_rss_mb, "commit": git(["rev-parse", "HEAD~1"])}
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)
        shutil.rmtree(tree, ignore_errors=True)


# --- master measurements ------------------------------------------------------------------------------


def read_records(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while header := fh.read(4):
            (n,) = struct.unpack("<I", header)
            yield fh.read(n)


def _proc_cpu_s(pid: int) -> float:
    """user+sys CPU of a running process (the Valkey server), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" that closes comm, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(processor: Any, records: Sequence[Any], unit_records: int) -> tuple[float, int]:
    """Feed the batches the way the service's consumer does with all of them waiting: in units of
    consecutive batches of at most ``unit_records`` records, each unit committed before the next."""
    from master.ingest import work_units

    batches = [
        (f"bench-{i // BATCH_RECORDS}", records[i : i + BATCH_RECORDS])
        for i in range(0, len(records), BATCH_RECORDS)
    ]
    started = time.perf_counter()
    units = 0
    for part in work_units([len(b) for _, b in batches], unit_records):
        result = await processor.process_unit(batches[part])
        if result.duplicate or result.duplicates:
            raise RuntimeError("a bench batch was treated as a duplicate")
        if result.rejected:
            raise RuntimeError(f"the master's door turned bench records away: {dict(result.rejected)}")
        units += 1
    return time.perf_counter() - started, units


# What the master has learned about devices and the network (beliefs, bindings, rarity, beacon series, the
# meta-models' recent breaches), as opposed to open feature windows, the breach stream, actions and batch
# markers.
LEARNED_STATE_KINDS = (
    "model", "device", "ip", "mac", "cloud", "user", "endpoint", "beacons", "network", "breach_log",
    "devices",
)  # fmt: skip


async def _state_bytes(client: Any, prefix: str) -> tuple[int, dict[str, int]]:
    total = 0
    by_kind: dict[str, int] = {}
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 1000):
        chunk = keys[i : i + 1000]
        async with client.pipeline(transaction=False) as pipe:
            for key in chunk:
                pipe.memory_usage(key, samples=0)  # SAMPLES 0: every element of sets/streams, not 5
            sizes = await pipe.execute()
        for key, size in zip(chunk, sizes, strict=True):
            parts = key.decode()[len(prefix) + 1 :].split(":", 2)
            # A device's recent-breach log (the meta-models' state) is not the breach stream.
            kind = "breach_log" if parts[:2] == ["breaches", "device"] else parts[0]
            total += int(size or 0)
            by_kind[kind] = by_kind.get(kind, 0) + int(size or 0)
    return total, by_kind


async def child_master(records_path: Path, store_kind: str, unit_records: int | None) -> Json:
    from prometheus_client import CollectorRegistry

    from master.ingest import BatchProcessor, MasterMetrics
    from master.service import build_pipeline, build_policy
    from master.store import MemoryStore, RedisStore, Store
    from vigil import embedded
    from vigil.config import VigilConfig
    from vigil.sensor.v1 import sensor_pb2

    raw_records = list(read_records(records_path))
    parse0 = time.process_time()
    records = [sensor_pb2.Record.FromString(raw) for raw in raw_records]
    parse_cpu = time.process_time() - parse0
    del raw_records
    kinds: dict[str, int] = {}
    for record in records:
        kind = record.WhichOneof("kind") or "none"
        kinds[kind] = kinds.get(kind, 0) + 1
    cfg = VigilConfig()
    prefix = cfg.redis.key_prefix
    unit_records = unit_records or cfg.master.unit_max_records
    out: Json = {"records": len(records), "record_kinds": kinds, "unit_records": unit_records}
    if store_kind == "memory":
        # The floor of the per-record design: decoding each protobuf record and extracting its
        # observations, before any entity, model or store work (Pipeline.extract, as a unit does).
        extractor = build_pipeline(cfg.master, MemoryStore(prefix).keys)
        extract0 = time.process_time()
        for start in range(0, len(records), unit_records):
            extractor.extract(records[start : start + unit_records])
        out["floor_cpu_s"] = parse_cpu + time.process_time() - extract0
    with tempfile.TemporaryDirectory(prefix="vg-bench-", dir="/tmp") as tmp:  # short: unix socket path
        server = embedded.start_redis(Path(tmp) / "valkey") if store_kind == "redis" else None
        try:
            store: Store
            if server is not None:
                # As MasterService builds it: the dedup marker outlives the stream's retention by a day.
                store = RedisStore(server.url, prefix, cfg.nats.stream_max_age_s + 24 * 3600)
            else:
                store = MemoryStore(prefix)
            processor = BatchProcessor(
                build_pipeline(cfg.master, store.keys),
                build_policy(cfg.master),
                store,
                MasterMetrics(CollectorRegistry()),
            )
            server_cpu0 = _proc_cpu_s(server.proc.pid) if server is not None else 0.0
            cpu0 = time.process_time()
            wall, units = await _drive(processor, records, unit_records)
            client_cpu = time.process_time() - cpu0
            server_cpu = (_proc_cpu_s(server.proc.pid) - server_cpu0) if server is not None else 0.0
            out |= {
                "wall_s": wall,
                "client_cpu_s": client_cpu,
                "server_cpu_s": server_cpu,
                "devices": await store.device_count(),
                "units": units,
                "round_trips": getattr(store, "round_trips", None),
                "breaches": len(await store.breaches(limit=1_000_000)),
            }
            if isinstance(store, RedisStore):
                total, by_kind = await _state_bytes(store.client, store.keys.prefix)
                out |= {"state_bytes": total, "state_bytes_by_kind": by_kind}
            await store.close()
        finally:
            if server is not None:
                server.stop()
    return out


def measure_master(
    records_path: Path, store_kind: str, unit_records: int | None = None
) -> tuple[Json, ChildRun]:
    args = ["master", str(records_path), "--store", store_kind]
    if unit_records is not None:
        args += ["--unit-records", str(unit_records)]
    run = run_child(child_cmd(*args), env=child_env())
    return run.result(), run


# --- the run ------------------------------------------------------------------------------------------


def git(args: Sequence[str]) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def commit_id() -> str:
    try:
        head = git(["rev-parse", "HEAD"])
        dirty = bool(git(["status", "--porcelain"]))
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def rounded(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def run_all(packets: int, skip: set[str], rounds: int = DEFAULT_ROUNDS) -> Json:
    res: Json = {key: None for key in STABLE_KEYS}
    notes: list[str] = []
    res["commit"] = commit_id()
    res["date"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    res["machine"] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        # The machine is shared: the load when the run started says how much to trust wall-clock figures.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    res["method"] = (
        "pps = packets per CPU-second of the tool's process tree (vigil: timed in-process after a warm-up; "
        "tshark/nfstream: wait4 user+sys minus a one-packet start-up run); master records/s = records per "
        "CPU-second of client + Valkey server; ratios = vigil / reference, median over interleaved rounds "
        "of the same run; peak RSS = wait4 ru_maxrss"
    )
    capture = ensure_capture(packets)
    res["sensor.capture_bytes"] = capture.stat().st_size
    res["sensor.capture"] = capture.name

    with tempfile.TemporaryDirectory(prefix="run-", dir=WORK) as tmp_dir:
        tmp = Path(tmp_dir)
        records_path = tmp / "records.bin"
        baseline = tmp / "one-packet.pcap"
        head_capture(capture, baseline, 1)
        # The machine is shared and its speed drifts over minutes: Vigil and the references run in
        # interleaved rounds, and each ratio is the median of the rounds' own ratios, so a slow spell
        # during one tool's turn does not decide the comparison.
        per_round: list[Json] = []
        for k in range(rounds):
            row: Json = {}
            log(f"round {k + 1}/{rounds}: vigil sensor (flows + analyzers)")
            first = k == 0
            vigil, vrun = measure_vigil(capture, True, records_path if first else None, share=first)
            row["vigil_pps"] = vigil["pkts_per_cpu_s"]
            row["vigil_pps_wall"] = vigil["pkts_per_s"]
            if first:
                res["sensor.analyzer_share"] = rounded(vigil["analyzer_share"], 3)
                res["sensor.packets"] = int(vigil["packets"])
                res["sensor.vigil_records"] = int(vigil["records"])
                res["sensor.vigil_peak_rss_mb"] = rounded(vrun.peak_rss_mb)
            n = res["sensor.packets"]
            if "tshark" not in skip:
                log(f"round {k + 1}/{rounds}: tshark -T fields")
                try:
                    m = measure_external(tshark_cmd(capture), tshark_cmd(baseline), capture_stdout=False)
                    run: ChildRun = m["run"]
                    row["tshark_pps"] = n / m["net_cpu_s"]
                    row["tshark_pps_wall"] = n / run.wall_s
                    res["sensor.tshark_startup_cpu_s"] = rounded(m["startup_cpu_s"], 3)
                    res["sensor.tshark_peak_rss_mb"] = rounded(run.peak_rss_mb)
                except (OSError, RuntimeError) as exc:
                    notes.append(f"tshark: {exc}")
            if "nfstream" not in skip:
                log(f"round {k + 1}/{rounds}: nfstream")
                try:
                    m = measure_external(
                        child_cmd("nfstream", str(capture)),
                        child_cmd("nfstream", str(baseline)),
                        capture_stdout=True,
                    )
                    run = m["run"]
                    row["nfstream_pps"] = n / m["net_cpu_s"]
                    row["nfstream_pps_wall"] = n / run.wall_s
                    res["sensor.nfstream_flows"] = int(run.result()["flows"])
                    res["sensor.nfstream_startup_cpu_s"] = rounded(m["startup_cpu_s"], 3)
                    res["sensor.nfstream_peak_rss_mb"] = rounded(run.peak_rss_mb)
                except (OSError, RuntimeError) as exc:
                    notes.append(f"nfstream: {exc}")
            per_round.append(row)
        res["sensor.rounds"] = [{key: rounded(v) for key, v in row.items()} for row in per_round]
        for key in ("vigil_pps", "vigil_pps_wall", "tshark_pps", "tshark_pps_wall", "nfstream_pps",
                    "nfstream_pps_wall"):  # fmt: skip
            res[f"sensor.{key}"] = rounded(_median([row.get(key) for row in per_round]))
        for ref in ("tshark", "nfstream"):
            res[f"sensor.ratio_vs_{ref}"] = rounded(
                _median([ratio(row.get("vigil_pps"), row.get(f"{ref}_pps")) for row in per_round]), 3
            )

        # Even if everything around the analyzers cost nothing, the Python parsing alone caps throughput.
        res["sensor.ceiling_pps_analyzers_only"] = rounded(
            res["sensor.vigil_pps"] / res["sensor.analyzer_share"]
        )
        log("vigil sensor (flows only)")
        flows, frun = measure_vigil(capture, False, None)
        res["sensor.vigil_flows_only_pps"] = rounded(flows["pkts_per_cpu_s"])
        res["sensor.vigil_flows_only_peak_rss_mb"] = rounded(frun.peak_rss_mb)

        if "prev" not in skip:
            log("previous commit's sensor")
            try:
                prev = measure_prev_commit(capture, packets)
            except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
                prev = None
                notes.append(f"prev: {exc}")
            if prev is not None:
                res["sensor.prev_commit_pps"] = rounded(prev["pps"])
                res["sensor.prev_commit_peak_rss_mb"] = rounded(prev["peak_rss_mb"])
                res["sensor.prev_commit"] = prev["commit"]
        res["sensor.ratio_vs_prev_commit"] = ratio(res["sensor.vigil_pps"], res["sensor.prev_commit_pps"])

        if "master" not in skip:
            log("master over Valkey")
            redis, rrun = measure_master(records_path, "redis")
            log("master over MemoryStore")
            memory, mrun = measure_master(records_path, "memory")
            log("master over Valkey, one batch at a time")
            single, _ = measure_master(records_path, "redis", BATCH_RECORDS)
            records = int(redis["records"])
            res["master.records"] = records
            res["master.record_kinds"] = redis["record_kinds"]
            res["master.records_per_s"] = rounded(records / (redis["client_cpu_s"] + redis["server_cpu_s"]))
            res["master.records_per_s_wall"] = rounded(records / redis["wall_s"])
            res["master.records_per_s_memory"] = rounded(records / memory["client_cpu_s"])
            res["master.records_per_s_memory_wall"] = rounded(records / memory["wall_s"])
            # Decoding plus extraction alone, no learning: the most a per-record Python master could reach.
            res["master.ceiling_records_per_s_decode_extract"] = rounded(records / memory["floor_cpu_s"])
            res["master.unit_max_records"] = int(redis["unit_records"])
            res["master.records_per_s_per_batch"] = rounded(
                records / (single["client_cpu_s"] + single["server_cpu_s"])
            )
            res["master.ratio_units_vs_per_batch"] = ratio(
                res["master.records_per_s"], res["master.records_per_s_per_batch"]
            )
            res["master.ratio_redis_vs_memory"] = ratio(
                res["master.records_per_s"], res["master.records_per_s_memory"]
            )
            res["master.devices"] = int(redis["devices"])
            res["master.redis_round_trips_per_unit"] = rounded(redis["round_trips"] / redis["units"], 2)
            res["master.redis_round_trips_per_batch"] = rounded(single["round_trips"] / single["units"], 2)
            res["master.breaches"] = int(redis["breaches"])
            res["master.state_bytes"] = int(redis["state_bytes"])
            res["master.state_bytes_by_kind"] = redis["state_bytes_by_kind"]
            if redis["devices"]:
                devices = redis["devices"]
                kinds = redis["state_bytes_by_kind"]
                res["master.state_bytes_per_device"] = rounded(redis["state_bytes"] / devices)
                learned = sum(kinds.get(k, 0) for k in LEARNED_STATE_KINDS)
                res["master.model_state_bytes_per_device"] = rounded(learned / devices)
                res["master.window_state_bytes_per_device"] = rounded(kinds.get("features", 0) / devices)
            res["master.peak_rss_mb"] = rounded(rrun.peak_rss_mb)
            res["master.peak_rss_mb_memory"] = rounded(mrun.peak_rss_mb)
    if notes:
        res["notes"] = notes
    return res


def table(res: Json) -> str:
    def num(x: Any, fmt: str) -> str:
        return "—" if x is None else format(x, fmt)

    rows = [
        (
            "vigil sensor (flows+analyzers)",
            res["sensor.vigil_pps"],
            "pkt/s",
            None,
            res["sensor.vigil_peak_rss_mb"],
        ),
        (
            "vigil sensor (flows only)",
            res["sensor.vigil_flows_only_pps"],
            "pkt/s",
            None,
            res.get("sensor.vigil_flows_only_peak_rss_mb"),
        ),
        (
            "tshark -T fields",
            res["sensor.tshark_pps"],
            "pkt/s",
            res["sensor.ratio_vs_tshark"],
            res["sensor.tshark_peak_rss_mb"],
        ),
        (
            "nfstream",
            res["sensor.nfstream_pps"],
            "pkt/s",
            res["sensor.ratio_vs_nfstream"],
            res["sensor.nfstream_peak_rss_mb"],
        ),
        (
            "vigil sensor @ HEAD~1",
            res["sensor.prev_commit_pps"],
            "pkt/s",
            res["sensor.ratio_vs_prev_commit"],
            res.get("sensor.prev_commit_peak_rss_mb"),
        ),
        (
            "ceiling: analyzers alone",
            res.get("sensor.ceiling_pps_analyzers_only"),
            "pkt/s",
            None,
            None,
        ),
        ("master, Valkey store", res["master.records_per_s"], "rec/s", None, res.get("master.peak_rss_mb")),
        ("master, Valkey, batch by batch", res.get("master.records_per_s_per_batch"), "rec/s", None, None),
        (
            "master, memory store",
            res["master.records_per_s_memory"],
            "rec/s",
            None,
            res.get("master.peak_rss_mb_memory"),
        ),
        (
            "ceiling: decode + extract alone",
            res.get("master.ceiling_records_per_s_decode_extract"),
            "rec/s",
            None,
            None,
        ),
    ]
    lines = [
        f"{'tool':32} {'rate (per CPU-s)':>18} {'vigil ÷ it':>11} {'peak RSS':>10}",
        "-" * 74,
    ]
    for name, rate, unit, rat, rss in rows:
        rate_s = "—" if rate is None else f"{rate:,.0f} {unit}"
        rat_s = (
            ""
            if rat is None and name.startswith(("vigil sensor (", "master", "ceiling"))
            else num(rat, ".2f")
        )
        rss_s = "—" if rss is None else f"{rss:,.0f} MB"
        lines.append(f"{name:32} {rate_s:>18} {rat_s:>11} {rss_s:>10}")
    lines.append(
        f"{res['sensor.packets']:,} packets, {res['sensor.capture_bytes'] / 1e6:.0f} MB capture; "
        f"master: {num(res.get('master.records'), ',')} records, {num(res['master.devices'], ',')} devices, "
        f"{num(res.get('master.model_state_bytes_per_device'), ',.0f')} B learned state/device "
        f"({num(res['master.state_bytes_per_device'], ',.0f')} B with windows and breaches), "
        f"{num(res.get('master.redis_round_trips_per_unit'), '.1f')} Redis round trips/unit of "
        f"{num(res.get('master.unit_max_records'), ',')} records, "
        f"{num(res.get('master.redis_round_trips_per_batch'), '.1f')}/batch batch by batch; "
        f"commit {res['commit'][:12]}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, help=f"capture size (default {DEFAULT_PACKETS:,})")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_PACKETS:,} packets: a smoke test")
    ap.add_argument("--skip", default="", help=f"comma-separated, of: {','.join(SKIPPABLE)}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default bench/results.json)")
    ap.add_argument(
        "--rounds",
        type=int,
        help=f"interleaved Vigil/tshark/NFStream rounds (default {DEFAULT_ROUNDS}; 1 with --quick)",
    )
    # Internal: the measured work of one tool, in the child process run_child reaps.
    ap.add_argument("--child", choices=("vigil", "nfstream", "master"), help=argparse.SUPPRESS)
    ap.add_argument("target", nargs="?", type=Path, help=argparse.SUPPRESS)
    ap.add_argument(
        "--analyzers", action=argparse.BooleanOptionalAction, default=True, help=argparse.SUPPRESS
    )
    ap.add_argument("--records-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--analyzer-share", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--store", choices=("redis", "memory"), default="redis", help=argparse.SUPPRESS)
    ap.add_argument("--unit-records", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:
        if args.target is None:
            ap.error("--child needs a target file")
        if args.child == "vigil":
            out = child_vigil(args.target, args.analyzers, args.records_out, args.analyzer_share)
        elif args.child == "nfstream":
            out = child_nfstream(args.target)
        else:
            out = asyncio.run(child_master(args.target, args.store, args.unit_records))
        print(json.dumps(out, sort_keys=True))
        return 0

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SKIPPABLE)
    if unknown:
        ap.error(f"--skip: unknown {', '.join(sorted(unknown))} (choose from {', '.join(SKIPPABLE)})")
    packets = args.packets or (QUICK_PACKETS if args.quick else DEFAULT_PACKETS)
    rounds = args.rounds or (1 if args.quick else DEFAULT_ROUNDS)
    if rounds < 1:
        ap.error("--rounds must be at least 1")
    res = run_all(packets, skip, rounds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    tmp_out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    tmp_out.replace(args.out)
    print(table(res))
    for note in res.get("notes", []):
        print(f"note: {note}")
    with contextlib.suppress(ValueError):
        log(f"results -> {args.out.resolve().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
