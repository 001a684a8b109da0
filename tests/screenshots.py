"""Screenshots of the analyst pages over the demo data, for the README.

    .venv/bin/python -m tests.screenshots [OUT_DIR]     (default docs/screenshots)

Loads the demo's synthetic day into a temporary folder, serves it on a free loopback port,
signs in as the demo's `analyst` in Debian's Chromium (Playwright) and saves the sign-in,
collections, browse, object and search pages, and a family's page with what refers
to it.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from exchange.demo import run_demo
from exchange.policy import partners
from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
FAMILY = "emotet"  # a malware family in the demo's synthetic day


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screenshots-") as temp:
        directory, port = Path(temp), free_port()
        with contextlib.redirect_stdout(io.StringIO()):
            run_demo(directory, port=port, serve_after=False)
        password = partners.rotate(directory / "partners.yaml", "analyst").password
        server = subprocess.Popen(
            [sys.executable, "-m", "exchange", "--config", str(directory / "config.yaml"),
             "serve", "--port", str(port), "--no-access-log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}/ui/"
        try:
            for _ in range(100):
                with contextlib.suppress(httpx.TransportError):
                    httpx.get(base)
                    break
                time.sleep(0.1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                     args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": 1200, "height": 760})
                page.goto(base)
                page.get_by_label("Partner id").fill("analyst")
                page.get_by_label("Password").fill(password)
                page.screenshot(path=out / "sign-in.png")
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{base}collections/")
                page.screenshot(path=out / "collections.png")
                page.get_by_role("link", name="Cybercrime indicators").click()
                page.wait_for_load_state()
                page.screenshot(path=out / "browse.png")
                page.locator("td a").first.click()
                page.wait_for_load_state()
                page.screenshot(path=out / "object.png")
                page.goto(f"{base}search/?q={FAMILY}")
                page.wait_for_load_state()
                page.screenshot(path=out / "search.png")
                page.locator("td a").first.click()  # the family: what refers to it, the graph
                page.wait_for_load_state()
                page.locator("#graph").scroll_into_view_if_needed()
                page.screenshot(path=out / "related.png")
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screenshots"))
