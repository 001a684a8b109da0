"""The analyst pages in a real browser: Debian's Chromium driven by Playwright.

One walk through what an analyst does: sign in, see the collections, browse one, open an
object, sign out. A screenshot of each page is kept under the test's tmp_path. The page must
run with no console errors: a blocked stylesheet or script (the Content-Security-Policy) or a
missing static file would show there.
"""

from __future__ import annotations

from pathlib import Path

from tests.browser import browser_page, needs_chromium, push, sign_in
from tests.conftest import ALICE, LiveServer

pytestmark = needs_chromium

INDICATOR = {
    "type": "indicator", "spec_version": "2.1",
    "id": "indicator--7d0b9a5e-4c4b-4f61-9d55-0a6f3c1e2b01",
    "created": "2024-01-01T00:00:00.000Z", "modified": "2024-01-01T00:00:00.000Z",
    "created_by_ref": ALICE, "name": "C2 at c2.example", "pattern_type": "stix",
    "pattern": "[domain-name:value = 'c2.example']", "valid_from": "2024-01-01T00:00:00Z",
    "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"],
}


def test_sign_in_browse_and_sign_out(live: LiveServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    push(live, [INDICATOR])
    with browser_page() as (page, errors):
        page.goto(f"{live.url}ui/")
        expect(page).to_have_url(f"{live.url}ui/sign-in/")
        page.screenshot(path=tmp_path / "1-sign-in.png")
        sign_in(page, live)
        expect(page.get_by_text("Signed in as")).to_contain_text("alice")
        expect(page.get_by_role("link", name="Open")).to_be_visible()
        expect(page.get_by_role("link", name="Hidden")).to_have_count(0)
        page.screenshot(path=tmp_path / "2-collections.png")

        page.get_by_role("link", name="Open").click()
        expect(page.get_by_role("heading", name="Open")).to_be_visible()
        row = page.get_by_role("row").filter(has_text=INDICATOR["id"])
        expect(row).to_contain_text("TLP:GREEN")
        page.screenshot(path=tmp_path / "3-browse.png")

        page.get_by_role("link", name="C2 at c2.example").click()
        expect(page.get_by_role("heading", name="C2 at c2.example")).to_be_visible()
        raw = page.locator("#raw")
        expect(raw).to_contain_text('"pattern_type": "stix"')
        page.get_by_role("button", name="hide").click()  # the page's script runs
        expect(raw).to_be_hidden()
        page.screenshot(path=tmp_path / "4-object.png", full_page=True)

        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{live.url}ui/sign-in/")
        page.goto(f"{live.url}ui/collections/")
        expect(page).to_have_url(f"{live.url}ui/sign-in/")
        page.screenshot(path=tmp_path / "5-signed-out.png")
    assert errors == [], errors
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "1-sign-in.png", "2-collections.png", "3-browse.png", "4-object.png",
        "5-signed-out.png"]
