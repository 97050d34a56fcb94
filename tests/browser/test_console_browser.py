"""The console in a real browser (headless Chromium), against a real broker and a real hub.

An admin logs in, finds a melding the hub dead-lettered, opens it, fixes the JSON-LD in the
editor, re-validates (first still wrong, then right) and replays it; the melding then reaches
its owner's topic. Screenshots of each step land in ``test-artifacts/browser/`` (git-ignored).

Chromium is Debian's package (``apt-get install chromium``), driven by Playwright's Python
package with ``executable_path``: Playwright's own browser download is not used.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from hub.console.auth import ADMIN, hash_password, user_line
from hub.demo import DemoFeed, FeedItem
from hub.demo_run import HubProcess, meldhub_executable
from hub.geo import MunicipalityIndex
from hub.kafka_io import collect, produce
from hub.kafka_local import free_port
from hub.logs import REDACTED
from hub.registry import Registry
from hub.topics import DEADLETTER, INBOUND, Header, authority_topic
from tests.oracle import expected_owner

pytestmark = pytest.mark.kafka

CHROMIUM = os.environ.get("MELDHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
PASSWORD = "correct horse battery"
# the registry tests/oracle.py is written for (no geographic layers), as in tests/integration
REGISTRY = Path(__file__).parents[1] / "data" / "registry-no-layers.yaml"
HUB_ENV = {"MELDHUB_REGISTRY": str(REGISTRY)}
T = TypeVar("T")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (make test does this)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def console(kafka_bootstrap: str, tmp_path: Path) -> Iterator[str]:
    users = tmp_path / "users"
    users.write_text(user_line("anna", ADMIN, hash_password(PASSWORD, iterations=10_000)) + "\n")
    port = free_port()
    proc = subprocess.Popen(
        [*meldhub_executable(), "dlq", "console", "--port", str(port), "--bootstrap-servers", kafka_bootstrap],
        env={**os.environ, **HUB_ENV, "MELDHUB_CONSOLE_USERS": str(users)},
        stdout=(tmp_path / "console.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("console did not start:\n" + (tmp_path / "console.log").read_text())
            time.sleep(0.2)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _sync(coro: Coroutine[Any, Any, T]) -> T:
    """Playwright's sync API runs an event loop in this thread: Kafka helpers run in another."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _broken_with_reporter(feed: DemoFeed) -> FeedItem:
    while True:
        item = feed.broken("shape-violation")
        if item.reporter:
            return item


def test_admin_fixes_and_replays_a_dead_letter_in_the_browser(
    kafka_bootstrap: str, console: str, browser: object, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    feed = DemoFeed(Registry.load(REGISTRY), MunicipalityIndex.load(), seed=time.time_ns())
    item = _broken_with_reporter(feed)
    with HubProcess(kafka_bootstrap, tmp_path / "hub.log", env=HUB_ENV):
        _sync(produce(kafka_bootstrap, INBOUND, [(item.key, item.value, item.headers)]))
        (letter,) = _sync(collect(kafka_bootstrap, [DEADLETTER], {item.melding_id}, timeout=60, settle=0.2))
        dl = f"{letter.partition}/{letter.offset}"

        page = browser.new_page(viewport={"width": 1400, "height": 1000})  # type: ignore[attr-defined]
        try:
            page.goto(console + "/")
            page.fill("#username", "anna")
            page.fill("#password", PASSWORD)
            page.click("#login")
            page.wait_for_selector("#nav-lijst")
            page.screenshot(path=str(ARTIFACTS / "1-overzicht.png"), full_page=True)

            page.click("#nav-lijst")
            page.fill("#f-melding-id", item.melding_id)
            page.click("#filter")
            page.wait_for_selector(f'a.open-dl[href="/deadletters/{dl}"]')
            page.screenshot(path=str(ARTIFACTS / "2-lijst.png"), full_page=True)
            page.click(f'a.open-dl[href="/deadletters/{dl}"]')
            page.wait_for_selector("#violations")
            violations = page.inner_text("#violations")
            assert "titel" in violations and "statusdatum" in violations
            content = page.content()
            for secret in item.reporter or ():
                assert secret not in content, "personal data on the page"
            page.screenshot(path=str(ARTIFACTS / "3-melding.png"), full_page=True)

            doc = json.loads(page.input_value("#document"))
            assert doc["melder"] == REDACTED
            doc["titel"] = "Zwerfvuil aan het fietspad"
            page.fill("#document", json.dumps(doc, ensure_ascii=False, indent=2))
            page.click("#revalidate")
            page.wait_for_selector("#check-failed")
            assert "statusdatum" in page.inner_text("#check-failed")
            page.screenshot(path=str(ARTIFACTS / "4-nog-ongeldig.png"), full_page=True)

            doc = json.loads(page.input_value("#document"))
            doc["heeftStatus"][0]["statusdatum"] = "2026-11-20T08:15:00+01:00"
            page.fill("#document", json.dumps(doc, ensure_ascii=False, indent=2))
            page.click("#revalidate")
            page.wait_for_selector("#check-ok")
            page.screenshot(path=str(ARTIFACTS / "5-geldig.png"), full_page=True)

            page.click("#replay-edited")
            page.wait_for_selector(".flash.ok")
            assert "Opnieuw aangeboden als nieuw bericht meldingen.inbound/" in page.inner_text(".flash.ok")
            assert "opnieuw aangeboden" in page.inner_text("#state")
            page.screenshot(path=str(ARTIFACTS / "6-opnieuw-aangeboden.png"), full_page=True)
        finally:
            page.close()

        slug = doc["type"][0].rsplit("/", 1)[-1]
        owner = authority_topic(expected_owner(slug, item.municipality_nis))
        routed = _sync(collect(kafka_bootstrap, [owner], {item.melding_id}, timeout=60, settle=0.5))
    assert len(routed) == 1, f"the fixed melding did not reach {owner} exactly once"
    body = json.loads(routed[0].value)
    assert body["titel"] == "Zwerfvuil aan het fietspad"
    assert body["melder"] == json.loads(item.value)["melder"], "the owner gets the reporter's data"
    assert routed[0].headers[Header.REPLAYED_FROM] == f"{DEADLETTER}/{dl}"
    assert routed[0].headers[Header.REPLAYED_BY] == "anna"
