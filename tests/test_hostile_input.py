"""Hostile command lines and configurations: a clear message and a documented exit code, never a traceback
or a hang (the README's table of exit codes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO
from vigil import cli
from vigil.config import MAX_CONFIG_BYTES, ConfigError, load, set_overrides
from vigil.exitcodes import Exit

LAB_CAPTURE = REPO / "tests" / "data" / "lab-scan.pcap"
# What the quick commands may answer with: never INTERNAL (a bug), never a traceback.
QUICK_CODES = {Exit.OK, Exit.ENVIRONMENT, Exit.USAGE, Exit.INPUT, Exit.EVAL_BELOW_TARGET}
KEYS = [
    "master.window_s",
    "master.block_duration_s",
    "master.internal_networks",
    "master.protected.networks",
    "master.responder_address",
    "master.timezone",
    "master.min_event_time",
    "master.max_event_step_s",
    "master",
    "sensor",
    "sensor.vxlan_ports",
    "sensor.http.port",
    "sensor.batch_max_records",
    "sensor.spool_max_age_s",
    "nats.url",
    "nats.stream",
    "redis.url",
    "responder.listen",
    "responder.backend",
    "log.level",
    "up.data_dir",
    "no.such.key",
    "",
    ".",
    "a..b",
]
NASTY_VALUES = [
    ".inf",
    "-.inf",
    "nan",
    ".nan",
    "[",
    "{",
    "[1,2",
    "-1",
    "0",
    "1e309",
    "99999999999999999999999999",
    "70000",
    "true",
    "null",
    "~",
    "",
    "&a [*a]",
    "!!python/object:os.system ls",
    "\x00",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
]
values = st.one_of(st.sampled_from(NASTY_VALUES), st.text(max_size=40))
settings_items = st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), values) | st.text(max_size=30)
file_contents = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.sampled_from(
        [
            b"master: 3\n",
            b"master: [1, 2]\n",
            b"a: &x [1]\nb: *x\n",
            b"- just\n- a list\n",
            b"master:\n  window_s: .nan\n",
            b"\xef\xbb\xbfmaster: {}\n",
            b"sensor:\n  source: tap\n",
            b"!!binary AAAA",
        ]
    ),
)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=file_contents,
    env=st.dictionaries(st.sampled_from(KEYS), values, max_size=3),
    sets=st.lists(settings_items, max_size=4),
)
def test_the_config_parser_raises_only_config_errors(
    tmp_path: Path, content: bytes, env: dict[str, str], sets: list[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    environ = {"VIGIL_" + k.upper().replace(".", "__"): v.replace("\x00", "") for k, v in env.items() if k}
    try:
        cli_overrides = set_overrides(sets)
        load(path, environ=environ, overrides=cli_overrides)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    where=st.sampled_from(["before", "after"]),
    sets=st.lists(settings_items, max_size=3),
    content=st.none() | file_contents,
    command=st.sampled_from(["models", "analyze", "read", "eval", "up-conflict", "sensor-conflict"]),
    capture=st.sampled_from(["missing", "directory", "device", "random", "truncated", "empty"]),
    junk=st.binary(max_size=64),
)
def test_quick_commands_answer_with_a_documented_code(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
    sets: list[str],
    content: bytes | None,
    command: str,
    capture: str,
    junk: bytes,
) -> None:
    options: list[str] = []
    if content is not None:
        (tmp_path / "c.yaml").write_bytes(content)
        options += ["--config", str(tmp_path / "c.yaml")]
    for item in sets:
        options += ["--set", item]
    target = {
        "missing": tmp_path / "nope.pcap",
        "directory": tmp_path,
        "device": Path("/dev/null"),
        "random": tmp_path / "random.pcap",
        "truncated": tmp_path / "cut.pcap",
        "empty": tmp_path / "empty.pcap",
    }[capture]
    (tmp_path / "random.pcap").write_bytes(junk)
    (tmp_path / "cut.pcap").write_bytes(LAB_CAPTURE.read_bytes()[:3000])
    (tmp_path / "empty.pcap").write_bytes(b"")
    argv = {
        "models": ["models", "--json"],
        "analyze": ["analyze", str(target)],
        "read": ["sensor", "read", str(target), "--out", str(tmp_path / "out")],
        "eval": ["eval", str(target)],
        "up-conflict": ["up", "--pcap", str(target), "--interface", "lo"],
        "sensor-conflict": ["sensor", "--pcap", str(target), "--interface", "lo"],
    }[command]
    full = [*options, *argv] if where == "before" else [argv[0], *options, *argv[1:]]
    if command == "read" and where == "after":
        full = ["sensor", "read", *options, *argv[2:]]
    code, text = _run(full, capsys)
    assert code in QUICK_CODES, (full, code, text[-2000:])
    assert "Traceback" not in text, text[-2000:]
    if command.endswith("conflict"):
        assert code == Exit.USAGE


def _vigil(
    *args: str, stdin: int | None = subprocess.DEVNULL, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        stdin=stdin,
        env=env,
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--config", "/dev/zero", "models"], Exit.USAGE, "not a regular file"),
        (["--config", "/dev/urandom", "models"], Exit.USAGE, "not a regular file"),
        (["--config", "/", "models"], Exit.USAGE, "Is a directory"),
        (["--set", "master.window_s=.inf", "models"], Exit.USAGE, "finite number"),
        (["--set", "master.window_s=nan", "models"], Exit.USAGE, "master.window_s"),
        (["--set", "master=[", "models"], Exit.USAGE, "master: Input should be a valid dictionary"),
        (["--set", "master=3", "models"], Exit.USAGE, "master: Input should be a valid dictionary"),
        (["--set", "sensor.vxlan_ports=[99999]", "models"], Exit.USAGE, "less than or equal to 65535"),
        (["--set", "master.block_duration_s=1e300", "models"], Exit.USAGE, "master.block_duration_s"),
        (["--set", "responder.listen=nowhere", "models"], Exit.USAGE, "host:port"),
        (["--set", "noequals", "models"], Exit.USAGE, "expected key.path=value"),
        (["models", "--set", "master.window_s=-1"], Exit.USAGE, "greater than 0"),
        (["analyze", "/"], Exit.ENVIRONMENT, "a directory, not a capture file"),
        (["analyze", "/dev/null"], Exit.ENVIRONMENT, "a device, not a capture file"),
        (["sensor", "read", str(LAB_CAPTURE), "--out", "/dev/null"], Exit.ENVIRONMENT, "not a directory"),
        (["sensor", "read", str(LAB_CAPTURE), "--out", "/proc/vigil/x"], Exit.ENVIRONMENT, "cannot create"),
        (["sensor", "--pcap", "/nonexistent.pcap"], Exit.ENVIRONMENT, ""),
        (["up", "--pcap", str(LAB_CAPTURE), "--interface", "lo"], Exit.USAGE, "exclude each other"),
        (["up", "--interface", "lo", "--exit-when-done"], Exit.USAGE, "needs --pcap"),
        (["up", "--interface", "lo", "--speed", "2"], Exit.USAGE, "pace a --pcap replay"),
        (["up", "--pcap", str(LAB_CAPTURE), "--speed", "-3"], Exit.USAGE, "sensor.pcap_speed"),
        (["up", "--pcap", "/nonexistent.pcap"], Exit.ENVIRONMENT, "no such file"),
        (["up", "--pcap", str(LAB_CAPTURE), "--data-dir", "/dev/null"], Exit.ENVIRONMENT, "not a directory"),
        (["up"], Exit.USAGE, "nothing to watch"),
        (["sensor"], Exit.USAGE, "nothing to watch"),
        (["master", "--set", "redis.url=ftp://x"], Exit.USAGE, "redis.url"),
        (["nosuchcommand"], Exit.USAGE, "invalid choice"),
    ],
)
def test_hostile_invocations_fail_clearly(args: list[str], code: int, message: str) -> None:
    proc = _vigil(*args)
    assert proc.returncode == code, (proc.returncode, proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr + proc.stdout
    assert message in proc.stderr + proc.stdout


def test_a_config_fifo_with_no_writer_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    proc = _vigil("--config", str(fifo), "models", timeout=20)
    assert proc.returncode == Exit.USAGE and "not a regular file" in proc.stderr


def test_an_endless_or_huge_config_is_read_no_further_than_the_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (MAX_CONFIG_BYTES + 10))
    proc = _vigil("--config", str(big), "models")
    assert proc.returncode == Exit.USAGE and "larger than" in proc.stderr


def test_an_unknown_link_type_warns_and_exits_3(tmp_path: Path) -> None:
    from tests.sensor.packets import pcap_bytes

    capture = tmp_path / "fddi.pcap"
    capture.write_bytes(pcap_bytes([(1.0, b"\x00" * 40), (2.0, b"\x00" * 40)], linktype=10))
    proc = _vigil("analyze", str(capture))
    assert proc.returncode == Exit.INPUT, proc.stderr
    assert "none of its 2 packets could be decoded: link type 10" in proc.stderr
    out = tmp_path / "logs"
    proc = _vigil("sensor", "read", str(capture), "--out", str(out))
    assert proc.returncode == Exit.INPUT and "link type 10" in proc.stderr


def test_the_exit_codes_are_documented_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    for code in Exit:
        assert f"| {int(code)} |" in readme, f"exit code {int(code)} ({code.name}) missing from the README"


def test_records_the_door_turns_away_are_reported_not_silent(tmp_path: Path) -> None:
    """A capture whose clock ran two years ahead: no breach, and the operator is told why."""
    import struct

    data = LAB_CAPTURE.read_bytes()
    out, pos = [data[:24]], 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, pos)
        out.append(
            struct.pack("<IIII", sec + 2 * 365 * 86_400, frac, incl, orig) + data[pos + 16 : pos + 16 + incl]
        )
        pos += 16 + incl
    future = tmp_path / "future.pcap"
    future.write_bytes(b"".join(out))
    proc = _vigil("analyze", str(future))
    assert proc.returncode == Exit.OK, proc.stderr
    assert "710 records of the captures turned away at the master's door (time_in_future 710)" in proc.stderr


def test_off_stays_off_from_a_file_the_environment_and_set(tmp_path: Path) -> None:
    """YAML 1.1 reads on/off/yes/no as booleans; a setting whose values are words must get the word."""
    config = tmp_path / "vigil.yaml"
    config.write_text("sensor:\n  verify_l4_checksums: off\n  verify_ip_checksums: off\n")
    from_file = load(config, environ={})
    assert from_file.sensor.verify_l4_checksums == "off" and from_file.sensor.verify_ip_checksums is False
    from_env = load(
        None, environ={"VIGIL_SENSOR__VERIFY_L4_CHECKSUMS": "on", "VIGIL_SENSOR__VERIFY_IP_CHECKSUMS": "no"}
    )
    assert from_env.sensor.verify_l4_checksums == "on" and from_env.sensor.verify_ip_checksums is False
    from_set = load(None, environ={}, overrides=set_overrides(["sensor.verify_l4_checksums=off"]))
    assert from_set.sensor.verify_l4_checksums == "off"
    # true/false are still booleans, and a word that is no boolean is refused by the schema.
    assert (
        load(None, environ={"VIGIL_SENSOR__VERIFY_IP_CHECKSUMS": "true"}).sensor.verify_ip_checksums is True
    )
    with pytest.raises(ConfigError):
        load(None, environ={"VIGIL_SENSOR__VERIFY_IP_CHECKSUMS": "maybe"})


@pytest.mark.parametrize(
    ("command", "key"),
    [("responder", "responder.listen"), ("responder", "responder.http.port"), ("master", "master.http.port")],
)
def test_an_address_in_use_is_the_operators_to_fix_not_a_bug(command: str, key: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        value = f"127.0.0.1:{port}" if key.endswith("listen") else str(port)
        others = ["--set", "responder.http.port=0"] if key == "responder.listen" else []
        proc = _vigil(command, "--set", f"{key}={value}", *others, timeout=60)
    assert proc.returncode == Exit.ENVIRONMENT, proc.stderr
    assert f"{port}" in proc.stderr and "internal error" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["sensor", "up"])
def test_a_missing_interface_is_the_operators_to_fix_not_a_bug(command: str, short_tmp: Path) -> None:
    extra = ["--data-dir", str(short_tmp / "up")] if command == "up" else ["--set", "sensor.http.port=0"]
    proc = _vigil(command, "--interface", "nosuchif0", *extra, timeout=60)
    assert proc.returncode == Exit.ENVIRONMENT, proc.stdout + proc.stderr
    assert "nosuchif0: no such network interface" in proc.stdout + proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "args", [("models",), ("sensor", "read", str(LAB_CAPTURE), "--out", "-")], ids=["models", "sensor-read"]
)
def test_a_full_disk_is_the_operators_to_fix_not_a_bug(args: tuple[str, ...]) -> None:
    """Output into /dev/full, the kernel's device whose every write fails with ENOSPC."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "vigil.cli", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=REPO,
            env=env,
        )
    assert proc.returncode == Exit.ENVIRONMENT, proc.stderr
    assert "vigil: cannot write: No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
