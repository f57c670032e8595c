"""A researcher's path: browser login at the provider, the listing, an access key, then
rclone and cadaver with that key; revoking it locks them out. Headless Debian Chromium."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.gateway import Gateway, make_homes, remove, temp_root
from harness.oidc import OidcProvider
from harness.tools import REPO, require_tool

pytestmark = pytest.mark.slow
ARTIFACTS = REPO / "test-artifacts" / "gateway"


@pytest.fixture(scope="module")
def served() -> Iterator[Gateway]:
    root = make_homes(temp_root())
    provider = OidcProvider(root / "provider.log", token_max_age=300)
    provider.start()
    gateway = Gateway(provider, root)
    try:
        yield gateway.start()
    finally:
        gateway.stop()
        provider.stop()
        remove(root)


def rclone(key_id: str, secret: str, *args: str, url: str) -> subprocess.CompletedProcess[str]:
    binary = require_tool("rclone")
    obscured = subprocess.run([binary, "obscure", secret], capture_output=True, text=True,
                              check=True).stdout.strip()
    env = {**os.environ, "RCLONE_CONFIG": "/dev/null", "RCLONE_WEBDAV_URL": url,
           "RCLONE_WEBDAV_VENDOR": "other", "RCLONE_WEBDAV_USER": key_id,
           "RCLONE_WEBDAV_PASS": obscured}
    return subprocess.run([binary, "--low-level-retries", "1", "--retries", "1", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def cadaver(url: str, key_id: str, secret: str, script: str, home: Path) -> str:
    (home / ".netrc").write_text(f"machine 127.0.0.1 login {key_id} password {secret}\n")
    (home / ".netrc").chmod(0o600)
    result = subprocess.run([require_tool("cadaver"), url], input=script, capture_output=True,
                            text=True, timeout=60, cwd=home, env={**os.environ, "HOME": str(home)})
    return result.stdout + result.stderr


def test_login_key_rclone_cadaver_revoke(served: Gateway, tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        context = browser.new_context()
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
        page = context.new_page()
        try:
            page.goto(f"{served.url}/home/")  # not signed in: off to the provider
            page.fill("input[name=sub]", "alice")
            page.click("button[type=submit]:has-text('Authorize')")
            expect(page.locator("body")).to_contain_text("secret.txt")  # back at /home/
            assert page.url == f"{served.url}/home/"
            cookie = next(c for c in context.cookies() if c["name"] == "kubepie-session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
            page.screenshot(path=ARTIFACTS / "1-listing.png")

            page.goto(f"{served.url}/_kubepie/keys")
            expect(page.locator("body")).to_contain_text("Signed in as alice")
            page.fill("input[name=label]", "laptop rclone")
            page.select_option("select[name=days]", "30")
            page.click("button:has-text('Create')")
            key_id = page.locator("#key-id").inner_text()
            secret = page.locator("#key-secret").inner_text()
            page.screenshot(path=ARTIFACTS / "2-new-key.png")
            assert key_id.startswith("KP") and len(secret) >= 40
            page.click("button[data-copy=key-secret]")  # the page's one script
            expect(page.locator("button[data-copy=key-secret]")).to_have_text("Copied")
            assert page.evaluate("navigator.clipboard.readText()") == secret

            # The key works with rclone (Basic, sent up front) ...
            (tmp_path / "up.txt").write_text("from rclone\n")
            url = served.url + "/"
            copied = rclone(key_id, secret, "copyto", str(tmp_path / "up.txt"),
                            ":webdav:home/up.txt", url=url)
            assert copied.returncode == 0, copied.stderr
            listed = rclone(key_id, secret, "lsf", ":webdav:home/", url=url)
            assert "up.txt" in listed.stdout and "secret.txt" in listed.stdout
            assert (served.root / "home/alice/up.txt").read_text() == "from rclone\n"
            # ... and with cadaver (neon: Basic only after the 401 challenge).
            (tmp_path / "notes.txt").write_text("12 keV\n")
            output = cadaver(f"{served.url}/home/", key_id, secret,
                             "put notes.txt\nlock notes.txt\nunlock notes.txt\n"
                             "move notes.txt moved.txt\nls\nquit\n", tmp_path)
            assert "Uploading notes.txt" in output and "succeeded" in output, output
            assert "Moving `" in output and "moved.txt" in output, output
            assert (served.root / "home/alice/moved.txt").read_text() == "12 keV\n"

            # The secret is shown once: the list shows only the id.
            page.goto(f"{served.url}/_kubepie/keys")
            expect(page.locator("table")).to_contain_text(key_id)
            assert secret not in page.content()
            page.click(f"tr:has-text('{key_id}') button:has-text('Revoke')")
            expect(page.locator("body")).to_contain_text("None yet.")
            page.screenshot(path=ARTIFACTS / "3-revoked.png")
        finally:
            browser.close()

    refused = rclone(key_id, secret, "lsf", ":webdav:home/", url=url)
    assert refused.returncode != 0 and "401" in refused.stderr + refused.stdout
    assert httpx.get(f"{served.url}/home/", auth=(key_id, secret)).status_code == 401
    output = cadaver(f"{served.url}/home/", key_id, secret, "ls\nquit\n", tmp_path)
    assert "moved.txt" not in output


def test_key_forms_need_the_session_and_its_csrf_token(served: Gateway) -> None:
    anonymous = httpx.post(f"{served.url}/_kubepie/keys", data={"label": "x"})
    assert anonymous.status_code == 302 and "/_kubepie/login" in anonymous.headers["Location"]
    forged_cookie = httpx.get(f"{served.url}/_kubepie/keys",
                              cookies={"kubepie-session": "eyJhbGciOiJub25lIn0.e30."})
    assert forged_cookie.status_code == 302
    # A signed-in browser that posts without the page's CSRF token (another site's form).
    browser = httpx.Client(base_url=served.url, follow_redirects=True)
    page = browser.get("/_kubepie/login?next=/_kubepie/keys")
    done = browser.post(str(page.url), data={"sub": "bob"})
    assert "Signed in as <b>bob</b>" in done.text
    forged = browser.post("/_kubepie/keys", data={"label": "x", "csrf": "0" * 64})
    assert forged.status_code == 403
    assert "KP" not in browser.get("/_kubepie/keys").text
    browser.close()


def test_a_stale_or_foreign_login_callback_is_refused(served: Gateway) -> None:
    response = httpx.get(f"{served.url}/_kubepie/callback?code=abc&state=forged")
    assert response.status_code == 400 and "stale" in response.text


def test_share_links_made_copied_opened_and_revoked_in_the_browser(served: Gateway) -> None:
    chromium = require_tool("chromium")
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (served.root / "home/alice/results").mkdir(exist_ok=True)
    (served.root / "home/alice/results/scan.csv").write_text("energy,counts\n8.0,120\n")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        owner = browser.new_context()
        owner.grant_permissions(["clipboard-read", "clipboard-write"], origin=served.url)
        page = owner.new_page()
        stranger = browser.new_context(accept_downloads=True)  # no session, no login
        try:
            page.goto(f"{served.url}/_kubepie/links")  # signs in on the way
            page.fill("input[name=sub]", "alice")
            page.click("button[type=submit]:has-text('Authorize')")
            expect(page.locator("body")).to_contain_text("Signed in as alice")
            page.fill("input[name=path]", "/home/results")
            page.fill("input[name=label]", "for the beamline")
            page.fill("input[name=days]", "3")
            page.click("button:has-text('Create')")
            url = page.locator("#link-url").inner_text()
            page.click("button[data-copy=link-url]")
            expect(page.locator("button[data-copy=link-url]")).to_have_text("Copied")
            assert page.evaluate("navigator.clipboard.readText()") == url
            page.screenshot(path=ARTIFACTS / "4-new-link.png")

            visitor = stranger.new_page()
            visitor.goto(url)  # a folder link: a listing, without any login
            expect(visitor.locator("body")).to_contain_text("scan.csv")
            assert "secret.txt" not in visitor.content()
            visitor.screenshot(path=ARTIFACTS / "5-link-listing.png")
            with visitor.expect_download() as download:
                visitor.click("a:has-text('scan.csv')")
            assert Path(download.value.path()).read_text() == "energy,counts\n8.0,120\n"
            assert download.value.suggested_filename == "scan.csv"

            # A file link, from the form on the keys page.
            page.goto(f"{served.url}/_kubepie/keys")
            page.fill("form:has(button:has-text('Share')) input[name=path]",
                      "/home/results/scan.csv")
            page.click("button:has-text('Share')")
            file_url = page.locator("#link-url").inner_text()
            assert file_url.endswith("/scan.csv")
            with visitor.expect_download() as download, \
                    contextlib.suppress(PlaywrightError):  # a download aborts the navigation
                visitor.goto(file_url)
            assert Path(download.value.path()).read_text().startswith("energy")

            page.goto(f"{served.url}/_kubepie/links")
            row = page.locator("tr", has_text="for the beamline")
            expect(row).to_contain_text("/home/results/")
            expect(row.locator("td").nth(3)).to_have_text("2")  # the listing and the download
            row.locator("button:has-text('Revoke')").click()
            expect(page.locator("body")).not_to_contain_text("for the beamline")
            page.screenshot(path=ARTIFACTS / "6-link-revoked.png")
            gone = visitor.goto(url)
            assert gone is not None and gone.status == 404
        finally:
            browser.close()
