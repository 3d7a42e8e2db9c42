"""The web console in a real headless browser (Debian's chromium driven by Playwright) against the real
stack: an operator signs in, opens the incident the master made of a scan, confirms its proposed action with
a reason and sees it active, as the responder's dry-run backend reports it; a read-only token's attempt is
refused with the API's 403 shown; a hostname carrying markup renders as text. Screenshots are kept under
var/test-artifacts/web/."""

from __future__ import annotations

import ipaddress
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from master.catalog import catalog_rows
from tests.master.api.stack import (
    OPERATOR_TOKEN,
    SCANNER,
    VIEWER_TOKEN,
    Stack,
    active,
    ahttp,
    running_stack,
)
from tests.master.traffic import T0
from vigil import embedded
from vigil.flow.v1 import dhcp_pb2
from vigil.responder.v1 import responder_pb2
from vigil.sensor.v1 import sensor_pb2

playwright_api = pytest.importorskip("playwright.async_api")
CHROMIUM = os.environ.get("VIGIL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no chromium at {CHROMIUM} (scripts/install.sh installs Debian's chromium as root)",
    ),
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "var" / "test-artifacts" / "web"
# What a hostile DHCP client may call itself: markup and a script, which must reach the page as text.
HOSTILE_NAME = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def dhcp_naming(ip: str, name: str) -> sensor_pb2.Record:
    record = dhcp_pb2.DhcpRecord(
        mac=bytes.fromhex("02aabbccdd04"),
        assigned_addr=ipaddress.ip_address(ip).packed,
        host_name=name,
        msg_types=["REQUEST", "ACK"],
    )
    record.time.FromSeconds(int(T0))
    return sensor_pb2.Record(dhcp=record)


@pytest.fixture
async def stack(
    nats_server: embedded.EmbeddedNats, redis_server: embedded.EmbeddedRedis
) -> AsyncIterator[Stack]:
    async with running_stack(nats_server.url, redis_server.url, [dhcp_naming(SCANNER, HOSTILE_NAME)]) as s:
        yield s


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nweb console screenshots: {ARTIFACTS}")
    return ARTIFACTS


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as driver:
        launched = await driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


async def sign_in(browser: Any, base: str, token: str) -> Any:
    page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    page.set_default_timeout(15_000)
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.seen_urls = seen
    answer = await page.goto(base + "/")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    await page.fill("#token", token)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#nav:not([hidden])")
    return page


async def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


async def test_web_console(stack: Stack, browser: Any, artifacts: Path) -> None:
    base, action_id = stack.http, stack.proposed.action.action_id
    status, incidents = await ahttp(base, "GET", "/v1/incidents", VIEWER_TOKEN)
    assert status == 200
    incident = next(i for i in incidents["incidents"] if stack.proposed.action.breach_id in i["breach_ids"])
    incident_id = incident["incident_id"]
    device_id = next(d["device_id"] for d in incident["devices"] if d["ip"] == SCANNER)
    # The hostile name really reached the API's answers: the page below has to cope with it.
    status, device = await ahttp(base, "GET", f"/v1/devices/{device_id}", VIEWER_TOKEN)
    assert device["device"]["hostname"] == HOSTILE_NAME

    page = await sign_in(browser, base, OPERATOR_TOKEN)
    link = page.locator(f"a[href='#/incident/{incident_id}']")
    await link.wait_for()
    await shot(page, "incidents")

    # One incident: summary, ATT&CK, phases, devices, timeline, and its proposed action.
    await link.click()
    await page.wait_for_selector("#summary")
    text = await page.inner_text("#view")
    assert "reconnaissance" in text and "Timeline" in text and "ATT&CK" in text
    row = page.locator(f"tr[data-action-id='{action_id}']")
    assert (await row.locator("td.state").inner_text()) == "proposed"
    assert HOSTILE_NAME in text
    assert await page.locator("#view img, #view script").count() == 0
    assert await page.evaluate("window.__xss") is None
    await shot(page, "incident-proposed")

    # Confirm, with a reason: applied here, active on the responder's dry-run backend.
    await row.locator("button[data-change=Confirm]").click()
    await row.locator("input[name=reason]").fill("scanner, contain (from the web console)")
    await row.locator("form.reason button[type=submit]").click()
    await page.wait_for_selector("p.notice")
    row = page.locator(f"tr[data-action-id='{action_id}']")
    assert (await row.locator("td.state").inner_text()) == "applied"
    enforced = await active(stack.responder, action_id)
    assert enforced.action.target_ip == SCANNER and enforced.backend == "dryrun"
    assert (await row.locator("td.responder").inner_text()) == "active (dryrun)"
    await shot(page, "incident-confirmed")
    status, audit = await ahttp(base, "GET", "/v1/audit", VIEWER_TOKEN)
    assert (audit["entries"][0]["operation"], audit["entries"][0]["actor"], audit["entries"][0]["via"]) == (
        "ConfirmAction",
        "alice",
        "http",
    )
    assert audit["entries"][0]["reason"] == "scanner, contain (from the web console)"

    # The device's pattern of life: three charts, the hostile name as text.
    await page.click(f"a[href='#/device/{device_id}']")
    await page.wait_for_selector("svg.chart")
    assert await page.locator("svg.chart").count() == 3
    assert await page.locator("svg.chart rect.bar").count() >= 24
    assert (await page.inner_text("#hostname")) == HOSTILE_NAME
    assert await page.locator("#view img, #view script").count() == 0
    await shot(page, "device")

    # Breaches filtered by model, the actions, the catalog.
    await page.click("nav a[href='#/breaches']")
    await page.wait_for_selector("#breach-filters")
    status, listed = await ahttp(base, "GET", f"/v1/breaches?device_id={device_id}", VIEWER_TOKEN)
    model = listed["breaches"][0]["model"]
    await page.select_option("select[name=model]", model)
    await page.select_option("select[name=min_severity]", "low")
    await page.click("#breach-filters button[type=submit]")
    await page.wait_for_function("location.hash.includes('model=')")
    await page.wait_for_selector("#breach-filters + table tbody tr td.wrap")
    models_shown = await page.locator("#breach-filters + table tbody tr td:nth-child(3)").all_inner_texts()
    assert models_shown and set(models_shown) == {model}
    await shot(page, "breaches-filtered")
    await page.click("nav a[href='#/actions']")
    await page.wait_for_selector(f"tr[data-action-id='{action_id}'] td.state-applied")
    await shot(page, "actions")
    await page.click("nav a[href='#/models']")
    await page.wait_for_selector("h1:text('Model catalog')")
    assert await page.locator("#view tbody tr").count() == len(catalog_rows())
    await shot(page, "models")
    assert not [u for u in page.seen_urls if OPERATOR_TOKEN in u]

    # A read-only token: the API's refusal is shown, and the block stays in force.
    viewer = await sign_in(browser, base, VIEWER_TOKEN)
    await viewer.goto(f"{base}/#/incident/{incident_id}")
    row = viewer.locator(f"tr[data-action-id='{action_id}']")
    await row.locator("button[data-change=Revoke]").click()
    await row.locator("input[name=reason]").fill("not mine to lift")
    await row.locator("form.reason button[type=submit]").click()
    await viewer.wait_for_selector("#error:not([hidden])")
    assert "403" in await viewer.inner_text("#error")
    assert (await row.locator("td.state").inner_text()) == "applied"
    await shot(viewer, "viewer-refused")
    states = {s.action.action_id: s.state for s in await stack.responder.list()}
    assert states[action_id] == responder_pb2.ACTION_STATE_ACTIVE
