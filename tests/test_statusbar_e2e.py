"""The user's view end to end: JupyterLab in headless Chromium against a real JupyterHub.

Log in, pick a one-minute profile on the spawn page, see the status bar count down, get the
walltime warning, see the server stop with the notice that files are kept. Screenshots of each
step are kept in ``test-artifacts/statusbar/``. Without a browser this test fails in CI.
"""

from __future__ import annotations

import re
import time

import pytest

from harness.hub import Hub
from harness.tools import REPO, require_tool

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts" / "statusbar"
STATUS = re.compile(r"Walltime: \d+ / \d+ (s|min)")


def test_status_bar_counts_down_warns_and_reports_the_stop(hub: Hub) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    user = "e2e-ada"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            page.goto(f"{hub.public_url}/hub/login")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", "anything")
            page.click("input[type=submit], button[type=submit]")
            page.goto(f"{hub.public_url}/hub/spawn")
            form = page.locator("#spawn_form")
            expect(form).to_contain_text("One minute")
            expect(form).to_contain_text("1 min")  # the limit, from the profile itself
            page.screenshot(path=ARTIFACTS / "1-spawn-page.png")
            page.check("input[value=minute]")
            started = time.monotonic()
            page.click("#spawn_form [type=submit]")

            item = page.locator(".jp-SidecarsStatus")
            expect(item).to_have_text(STATUS, timeout=90_000)
            text = item.inner_text()
            assert "Mem: " in text and " / 3072 MB" in text, text  # the profile's 3G limit
            assert "Walltime: " in text and " / 60 s" in text, text
            page.screenshot(path=ARTIFACTS / "2-status-bar.png")

            warning = page.get_by_text(re.compile(r"Your server stops in \d+ seconds"))
            expect(warning.first).to_be_visible(timeout=75_000)
            assert item.get_attribute("data-level") in ("warning", "critical")
            page.screenshot(path=ARTIFACTS / "3-warning.png")

            stopped = page.get_by_text(re.compile(r"being stopped.*files are kept"))
            expect(stopped.first).to_be_visible(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "4-stopped.png")
            assert time.monotonic() - started < 120
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure.png")
            raise
        finally:
            browser.close()
    # "Being stopped" is said during the last look for late activity (WALLTIME_ACTIVITY_LAG):
    # activity reported in those seconds (the page's last requests) puts the stop off by one
    # more idle period, as designed — so allow the limit (40 s) once more.
    try:
        hub.wait_stopped(user, timeout=90)
    except AssertionError:
        lines = [f"{r['time']} {r['message']}" for r in hub.log_records(user=user)]
        raise AssertionError("not stopped; the sidecar said:\n" + "\n".join(lines)) from None
    assert all((ARTIFACTS / f"{n}.png").stat().st_size > 10_000
               for n in ("1-spawn-page", "2-status-bar", "3-warning", "4-stopped"))


HIDE = """() => {
  // What a background tab is to JupyterLab: its polls stand by, so the server goes idle.
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""
SHOW = """() => {
  delete document.visibilityState;
  delete document.hidden;
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_idle_warning_in_the_browser_activity_resets_it_then_the_idle_stop(hub: Hub) -> None:
    """A tab in the background: the status bar warns "Idle: stops in …" with a notice; coming
    back resets the countdown; left alone, the server stops and the notice says why."""
    chromium = require_tool("chromium")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    user = "e2e-idle"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            page.goto(f"{hub.public_url}/hub/login")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", "anything")
            page.click("input[type=submit], button[type=submit]")
            page.goto(f"{hub.public_url}/hub/spawn")
            expect(page.locator("#spawn_form")).to_contain_text("stops after 40 s idle")
            page.check("input[value=idle]")
            page.click("#spawn_form [type=submit]")
            item = page.locator(".jp-SidecarsStatus")
            expect(item).to_have_text(re.compile(r"Mem: "), timeout=90_000)
            assert "Walltime" not in item.inner_text()  # idle only: no walltime shown

            page.evaluate(HIDE)
            expect(item).to_have_text(re.compile(r"Idle: stops in \d+ s"), timeout=60_000)
            notice = page.get_by_text(re.compile(r"has been idle and stops in \d+ seconds"))
            expect(notice.first).to_be_visible(timeout=15_000)
            page.screenshot(path=ARTIFACTS / "5-idle-warning.png")

            page.evaluate(SHOW)  # the user is back: JupyterLab polls again
            expect(item).not_to_have_text(re.compile(r"Idle:"), timeout=30_000)
            assert hub.server_model(user) is not None
            page.screenshot(path=ARTIFACTS / "6-idle-reset.png")

            page.evaluate(HIDE)
            stopped = page.get_by_text(re.compile(r"being stopped: it was idle for too long"))
            expect(stopped.first).to_be_visible(timeout=90_000)
            page.screenshot(path=ARTIFACTS / "7-idle-stopped.png")
        except Exception:
            page.screenshot(path=ARTIFACTS / "failure-idle.png")
            raise
        finally:
            browser.close()
    # "Being stopped" is said during the last look for late activity (WALLTIME_ACTIVITY_LAG):
    # activity reported in those seconds (the page's last requests) puts the stop off by one
    # more idle period, as designed — so allow the limit (40 s) once more.
    try:
        hub.wait_stopped(user, timeout=90)
    except AssertionError:
        lines = [f"{r['time']} {r['message']}" for r in hub.log_records(user=user)]
        raise AssertionError("not stopped; the sidecar said:\n" + "\n".join(lines)) from None
