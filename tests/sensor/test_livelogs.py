"""Live Zeek logs: the sensor pipeline over real captures into rotating JSON / TSV logs, read back with a
TSV reader from PyPI (parsezeeklogs), rotation and disk bounds forced small, weird.log rows and sampling,
and a log directory that cannot be used."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import pytest
from parsezeeklogs import ZeekLog
from prometheus_client import CollectorRegistry

from sensor.analyzers import default_registry
from sensor.capture import read_capture
from sensor.livelogs import LIVE_LOGS, LiveZeekLogs, LogDirError, next_rotation, stamp
from sensor.logwriter import pipeline_records, zeek_logs
from sensor.pipeline import SensorPipeline
from sensor.service import SensorService
from sensor.weird import WeirdSampler
from sensor.zeekschema import SCHEMAS, VIGIL_COLUMNS, tsv_header, tsv_line, unlisted_columns
from tests.conftest import CORPUS
from tests.sensor.packets import MAC_A, MAC_B, ether, ipv4, pcap_bytes, tcp
from vigil.config import SensorConfig, VigilConfig, ZeekLogsConfig
from vigil.exitcodes import Exit

PETITPOTAM = CORPUS / "wild" / "corelight__PetitPotam" / "UnPatchedDCOpenFileRaw.pcapng"
METHODS = CORPUS / "reference" / "zeek" / "http" / "methods.pcap"
STAMP = r"\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d"
ZEEK_NAME = re.compile(rf"^(?P<log>[a-z_]+)\.(?P<open>{STAMP})(?:\.\d+)?\.log$")
# A live tap hands the pipeline small blocks (what arrived since the last read): so does the test.
LIVE_BLOCK = 64
SEED = 7  # connection uids: the same in the live run and the offline one
ARCHIVER_NAME = re.compile(rf"^(?P<log>[a-z_]+)__(?P<open>{STAMP})__(?P<close>{STAMP})__(?:\d+__)?\.log$")


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"corpus capture {path} not found (set VIGIL_CORPUS)")
    return path


def _live_run(
    capture: Path, cfg: ZeekLogsConfig, registry: CollectorRegistry, after_block: Any = None
) -> LiveZeekLogs:
    """The sensor service's loop without the bus: blocks -> pipeline -> live logs, then flush and close."""
    logs = LiveZeekLogs(cfg, peer="sensor-test", registry=registry)
    pipe = SensorPipeline(
        SensorConfig(), default_registry(), metrics_registry=registry, seed=SEED, weirds=logs.weirds
    )
    logs.start()
    for block in read_capture(capture, block_packets=LIVE_BLOCK):
        logs.add(pipe.feed(block), pipe.now)
        if after_block is not None:
            after_block(logs)
    logs.add(pipe.flush(), pipe.now)
    logs.close(pipe.now)
    return logs


def _offline(capture: Path) -> dict[str, list[dict[str, Any]]]:
    """What `vigil sensor read` renders of the same record stream (blocks as in _live_run)."""
    pipe = SensorPipeline(SensorConfig(), default_registry(), seed=SEED)
    records = [r for block in read_capture(capture, block_packets=LIVE_BLOCK) for r in pipe.feed(block)]
    return zeek_logs([*records, *pipe.flush()])


def _read_back(directory: Path, fmt: str, order: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every row of the directory's logs, by log, files in ``order`` (their rotation order)."""
    out: dict[str, list[dict[str, Any]]] = {}
    names = order if order is not None else sorted(p.name for p in directory.iterdir())
    for path in (directory / name for name in names):
        log = path.name.split(".")[0].split("__")[0]
        if fmt == "json":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        else:
            with ZeekLog(str(path)) as reader:
                assert reader.path == log
                rows = list(reader)
        out.setdefault(log, []).extend(rows)
    return out


def _same_row(log: str, expected: dict[str, Any], got: dict[str, Any], fmt: str) -> bool:
    if fmt == "json":
        return expected == got
    for name, _ztype in SCHEMAS[log]:
        want, have = expected.get(name), got.get(name)
        if want is None:
            if have not in (None, [], ""):
                return False
        elif isinstance(want, float):
            if not isinstance(have, float) or not math.isclose(want, have, abs_tol=1e-6):
                return False
        elif isinstance(want, list) and want and isinstance(want[0], float):
            if (
                not isinstance(have, list)
                or len(want) != len(have)
                or any(not math.isclose(a, b, abs_tol=1e-6) for a, b in zip(want, have, strict=False))
            ):
                return False
        elif want != have:
            return False
    return True


# -- schemas ----------------------------------------------------------------------------------------------


def _reference_headers() -> list[tuple[Path, str, list[tuple[str, str]]]]:
    found = []
    for path in (p for p in (CORPUS / "reference" / "zeek").rglob("*.log*") if p.is_file()):
        fields: list[str] = []
        types: list[str] = []
        log = ""
        for line in path.read_text(errors="replace").splitlines()[:12]:
            parts = line.split("\t")
            if parts[0] == "#path":
                log = parts[1]
            elif parts[0] == "#fields":
                fields = parts[1:]
            elif parts[0] == "#types":
                types = parts[1:]
        # Logs of tests that narrow a log to a few columns (their own filters) do not start with ts.
        if log in SCHEMAS and fields[:1] == ["ts"] and len(fields) == len(types):
            found.append((path, log, list(zip(fields, types, strict=True))))
    return found


def test_schemas_agree_with_the_headers_of_zeeks_own_logs(corpus: Path) -> None:
    """Every column of a reference log Zeek wrote has the same type in our schema, in Zeek's order, and
    Zeek's columns come before the ones Vigil adds."""
    headers = _reference_headers()
    assert {log for _, log, _ in headers} >= {"conn", "dns", "http", "ssl", "ntlm", "ldap", "weird"}
    for path, log, columns in headers:
        ours = dict(SCHEMAS[log])
        for name, ztype in columns:
            if name in ("speculative_service",):  # a policy script's column we do not write
                continue
            assert ours.get(name) == ztype, f"{path}: {log}.{name} is {ztype} in Zeek's log, {ours.get(name)}"
        order = [name for name, _ in SCHEMAS[log]]
        positions = [order.index(name) for name, _ in columns if name in ours]
        assert positions == sorted(positions), f"{path}: columns out of Zeek's order"
    for log, extra in VIGIL_COLUMNS.items():
        names = [name for name, _ in SCHEMAS[log]]
        assert names[-len(extra) :] == list(extra)


def test_every_column_the_sensor_renders_has_a_type(corpus: Path) -> None:
    captures = [
        p
        for p in sorted(CORPUS.rglob("*"))
        if p.suffix in (".pcap", ".pcapng") and p.stat().st_size < 5_000_000
    ]
    seen: set[str] = set()
    for capture in captures:
        logs = zeek_logs(
            pipeline_records(SensorConfig(), [capture], errors=[]),
            ldap_search_attributes=True,
            smb_reads_writes=True,
        )
        for log, rows in logs.items():
            seen.add(log)
            for row in rows:
                assert not unlisted_columns(log, row), f"{capture}: {log} {unlisted_columns(log, row)}"
    assert seen >= set(LIVE_LOGS) - {"weird"}, set(LIVE_LOGS) - seen


def test_tsv_values_round_trip_through_a_reader(tmp_path: Path) -> None:
    """Separators, markers, backslashes, control characters and UTF-8 survive Zeek's escaping, read back by
    parsezeeklogs (which undoes it as Zeek's tools do)."""
    rows = [
        {
            "ts": 1700000000.123456,
            "uid": "Cabc",
            "id.orig_h": "10.0.0.1",
            "id.orig_p": 40000,
            "id.resp_h": "fd00::1",
            "id.resp_p": 80,
            "trans_depth": 1,
            "method": "GET",
            "host": "-",
            "uri": "/a\tb\nc\\d,e",
            "referrer": "(empty)",
            "user_agent": "Grüße \x01",
            "request_body_len": 0,
            "response_body_len": 12,
            "tags": [],
            "resp_mime_types": ["text/html", "a,b"],
        },
        {"ts": 1700000001.0, "uid": "Cdef", "method": "", "status_code": 200, "proxied": ["x"]},
    ]
    path = tmp_path / "http.log"
    path.write_text(
        tsv_header("http", "2026-12-07-20-00-00") + "".join(tsv_line("http", r) + "\n" for r in rows)
    )
    with ZeekLog(str(path)) as reader:
        back = list(reader)
        assert reader.types["ts"] == "time" and reader.types["id.resp_p"] == "port"
    assert len(back) == 2
    for want, got in zip(rows, back, strict=True):
        assert _same_row("http", want, got, "tsv"), (want, got)
    assert back[0]["tags"] == [] and back[0]["referrer"] == "(empty)" and back[0]["host"] == "-"
    assert back[1]["method"] == "" and back[1]["uri"] is None


# -- the live writer over a capture -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "tsv"])
def test_live_logs_rotate_and_hold_every_row(tmp_path: Path, fmt: Literal["json", "tsv"]) -> None:
    """PetitPotam (91 s of a domain controller's traffic) with 10-second rotation: every log rotates on the
    10-second marks, files are named as Zeek names them, TSV files carry Zeek's header and #close, and the
    rotated files together hold exactly the rows `vigil sensor read` writes for the capture."""
    capture = _need(PETITPOTAM)
    cfg = ZeekLogsConfig(
        directory=tmp_path / "logs", format=fmt, rotate_interval_s=10, rotated_names="archiver"
    )
    registry = CollectorRegistry()
    logs = _live_run(capture, cfg, registry)
    files = logs.rotated_files
    assert sorted(files) == sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert not set(files) & {f"{log}.log" for log in LIVE_LOGS}, "a current file was left"
    conn_files = []
    for name in files:
        match = ARCHIVER_NAME.match(name)
        assert match, name
        assert match["log"] in LIVE_LOGS
        if match["log"] == "conn":
            conn_files.append(match)
        text = (tmp_path / "logs" / name).read_text(encoding="utf-8")
        if fmt == "tsv":
            lines = text.splitlines()
            assert lines[0] == "#separator \\x09"
            assert lines[1:4] == ["#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-"]
            assert lines[4] == f"#path\t{match['log']}"
            assert lines[5] == f"#open\t{match['open']}"
            assert lines[6].split("\t")[1:] == [n for n, _ in SCHEMAS[match["log"]]]
            assert lines[7].split("\t")[1:] == [t for _, t in SCHEMAS[match["log"]]]
            assert lines[-1] == f"#close\t{match['close']}"
        else:
            assert text and all(line.startswith("{") for line in text.splitlines())
    # Rotation on the 10-second marks of the capture's clock: every conn file but the last closes on one.
    assert len(conn_files) >= 5
    for match in conn_files[:-1]:
        assert int(match["close"][-2:]) % 10 == 0, match.group(0)
    rotations = registry.get_sample_value("vigil_sensor_zeek_log_rotations_total")
    assert rotations == len(files)

    back = _read_back(tmp_path / "logs", fmt, files)
    offline = _offline(capture)
    assert set(offline) <= set(back)
    for log, rows in offline.items():
        got = back[log]
        assert len(got) == len(rows), log
        for want, have in zip(rows, got, strict=True):
            assert _same_row(log, want, have, fmt), (log, want, have)
        assert registry.get_sample_value("vigil_sensor_zeek_log_rows_total", {"log": log}) == len(rows)
    weird_names = {row["name"] for row in back["weird"]}
    assert {
        "KERBEROS_unknown_security_blob",
        "TLS_bad_record_header",
        "DCE_RPC_unknown_context",
    } <= weird_names
    for row in back["weird"]:
        assert row["peer"] == "sensor-test" and row["notice"] is False
        assert (
            row["uid"].startswith("C")
            and row["id.resp_p"] > 0
            and row["name"].startswith(row["source"] + "_")
        )
    # Every error the sensor counted is a weird.log row or counted as sampled out.
    counted = sum(
        sample.value
        for metric in registry.collect()
        if metric.name in ("vigil_sensor_parse_errors", "vigil_sensor_decode_errors")
        for sample in metric.samples
        if sample.name.endswith("_total")
        and (metric.name == "vigil_sensor_parse_errors" or sample.labels["reason"].endswith("checksum"))
    )
    sampled_out = registry.get_sample_value("vigil_sensor_weirds_sampled_out_total") or 0.0
    assert counted == len(back["weird"]) + sampled_out


def test_zeeks_default_names_and_rotation_by_size(tmp_path: Path) -> None:
    capture = _need(PETITPOTAM)
    cfg = ZeekLogsConfig(
        directory=tmp_path / "logs", rotate_interval_s=0, rotate_max_bytes=20_000, max_total_bytes=10**9
    )
    registry = CollectorRegistry()
    names = _live_run(capture, cfg, registry).rotated_files  # in the order they were rotated
    assert sorted(names) == sorted(p.name for p in (tmp_path / "logs").iterdir())
    conn = [n for n in names if n.startswith("conn.")]
    assert len(conn) >= 3, names  # by size only: the capture's conn.log is several times 20 kB
    for name in names:
        assert ZEEK_NAME.match(name), name
    for name in conn[:-1]:
        size = (tmp_path / "logs" / name).stat().st_size
        assert 20_000 <= size < 20_000 + 4096  # rotated at the first row past the size


def test_disk_use_stays_bounded_and_the_oldest_files_go(tmp_path: Path) -> None:
    capture = _need(PETITPOTAM)
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "notes.txt").write_text("not ours")
    cfg = ZeekLogsConfig(
        directory=directory,
        format="tsv",
        rotate_interval_s=5,
        rotate_max_bytes=4096,
        max_total_bytes=40_000,
        max_files=12,
    )
    registry = CollectorRegistry()
    worst = [0]

    def measure(_logs: LiveZeekLogs) -> None:
        worst[0] = max(worst[0], sum(p.stat().st_size for p in directory.iterdir() if p.suffix == ".log"))

    logs = _live_run(capture, cfg, registry, measure)
    kept = [p for p in directory.iterdir() if p.suffix == ".log"]
    removed = registry.get_sample_value("vigil_sensor_zeek_log_removed_files_total") or 0.0
    rotations = registry.get_sample_value("vigil_sensor_zeek_log_rotations_total") or 0.0
    assert removed and removed > 10
    assert len(kept) == rotations - removed <= 12
    assert sum(p.stat().st_size for p in kept) <= 40_000
    # While running, the current files can add at most one rotate_max_bytes (and a row) each.
    assert worst[0] <= 40_000 + len(LIVE_LOGS) * (4096 + 2048)
    assert (directory / "notes.txt").read_text() == "not ours"
    # The newest survive: every kept file is one of the last rotations.
    assert sorted(p.name for p in kept) == sorted(logs.rotated_files)


def test_a_file_left_by_a_dead_sensor_is_rotated_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "conn.log").write_text('{"ts":1.0}\n')
    os.utime(directory / "conn.log", (1_700_000_000, 1_700_000_000))
    logs = LiveZeekLogs(ZeekLogsConfig(directory=directory), peer="p")
    logs.start()
    assert [p.name for p in directory.iterdir()] == [f"conn.{stamp(1_700_000_000)}.log"]
    assert logs.rotated_files == [f"conn.{stamp(1_700_000_000)}.log"]


def test_rotation_is_aligned_to_the_interval() -> None:
    start = 1_765_137_723.5  # some second within an hour
    due = next_rotation(start, 3600)
    assert due > start and due - start <= 3600 and stamp(due).endswith("-00-00")
    assert next_rotation(start, 0) == math.inf


# -- weird.log ---------------------------------------------------------------------------------------------


def test_weird_sampling_is_zeeks_threshold_then_rate() -> None:
    sampler = WeirdSampler(threshold=3, rate=10, duration_s=600)
    picked = []
    done = 0
    for chunk in (1, 4, 30, 65):
        picked += [done + i + 1 for i in sampler.take("bad_TCP_checksum", chunk, 100.0)]
        done += chunk
    assert picked == [1, 2, 3, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert sampler.sampled_out == 100 - 13
    assert sampler.take("bad_TCP_checksum", 1, 200.0) == []  # 101st of the window
    assert sampler.take("bad_TCP_checksum", 2, 700.0) == [0, 1]  # a new window
    assert sampler.take("other", 2, 700.0) == [0, 1]  # names are sampled apart


def test_a_flood_of_bad_checksums_writes_a_bounded_weird_log(tmp_path: Path) -> None:
    """5,000 forged segments with a wrong checksum (an insertion attempt): all dropped and counted, 30 rows
    in weird.log (Zeek's default sampling: the first 25, then every 1,000th)."""
    a, b = "10.1.0.5", "10.1.0.9"
    frames = []
    for i in range(5000):
        segment = tcp(40000 + i % 1000, 445, 1000 + i, 0, "S")
        frames.append(
            (
                1000.0 + i * 0.001,
                ether(MAC_A, MAC_B, ipv4(a, b, 6, segment[:16] + b"\xde\xad" + segment[18:])),
            )
        )
    capture = tmp_path / "flood.pcap"
    capture.write_bytes(pcap_bytes(frames))
    registry = CollectorRegistry()
    logs = LiveZeekLogs(ZeekLogsConfig(directory=tmp_path / "logs"), peer="p", registry=registry)
    pipe = SensorPipeline(
        SensorConfig(verify_l4_checksums="on"),
        default_registry(),
        metrics_registry=registry,
        weirds=logs.weirds,
    )
    logs.start()
    for block in read_capture(capture):
        logs.add(pipe.feed(block), pipe.now)
    logs.add(pipe.flush(), pipe.now)
    logs.close(pipe.now)
    assert (
        registry.get_sample_value("vigil_sensor_decode_errors_total", {"reason": "bad_l4_checksum"}) == 5000
    )
    rows = _read_back(tmp_path / "logs", "json")["weird"]
    assert len(rows) == 30
    assert {r["name"] for r in rows} == {"bad_TCP_checksum"}
    assert rows[0]["id.orig_h"] == a and rows[0]["id.resp_p"] == 445 and rows[0]["source"] == "TCP"
    assert registry.get_sample_value("vigil_sensor_weirds_sampled_out_total") == 4970
    assert "conn" not in _read_back(tmp_path / "logs", "json")  # none of them became a connection


def test_http_weirds_are_the_connections_zeek_calls_bad_requests(tmp_path: Path) -> None:
    """methods.pcap: the HTTP requests the analyzer rejects are the very connections of Zeek's
    bad_HTTP_request rows in its weird.log for that capture."""
    capture = _need(METHODS)
    zeek_weird = (
        METHODS.parent / "methods.pcap.baseline" / "scripts.base.protocols.http.http-methods" / "weird.log"
    )
    # The baseline's times are masked (XXXXXXXXXX.XXXXXX), which a typed reader refuses: split it by hand.
    columns = next(
        line.split("\t")[1:] for line in zeek_weird.read_text().splitlines() if line.startswith("#fields")
    )
    zeek_rows = [
        dict(zip(columns, line.split("\t"), strict=True))
        for line in zeek_weird.read_text().splitlines()
        if not line.startswith("#")
    ]
    zeek_ports = {int(r["id.orig_p"]) for r in zeek_rows if r["name"].startswith("bad_HTTP_request")}
    cfg = ZeekLogsConfig(directory=tmp_path / "logs", format="tsv")
    _live_run(capture, cfg, CollectorRegistry())
    rows = _read_back(tmp_path / "logs", "tsv")["weird"]
    assert {r["name"] for r in rows} == {"HTTP_bad_request_line"}
    assert {r["id.orig_p"] for r in rows} == zeek_ports
    assert len(rows) == len(zeek_ports) == 23


# -- a directory that cannot be used ------------------------------------------------------------------------


def test_an_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(LogDirError, match="cannot create"):
        LiveZeekLogs(ZeekLogsConfig(directory=blocker / "logs"), peer="p").start()
    with pytest.raises(LogDirError, match="not a directory"):
        LiveZeekLogs(ZeekLogsConfig.model_construct(directory=blocker), peer="p").start()


def test_the_sensor_service_exits_on_an_unusable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = VigilConfig.model_validate(
        {"sensor": {"pcap_files": [str(_need(METHODS))], "zeek_logs": {"directory": str(blocker / "logs")}}}
    )
    service = SensorService(cfg)
    asyncio.run(service.run(asyncio.Event()))
    assert service.exit_code == Exit.ENVIRONMENT


def test_a_directory_lost_while_running_drops_rows_counted_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = _need(PETITPOTAM)
    monkeypatch.setattr("sensor.livelogs.RETRY_AFTER_S", 0.0)
    directory = tmp_path / "logs"
    registry = CollectorRegistry()
    logs = LiveZeekLogs(
        ZeekLogsConfig(directory=directory, rotate_interval_s=10), peer="p", registry=registry
    )
    pipe = SensorPipeline(SensorConfig(), default_registry(), weirds=logs.weirds)
    logs.start()
    blocks = list(read_capture(capture, block_packets=LIVE_BLOCK))
    assert len(blocks) >= 1
    moved = tmp_path / "moved"
    for i, block in enumerate(blocks):
        logs.add(pipe.feed(block), pipe.now)
        if i == 0:
            directory.rename(moved)  # the directory is gone: opens and renames fail
    assert registry.get_sample_value("vigil_sensor_zeek_log_write_errors_total")
    directory.mkdir()  # back: the next rows are written again
    logs.add(pipe.flush(), pipe.now)
    logs.close(pipe.now)
    assert registry.get_sample_value("vigil_sensor_zeek_log_dropped_rows_total")
    assert any(directory.iterdir())


def test_config_refuses_a_file_larger_than_the_disk_bound(tmp_path: Path) -> None:
    from vigil.config import ConfigError, build

    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError) as err:
        build(
            {
                "sensor": {
                    "zeek_logs": {
                        "rotate_max_bytes": 2000,
                        "max_total_bytes": 1000,
                        "directory": str(tmp_path / "f"),
                    }
                }
            }
        )
    text = str(err.value)
    assert "sensor.zeek_logs.rotate_max_bytes: 2000 is larger than max_total_bytes (1000)" in text
    assert "sensor.zeek_logs.directory" in text and "not a directory" in text
