"""The `vigil` command in a shell: captures from standard input and logs to standard output through real
pipes, a reader that closes the pipe early, help with examples for every command, completion scripts
loaded by a real bash and zsh."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from vigil.cli import EXAMPLES, OPERATOR_EXAMPLES, build_parser
from vigil.cli.completion import _subparsers

REPO = Path(__file__).resolve().parent.parent
LAB_CAPTURE = REPO / "tests" / "data" / "lab-scan.pcap"
# pcapng from a public capture (the pcap reader and the pcapng reader each read from a pipe).
WILD_PCAPNG = Path("/work/shared/corpus/wild/FoxIO-LLC__ja4/http1.pcapng")
VIGIL = [sys.executable, "-m", "vigil.cli"]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _vigil(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*VIGIL, *args], input=stdin, capture_output=True, cwd=REPO, env=ENV, timeout=120)


def _shell(script: str, shell: str = "bash") -> subprocess.CompletedProcess[str]:
    cmd = f'vigil() {{ {sys.executable} -m vigil.cli "$@"; }}\n{script}'
    # A home of its own: zsh's completion system writes its cache (.zcompdump) there.
    with tempfile.TemporaryDirectory() as home:
        return subprocess.run(
            [shell, "-c", cmd],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**ENV, "HOME": home},
            timeout=120,
        )


def test_analyze_reads_a_capture_from_standard_input() -> None:
    from_file = _vigil("analyze", "--json", str(LAB_CAPTURE))
    # Through a real pipe (not a file redirect, which would be seekable): cat | vigil analyze -.
    piped = _shell(f"set -o pipefail; cat {LAB_CAPTURE} | vigil analyze --json -")
    assert from_file.returncode == 0 and piped.returncode == 0, piped.stderr
    # The same breaches (connection uids are random per run, so they are left out).
    assert _breaches(piped.stdout) == _breaches(from_file.stdout.decode())
    assert ("device-network-scan", 100) in {(m, score) for m, _, score, _ in _breaches(piped.stdout)}


def _breaches(output: str) -> list[tuple[str, str, int, str]]:
    lines = [json.loads(line) for line in output.splitlines()]
    return [(b["model_id"], b["time"], b["score"], b["explanation"]) for b in lines if "model_id" in b]


@pytest.mark.parametrize("capture", [LAB_CAPTURE, WILD_PCAPNG], ids=["pcap", "pcapng"])
def test_sensor_read_from_a_pipe_to_standard_output(capture: Path, tmp_path: Path) -> None:
    if not capture.exists():
        pytest.skip(f"{capture} not in this corpus")
    assert _vigil("sensor", "read", str(capture), "--out", str(tmp_path)).returncode == 0
    piped = _shell(f"set -o pipefail; cat {capture} | vigil sensor read - --out -")
    assert piped.returncode == 0, piped.stderr
    rows = [json.loads(line) for line in piped.stdout.splitlines()]
    # One stream, every row naming its log first: the rows of each log are those of the log file.
    assert rows and all(next(iter(row)) == "_path" for row in rows)
    logs = {row["_path"] for row in rows}
    assert logs == {p.stem for p in tmp_path.glob("*.log")} and "conn" in logs
    for log in logs:
        written = [json.loads(line) for line in (tmp_path / f"{log}.log").read_text().splitlines()]
        from_stream = [_without_uids(row) for row in rows if row["_path"] == log]
        assert from_stream == [_without_uids(row) for row in written]


def _without_uids(row: dict[str, object]) -> dict[str, object]:
    """A row without "_path" and its connection and file ids (random per run)."""
    return {k: v for k, v in row.items() if k != "_path" and not k.endswith(("uid", "uids"))}


def test_standard_input_is_read_once_and_never_from_a_terminal() -> None:
    twice = _vigil("analyze", "-", "-", stdin=b"")
    assert twice.returncode == 1 and b"standard input can be read only once" in twice.stderr
    empty = _vigil("analyze", "-", stdin=b"")
    assert empty.returncode == 3 and b"standard input: file too short" in empty.stderr
    assert b"Traceback" not in twice.stderr + empty.stderr


def test_a_reader_that_closes_the_pipe_early_ends_it_quietly() -> None:
    # The output (about 1 MB of JSON lines) is far beyond the pipe's buffer: vigil is still writing
    # when head exits, and its next write fails with EPIPE.
    done = _shell(
        f'vigil sensor read {LAB_CAPTURE} --format jsonl --out - | head -1; echo "status=${{PIPESTATUS[0]}}"'
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) and lines[1] == "status=0", done.stdout
    assert (
        "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr and "Exception" not in done.stderr
    )
    # The same with the command's own pipe closed by the reading process.
    proc = subprocess.Popen(
        [*VIGIL, "sensor", "read", str(LAB_CAPTURE), "--out", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=ENV,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert json.loads(proc.stdout.readline())["_path"]
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert b"Traceback" not in proc.stderr.read()


def _commands() -> list[str]:
    parser = build_parser()
    out = []
    for name, sub in _subparsers(parser).items():
        out.append(name)
        out += [f"{name} {inner}" for inner in _subparsers(sub)]
    return out


def test_every_command_has_help_with_an_example() -> None:
    commands = _commands()
    # The built-in commands' examples are one table (an example per command, none of a command gone); the
    # operator's commands (vigil/cli/operator.py) carry theirs beside their options, checked below.
    assert set(EXAMPLES) <= set(commands), "no example of a command gone"
    assert set(EXAMPLES) | set(OPERATOR_EXAMPLES) >= {
        c for c in commands if c.split()[0] not in OPERATOR_EXAMPLES
    }
    assert set(OPERATOR_EXAMPLES) <= set(commands)
    for command in commands:
        done = _vigil(*command.split(), "--help")
        assert done.returncode == 0, command
        text = done.stdout.decode()
        examples = text.split("examples:\n", 1)[1]
        assert f"vigil {command}" in examples, (command, text)
        assert "exit codes: 0 done" in text
    top = _vigil("--help").stdout.decode()
    assert all(f"vigil {command.split()[0]}" in top.split("examples:", 1)[1] for command in commands)


def _complete(shell: str, words: list[str]) -> list[str]:
    """The candidates the completion function offers for ``words`` (the last is the word being typed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    zsh_arrays = "setopt ksharrays\n" if shell == "zsh" else ""
    done = _shell(
        f"source <(vigil completion {shell})\n{zsh_arrays}"
        f'COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMPREPLY=(); _vigil; echo "${{COMPREPLY[*]}}"',
        shell,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion() -> None:
    registered = _shell("source <(vigil completion bash)\ncomplete -p vigil")
    assert registered.stdout.strip() == "complete -o default -F _vigil vigil", registered.stderr
    assert _complete("bash", ["vigil", ""]) == [
        "up",
        "sensor",
        "master",
        "responder",
        "console",
        "analyze",
        "models",
        "eval",
        "incidents",
        "breaches",
        "devices",
        "actions",
        "completion",
    ]
    assert _complete("bash", ["vigil", "actions", ""]) == ["list", "show", "confirm", "extend", "revoke"]
    assert _complete("bash", ["vigil", "an"]) == ["analyze"]
    assert _complete("bash", ["vigil", "sensor", ""]) == ["read"]
    assert _complete("bash", ["vigil", "--set", "a=b", "sensor", "read", "--fo"]) == ["--format"]
    assert _complete("bash", ["vigil", "sensor", "read", "--format", ""]) == ["zeek-json", "jsonl"]
    assert _complete("bash", ["vigil", "--config", "up", "up", "--ba"]) == ["--backend"]
    assert _complete("bash", ["vigil", "completion", ""]) == ["bash", "zsh"]
    # A capture or a directory: nothing from vigil, and the shell offers file names (-o default).
    assert _complete("bash", ["vigil", "analyze", ""]) == []
    assert _complete("bash", ["vigil", "up", "--pcap", ""]) == []


def test_zsh_completion() -> None:
    if shutil.which("zsh") is None:
        pytest.fail("zsh missing: scripts/install.sh installs it")
    registered = _shell("source <(vigil completion zsh)\nprint -r -- ${_comps[vigil]}", "zsh")
    assert registered.stdout.strip() == "_bash_complete -o default -F _vigil", registered.stderr
    # zsh filters the candidates by the typed prefix itself; the function names the right set.
    assert _complete("zsh", ["vigil", "sensor", ""]) == ["read"]
    assert _complete("zsh", ["vigil", "up", "--backend", ""]) == ["dryrun", "nftables"]


def test_up_refuses_standard_input_because_it_may_read_a_capture_again() -> None:
    done = _vigil("up", "--pcap", "-", stdin=b"")
    assert done.returncode == 2 and b"for standard input use vigil sensor --pcap -" in done.stderr
