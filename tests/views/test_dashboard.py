"""The web dashboard in a real headless browser (Debian's chromium driven by Playwright):
deploy an app and see it, see its traffic and usage, kill a host and see the page change. Every wait
is on a condition in the page; nothing sleeps."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import pytest

from tests.harness import HostProcess
from tests.wadm_e2e.conftest import Controllers
from tests.wadm_e2e.helpers import component_app
from trellis.interfaces.client import LatticeClient
from trellis.interfaces.wadm_client import WadmClient

from .conftest import Following

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]
#: page conditions may take this long on a loaded 2-core machine (ms)
WAIT_MS = 30_000


@pytest.fixture
async def controllers(nats_server, lattice):
    factory = Controllers(nats_server.url, lattice)
    yield factory
    await factory.close()


@pytest.fixture
async def browser():
    playwright = pytest.importorskip("playwright.async_api")
    async with playwright.async_playwright() as p:
        b = await p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        yield b
        await b.close()


@pytest.fixture
async def dashboard(nats_server, lattice):
    """`trellis ui --port 0` as a real process; yields its address."""
    ui = Following(nats_server.url, lattice, "ui", "--port", "0")
    try:
        line = await asyncio.to_thread(ui.next_line, 30)
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert found, line
        yield found.group(0)
    finally:
        ui.stop()


async def test_dashboard_shows_an_app_its_traffic_and_a_lost_host(nats_server, lattice, hosts, controllers, dashboard,
                                                                  browser, adder, tmp_path):
    a = await hosts.start(labels={"zone": "a"})
    b = HostProcess(nats_server.url, lattice, "--heartbeat-interval", "0.5", "--label", "zone=b",
                    log=tmp_path / "b.log")
    try:
        await asyncio.to_thread(b.wait_started, 60)  # a host process starts slowly on a busy machine
        await controllers.start()
        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(dashboard)

        # both hosts, with their labels
        await page.wait_for_selector(f'[data-host-name="{a.friendly_name}"][data-host-state="live"]', timeout=WAIT_MS)
        host_b = page.locator(f'[data-host-name="{b.name}"]')
        await host_b.wait_for(timeout=WAIT_MS)
        assert "zone=b" in await host_b.inner_text()

        # deploy an app: it shows up, then turns deployed, with its component placed on both hosts
        shutil.copy(adder, tmp_path / "adder.wasm")
        async with LatticeClient(nats_server.url, lattice) as c:
            wadm = WadmClient(c)
            manifest = component_app("calc", "./adder.wasm", instances=4)
            await wadm.put(manifest, base_dir=str(tmp_path))
            await wadm.deploy("calc")
            app_row = page.locator('[data-app="calc"][data-status="deployed"]')
            await app_row.wait_for(timeout=WAIT_MS)
            await page.wait_for_function(
                """([a, b]) => { const t = document.querySelector('[data-app="calc"]').innerText;
                                 return t.includes(a) && t.includes(b); }""",
                arg=[a.friendly_name, b.name], timeout=WAIT_MS)
            assert "calc-adder" in await page.locator(f'[data-host-name="{a.friendly_name}"]').inner_text()

            # live traffic: calls made now show up as the component's calls
            async def call_until_counted() -> None:
                while True:
                    assert await c.call("calc-adder", "add", 2, 40) == 42
                    await asyncio.sleep(0.05)  # pacing the calls, not synchronisation: the page is awaited below

            caller = asyncio.create_task(call_until_counted())
            try:
                await page.wait_for_function(
                    """() => { const row = document.querySelector('[data-traffic="calc-adder"]');
                               return row && Number(row.lastElementChild.innerText) > 0; }""", timeout=WAIT_MS)
            finally:
                caller.cancel()
                await asyncio.gather(caller, return_exceptions=True)
            # and what the app used: its calls, CPU, energy and carbon (the hosts' usage, as `app usage`)
            await page.wait_for_function(
                """() => { const row = document.querySelector('[data-usage="calc"]');
                           return row && Number(row.children[1].innerText) > 0; }""", timeout=WAIT_MS)

        # kill host b without a word: the page marks it lost and says so in the events
        b.kill()
        await page.wait_for_selector(f'[data-host-name="{b.name}"][data-host-state="lost"]', timeout=WAIT_MS)
        lost = page.locator('[data-event-type="host_lost"]')
        await lost.first.wait_for(timeout=WAIT_MS)
        assert b.name in await lost.first.inner_text()
        # and wadm moves the app's instances to host a: the page shows them all there
        await page.wait_for_function(
            """(a) => { const t = document.querySelector('[data-host-name="' + a + '"]').innerText;
                        return /calc-adder ×4/.test(t); }""", arg=a.friendly_name, timeout=WAIT_MS)
        assert errors == []
    finally:
        b.kill()
