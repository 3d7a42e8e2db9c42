"""What an operator sees of one attack, end to end: the rogue Pi's scan (tests/data/lab-scan.pcap) replayed
through `vigil up` in confirm mode; its incident read through the console's HTTP API, the `vigil` command
line and a real headless browser; the proposed action confirmed in the browser and enforced by the
responder's dry-run backend; the breach delivered live to an OCSF file, a real rsyslog and a signed webhook.

Screenshots are kept under var/test-artifacts/operator/."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.allinone import LAB_CAPTURE, kill_group
from tests.conftest import REPO
from tests.master.api.stack import http
from tests.master.exports.receivers import (
    OPENSSL,
    RSYSLOGD,
    HttpReceiver,
    Rsyslog,
    http_receiver,
    start_rsyslog,
    stop_rsyslog,
)

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = os.environ.get("VIGIL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() or RSYSLOGD is None or OPENSSL is None,
        reason="chromium, rsyslogd and openssl come with scripts/install.sh",
    ),
]
ARTIFACTS = REPO / "var" / "test-artifacts" / "operator"
SCANNER = "10.231.1.12"
OPERATOR = "op-" + "acceptance-operator-token"
VIEWER = "view-" + "acceptance-viewer-token"
WEBHOOK_SECRET = "hook-" + "acceptance-secret"
CONSOLE_LINE = re.compile(r"console grpc (?P<grpc>\S+)\s+http (?P<http>http://\S+)")


class Up:
    """`vigil up` running in the background, its console read line by line as it goes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := pattern.search(line):
                    return found
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("vigil up never said " + pattern.pattern + ":\n" + "\n".join(self.lines[-40:]))


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    (tmp_path / "rsyslog").mkdir()
    server = start_rsyslog(tmp_path / "rsyslog")
    try:
        yield server
    finally:
        stop_rsyslog(server)


@pytest.fixture
def webhook() -> Iterator[HttpReceiver]:
    yield from http_receiver()


@pytest.fixture
def up(short_tmp: Path, rsyslog: Rsyslog, webhook: HttpReceiver) -> Iterator[tuple[Up, Path]]:
    findings = short_tmp / "findings.ocsf.jsonl"
    cfg = {
        "master": {
            "response_mode": "confirm",
            "exports": {
                "ocsf": {"path": str(findings)},
                "syslog": {"address": f"127.0.0.1:{rsyslog.ports['tcp']}", "transport": "tcp"},
                "webhook": {"url": webhook.url + "/vigil", "secret": WEBHOOK_SECRET},
            },
        },
        "console": {
            "tokens": [
                {"name": "alice", "role": "operator", "token": OPERATOR},
                {"name": "viewer", "role": "read", "token": VIEWER},
            ]
        },
    }
    config_file = short_tmp / "vigil.yaml"
    config_file.write_text(json.dumps(cfg))  # JSON is YAML
    process = subprocess.Popen(
        [sys.executable, "-m", "vigil.cli", "--config", str(config_file), "up", "--pcap", str(LAB_CAPTURE),
         "--data-dir", str(short_tmp / "up")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, start_new_session=True,
    )  # fmt: skip
    try:
        yield Up(process), findings
    finally:
        kill_group(process)


def _cli(grpc: str, *args: str) -> list[dict[str, Any]]:
    """`vigil ARGS...` as an operator runs it (a read-only token in VIGIL_TOKEN), its JSON lines."""
    done = subprocess.run(
        [sys.executable, "-m", "vigil.cli", *args, "--set", f"console.client.address={grpc}"],
        capture_output=True, text=True, timeout=60, cwd=REPO, env={**os.environ, "VIGIL_TOKEN": VIEWER},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def _poll(what: str, probe: Any, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if found := probe():
                return found
        except OSError:  # the console says where it listens a moment before it does
            pass
        time.sleep(0.5)
    raise AssertionError(f"never saw {what}")


def _scanner_incident(base: str) -> dict[str, Any] | None:
    status, answer = http(base, "GET", "/v1/incidents", VIEWER)
    assert status == 200, answer
    for incident in answer.get("incidents", []):
        if any(d.get("ip") == SCANNER for d in incident.get("devices", [])):
            return dict(incident)
    return None


def _proposed(base: str) -> dict[str, Any] | None:
    status, answer = http(base, "GET", "/v1/actions", VIEWER)
    assert status == 200, answer
    for record in answer.get("records", []):
        if record.get("state") == "proposed" and record["action"].get("target_ip") == SCANNER:
            return dict(record)
    return None


async def test_one_attack_at_every_operator_surface(
    up: tuple[Up, Path], rsyslog: Rsyslog, webhook: HttpReceiver
) -> None:
    running, findings = up
    listening = running.wait_for(CONSOLE_LINE, 90)
    base, grpc = listening["http"], listening["grpc"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\noperator screenshots: {ARTIFACTS}")

    # The API: the scan made an incident and the policy proposed an action (confirm mode).
    incident = _poll("the scanner's incident", lambda: _scanner_incident(base))
    assert "reconnaissance" in incident["phases"]
    proposed = _poll("a proposed action for the scanner", lambda: _proposed(base))
    action_id = proposed["action"]["action_id"]

    # The browser: sign in, open the incident, confirm the action with a reason.
    async with playwright_api.async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
            page.set_default_timeout(20_000)
            await page.goto(base + "/")
            await page.fill("#token", OPERATOR)
            await page.click("#login button[type=submit]")
            await page.wait_for_selector("#nav:not([hidden])")
            link = page.locator(f"a[href='#/incident/{incident['incident_id']}']")
            await link.wait_for()
            await page.screenshot(path=str(ARTIFACTS / "incidents.png"), full_page=True)
            await link.click()
            await page.wait_for_selector("#summary")
            assert SCANNER in await page.inner_text("#summary")
            row = page.locator(f"tr[data-action-id='{action_id}']")
            assert (await row.locator("td.state").inner_text()) == "proposed"
            await page.screenshot(path=str(ARTIFACTS / "incident-proposed.png"), full_page=True)
            await row.locator("button[data-change=Confirm]").click()
            await row.locator("input[name=reason]").fill("the rogue Pi: contain it")
            await row.locator("form.reason button[type=submit]").click()
            await page.wait_for_selector("p.notice")
            row = page.locator(f"tr[data-action-id='{action_id}']")
            assert (await row.locator("td.state").inner_text()) == "applied"
            # What the responder itself reports, through the API, on the page.
            for _ in range(100):
                if (await row.locator("td.responder").inner_text()) == "active (dryrun)":
                    break
                await page.reload()
                await page.wait_for_selector("#summary")
                row = page.locator(f"tr[data-action-id='{action_id}']")
            assert (await row.locator("td.responder").inner_text()) == "active (dryrun)"
            await page.screenshot(path=str(ARTIFACTS / "incident-confirmed.png"), full_page=True)
        finally:
            await browser.close()
    _, audit = http(base, "GET", "/v1/audit", VIEWER)
    assert (audit["entries"][0]["operation"], audit["entries"][0]["actor"]) == ("ConfirmAction", "alice")

    # The command line, over the console's gRPC port, with a read-only token from the environment.
    incidents = _cli(grpc, "incidents", "list", "--json")
    assert incident["incident_id"] in {row["incident_id"] for row in incidents}
    shown = _cli(grpc, "incidents", "show", incident["incident_id"], "--json")[0]
    assert SCANNER in shown["summary"]
    actions = {row["action"]["action_id"]: row for row in _cli(grpc, "actions", "list", "--json")}
    assert actions[action_id]["state"] == "applied"

    # The exports: the scanner's breaches reached the OCSF file, rsyslog and the signed webhook.
    def ocsf_rows() -> list[dict[str, Any]]:
        if not findings.exists():
            return []
        rows = [json.loads(line) for line in findings.read_text().splitlines() if line.strip()]
        return [r for r in rows if SCANNER in json.dumps(r)]

    assert _poll("an OCSF finding for the scanner", ocsf_rows, 30)[0]["class_uid"] == 2004
    assert _poll("a syslog message for the scanner", lambda: [
        r for r in rsyslog.received("tcp") if SCANNER in json.dumps(r)
    ], 30)  # fmt: skip
    hooks = _poll(
        "a webhook for the scanner", lambda: [r for r in webhook.requests if SCANNER.encode() in r.body], 30
    )
    assert hooks[0].headers.get("X-Vigil-Signature", "").startswith("v1=")
