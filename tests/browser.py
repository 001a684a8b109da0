"""The analyst pages in a real browser: Debian's Chromium driven by Playwright (Playwright's
own browser download cannot work here), shared by the browser tests.

Each test opens one page; every console error and uncaught script error on it is collected,
so a test can require that the pages ran clean (a blocked stylesheet or script under the
Content-Security-Policy, or a missing static file, shows there).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import OPEN, LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
TAXII = "application/taxii+json;version=2.1"

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's Chromium: apt-get update && apt-get install -y "
           "--no-install-recommends chromium")


def push(live: LiveServer, objects: list[dict[str, Any]]) -> None:
    """alice pushes these to the Open collection; every one must be stored."""
    pushed = httpx.post(f"{live.collection(OPEN)}objects/", json={"objects": objects},
                        auth=live.env.basic("alice"),
                        headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=30)
    assert pushed.json()["success_count"] == len(objects), pushed.text


@contextmanager
def browser_page(**options: Any) -> Iterator[tuple[Page, list[str]]]:
    """A page in a fresh Chromium, and the errors it logs (checked by the caller)."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(**options)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            yield page, errors
        finally:
            browser.close()


def sign_in(page: Page, live: LiveServer, partner: str = "alice") -> None:
    from playwright.sync_api import expect

    page.get_by_label("Partner id").fill(partner)
    page.get_by_label("Password").fill(live.env.credentials[partner].password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live.url}ui/collections/")
