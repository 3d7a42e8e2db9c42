"""`vigil incidents|breaches|devices|actions` against the real console (the stack of test_console_api: a scan
the master turned into breaches, an incident and a proposed action): tables and JSON Lines, an operator
confirming, extending and revoking an action the dry-run responder enforces, a suppression hiding the
breach, and each failure ending in one line and its documented exit code."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from master.api.service import ConsoleService
from tests.master.api.stack import OPERATOR_TOKEN, SCANNER, VIEWER_TOKEN, Stack
from tests.master.api.stack import active as _active
from tests.test_tls import Pki
from vigil import cli, embedded
from vigil.cli import operator
from vigil.config import build
from vigil.exitcodes import Exit
from vigil.responder.v1 import responder_pb2

pytestmark = pytest.mark.timeout(120)

ISO_UTC = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\b")
ROOT = Path(__file__).resolve().parents[3]


class Vigil:
    """Runs `vigil ...` here (in a thread: the servers run on the test's loop) against a console."""

    def __init__(
        self, address: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.address = address
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    async def __call__(self, token: str | None, *argv: str) -> tuple[int, str, str]:
        if token is None:
            self.monkeypatch.delenv("VIGIL_TOKEN", raising=False)
        else:
            self.monkeypatch.setenv("VIGIL_TOKEN", token)
        self.capsys.readouterr()
        code = await asyncio.to_thread(cli.main, [*argv, "--set", f"console.client.address={self.address}"])
        out, err = self.capsys.readouterr()
        return code, out, err

    async def json(self, token: str | None, *argv: str) -> list[dict[str, Any]]:
        code, out, err = await self(token, *argv, "--json")
        assert code == Exit.OK, err
        return [json.loads(line) for line in out.splitlines()]


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("vigil: ") and "Traceback" not in err, err
    return err


async def test_operator_commands_on_the_real_console(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    vigil = Vigil(stack.grpc_address, capsys, monkeypatch)
    proposed = stack.proposed
    action_id, breach_id = proposed.action.action_id, proposed.action.breach_id

    # Incidents: a table with aligned columns and ISO 8601 UTC times, JSON Lines, one shown in full.
    code, out, err = await vigil(VIEWER_TOKEN, "incidents", "list")
    assert code == Exit.OK, err
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["INCIDENT", "STATUS", "SCORE", "STARTED"]
    mine = [r for r in rows if SCANNER in r]
    assert len(mine) == 1 and ISO_UTC.search(mine[0]) and " new " in mine[0]
    assert header.index("STATUS") == mine[0].index(" new ") + 1
    incidents = await vigil.json(VIEWER_TOKEN, "incidents", "list", "--status", "new")
    (incident,) = [i for i in incidents if breach_id in i["breach_ids"]]
    incident_id = incident["incident_id"]
    assert mine[0].startswith(incident_id)
    code, out, err = await vigil(VIEWER_TOKEN, "incidents", "show", incident_id)
    assert code == Exit.OK, err
    assert "reconnaissance" in out and f"{SCANNER} (" in out and incident["summary"][:40] in out
    assert "TIME" in out and "EVIDENCE" in out
    (shown,) = await vigil.json(VIEWER_TOKEN, "incidents", "show", incident_id)
    assert shown["incident_id"] == incident_id and "reconnaissance" in shown["phases"]

    # Breaches of the scanner, table and JSON; one shown with its evidence.
    breaches = await vigil.json(VIEWER_TOKEN, "breaches", "list", "--limit", "500")
    by_id = {b["breach_id"]: b for b in breaches}
    scanner_device, model = by_id[breach_id]["device"]["device_id"], by_id[breach_id]["model"]
    mine_only = await vigil.json(
        VIEWER_TOKEN, "breaches", "list", "--device", scanner_device, "--limit", "500"
    )
    assert mine_only and {b["device"]["ip"] for b in mine_only} == {SCANNER}
    assert {b["acknowledged"] for b in mine_only} == {False}
    code, out, err = await vigil(VIEWER_TOKEN, "breaches", "list", "--device", scanner_device)
    assert code == Exit.OK, err
    assert out.splitlines()[0].split()[:3] == ["BREACH", "TIME", "SEVERITY"]
    assert all(ISO_UTC.search(line) for line in out.splitlines()[1:])
    assert all(len(line) < 320 for line in out.splitlines())  # wide fields are cut
    code, out, err = await vigil(VIEWER_TOKEN, "breaches", "show", breach_id)
    assert code == Exit.OK and "FEATURE" in out and model in out, err
    code, _, err = await vigil(VIEWER_TOKEN, "breaches", "show", "no-such-breach")
    assert code == Exit.NOT_FOUND and "no-such-breach" in _one_line(err)

    # Devices: the scanner listed, shown with what the master learned of it.
    devices = await vigil.json(VIEWER_TOKEN, "devices", "list", "--limit", "500")
    assert SCANNER in {d["ip"] for d in devices}
    code, out, err = await vigil(VIEWER_TOKEN, "devices", "list")
    assert code == Exit.OK and out.splitlines()[0].split()[:3] == ["DEVICE", "IP", "MAC"], err
    code, out, err = await vigil(VIEWER_TOKEN, "devices", "show", scanner_device)
    assert code == Exit.OK and "distinct_internal_destinations" in out and "USUAL PEER" in out, err

    # Actions: the proposal, in both forms.
    code, out, err = await vigil(VIEWER_TOKEN, "actions", "list")
    assert code == Exit.OK, err
    (row,) = [line for line in out.splitlines() if line.startswith(action_id)]
    assert row.split()[1] == "proposed" and SCANNER in row
    listed = await vigil.json(VIEWER_TOKEN, "actions", "list")
    assert {a["action"]["action_id"]: a["state"] for a in listed}[action_id] == "proposed"

    # Refusals: a read-only token asking for a change, an unknown token, a missing incident, no reason.
    code, _, err = await vigil(VIEWER_TOKEN, "actions", "confirm", action_id, "--reason", "looks bad")
    assert code == Exit.REFUSED and "operator role" in _one_line(err)
    code, _, err = await vigil("not-a-known-token-at-all", "incidents", "list")
    assert code == Exit.REFUSED and "refused the token" in _one_line(err)
    code, _, err = await vigil(VIEWER_TOKEN, "incidents", "show", "inc-does-not-exist")
    assert code == Exit.NOT_FOUND and "inc-does-not-exist" in _one_line(err)
    code, _, err = await vigil(OPERATOR_TOKEN, "actions", "confirm", action_id)
    assert code == Exit.USAGE and "--reason" in err
    code, _, err = await vigil(None, "incidents", "list")
    assert code == Exit.USAGE and "VIGIL_TOKEN" in _one_line(err)

    # The operator confirms: the dry-run responder enforces it; a second confirm conflicts.
    code, out, err = await vigil(
        OPERATOR_TOKEN, "actions", "confirm", action_id, "--reason", "scanner, contain"
    )
    assert code == Exit.OK and f"action {action_id} is applied" in out, err
    active = await _active(stack.responder, action_id)
    assert active.action.target_ip == SCANNER
    (seen,) = await vigil.json(VIEWER_TOKEN, "actions", "show", action_id)
    assert seen["state"] == "applied" and seen["responder"]["state"] == "ACTION_STATE_ACTIVE"
    code, _, err = await vigil(OPERATOR_TOKEN, "actions", "confirm", action_id, "--reason", "again")
    assert code == Exit.CONFLICT and _one_line(err)

    # Extend by 30 minutes (a successor), then revoke it: the responder lifts it.
    (extended,) = await vigil.json(
        OPERATOR_TOKEN, "actions", "extend", action_id, "--by", "30m", "--reason", "still scanning"
    )
    successor = extended["action"]["action_id"]
    assert successor != action_id
    await _active(stack.responder, successor)
    code, out, err = await vigil(OPERATOR_TOKEN, "actions", "revoke", successor, "--reason", "cleaned up")
    assert code == Exit.OK and f"action {successor} is revoked" in out and "responder: revoked" in out, err
    states = {s.action.action_id: s.state for s in await stack.responder.list(include_inactive=True)}
    assert states[successor] == responder_pb2.ACTION_STATE_REVOKED
    code, out, err = await vigil(VIEWER_TOKEN, "actions", "list", "--all")
    assert code == Exit.OK and any(
        line.startswith(successor) and " revoked " in line for line in out.splitlines()
    )

    # Acknowledge the incident; suppress the model for the scanner: its breaches are hidden.
    (acked,) = await vigil.json(OPERATOR_TOKEN, "incidents", "acknowledge", incident_id, "--reason", "on it")
    assert acked["status"] == "INCIDENT_STATUS_ACKNOWLEDGED"
    (suppressed,) = await vigil.json(
        OPERATOR_TOKEN,
        "breaches",
        "suppress",
        "--model",
        model,
        "--device",
        scanner_device,
        "--for",
        "1h",
        "--reason",
        "pen test",
    )
    assert suppressed["suppression_id"].startswith("sup-")
    after = await vigil.json(VIEWER_TOKEN, "breaches", "list", "--device", scanner_device, "--limit", "500")
    assert model not in {b["model"] for b in after}
    everything = await vigil.json(
        VIEWER_TOKEN, "breaches", "list", "--device", scanner_device, "--include-suppressed", "--limit", "500"
    )
    assert breach_id in {b["breach_id"] for b in everything}


async def test_mutual_tls_to_the_console(
    pki: Pki,
    redis_server: embedded.EmbeddedRedis,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = build(
        {
            "redis": {"url": redis_server.url},
            "console": {
                "grpc_listen": "127.0.0.1:0",
                "http_listen": "127.0.0.1:0",
                "tls": {
                    "ca_file": str(pki.ca),
                    "cert_file": str(pki.server_cert),
                    "key_file": str(pki.server_key),
                },
                "tokens": [{"name": "alice", "role": "operator", "token": OPERATOR_TOKEN}],
            },
        },
        environ={},
    )
    console, stop = ConsoleService(cfg), asyncio.Event()
    task = asyncio.create_task(console.run(stop))
    try:
        await asyncio.wait_for(console.started.wait(), 10)
        vigil = Vigil(f"127.0.0.1:{console.grpc_port}", capsys, monkeypatch)
        client_tls = [
            "--set",
            f"console.client.tls.ca_file={pki.ca}",
            "--set",
            f"console.client.tls.cert_file={pki.client_cert}",
            "--set",
            f"console.client.tls.key_file={pki.client_key}",
        ]
        code, out, err = await vigil(OPERATOR_TOKEN, "incidents", "list", *client_tls)
        assert code == Exit.OK, err
        assert out.split() == [c.title for c in operator.INCIDENT_COLUMNS]  # the header of an empty list
        # Without a client certificate the console's TLS port refuses the connection.
        code, _, err = await vigil(OPERATOR_TOKEN, "incidents", "list")
        assert code == Exit.DEPENDENCY and "console unreachable" in _one_line(err)
        # A certificate from a CA the console does not trust is refused the same way.
        rogue = [*client_tls[:2], "--set", f"console.client.tls.cert_file={pki.rogue_client_cert}"]
        rogue += ["--set", f"console.client.tls.key_file={pki.rogue_client_key}"]
        code, _, err = await vigil(OPERATOR_TOKEN, "incidents", "list", *rogue)
        assert code == Exit.DEPENDENCY and _one_line(err)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_console_ends_in_one_line_and_code_5() -> None:
    # A real process: the token in its environment (never on the command line), nothing listening.
    port = _closed_port()
    env = {**os.environ, "VIGIL_TOKEN": OPERATOR_TOKEN}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil.cli",
            "incidents",
            "list",
            "--set",
            f"console.client.address=127.0.0.1:{port}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == Exit.DEPENDENCY, done.stderr
    assert done.stderr.startswith(f"vigil: console unreachable at 127.0.0.1:{port}")
    assert done.stderr.count("\n") == 1 and done.stdout == ""


def test_the_token_file_must_be_private_and_the_variable_wins(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(OPERATOR_TOKEN + "\n")
    token_file.chmod(0o644)
    cfg = build({"console": {"client": {"token_file": str(token_file)}}}, environ={})
    with pytest.raises(operator.CommandFailed) as shared:
        operator.read_token(cfg, {})
    assert shared.value.code == Exit.ENVIRONMENT and "chmod 600" in str(shared.value)
    token_file.chmod(0o600)
    assert operator.read_token(cfg, {}) == OPERATOR_TOKEN
    assert operator.read_token(cfg, {"VIGIL_TOKEN": VIEWER_TOKEN}) == VIEWER_TOKEN
    # VIGIL_TOKEN is not a configuration key, so it never reaches (or breaks) the configuration.
    assert build({}, environ={"VIGIL_TOKEN": VIEWER_TOKEN}).console.client.token_file is None


def test_console_address_follows_grpc_listen() -> None:
    assert operator.console_address(build({"console": {"grpc_listen": "0.0.0.0:6000"}}, environ={})) == (
        "127.0.0.1:6000"
    )
    assert (
        operator.console_address(build({"console": {"client": {"address": "10.0.0.5:50052"}}}, environ={}))
        == "10.0.0.5:50052"
    )


def test_tables_cut_wide_fields_and_neutralise_control_characters() -> None:
    columns = (operator.Column("NAME", 8), operator.Column("NOTE", 5))
    lines = operator.table(columns, [["a\x1b[31mb", "abcdefgh"], ["x", "y"]])
    assert lines == ["NAME     NOTE", "a?[31mb  abcd…", "x        y"]
    assert operator.parse_duration("90m") == 5400 and operator.parse_duration("3600") == 3600
    with pytest.raises(ValueError):
        operator.parse_duration("0s")


def test_the_readmes_client_example_is_valid(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("# vigil.yaml on the operator's machine", 1)[1].split("```", 1)[0]
    tree = yaml.safe_load(block)
    # The example's files do not exist here; point them at real ones to validate everything else.
    for section, key in (
        ("client", "token_file"),
        ("tls", "ca_file"),
        ("tls", "cert_file"),
        ("tls", "key_file"),
    ):
        node = tree["console"]["client"] if section == "client" else tree["console"]["client"]["tls"]
        (tmp_path / key).write_text("x")
        node[key] = str(tmp_path / key)
    client = build(tree, environ={}).console.client
    assert client.address == "10.0.0.2:50052" and client.tls.active and client.timeout_s == 10
