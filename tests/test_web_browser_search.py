"""Search, filters and export in a real browser: Debian's Chromium driven by Playwright,
launched as tests/test_web_browser.py launches it.

An analyst signs in, filters a collection by TLP, searches by address and by malware family
(from the collection's search box and from the search across collections in the header) and
downloads the CSV export of what is shown. The pages must run with no console errors.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.browser import browser_page, needs_chromium, push, sign_in
from tests.conftest import ALICE, LiveServer

pytestmark = needs_chromium

GREEN = "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"
AMBER = "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421"
T0 = "2024-01-01T00:00:00.000Z"
C2 = {"type": "indicator", "spec_version": "2.1",
      "id": "indicator--5b0c1a4e-1f0e-4a61-9d55-0a6f3c1e2b02", "created": T0, "modified": T0,
      "created_by_ref": ALICE, "name": "C2 198.51.100.23", "pattern_type": "stix",
      "pattern": "[ipv4-addr:value = '198.51.100.23']", "valid_from": "2024-01-01T00:00:00Z",
      "object_marking_refs": [GREEN]}
FAMILY = {"type": "malware", "spec_version": "2.1",
          "id": "malware--5b0c1a4e-1f0e-4a61-9d55-0a6f3c1e2b03", "created": T0, "modified": T0,
          "created_by_ref": ALICE, "name": "Qakbot", "aliases": ["Quakbot"], "is_family": True,
          "object_marking_refs": [AMBER]}


def test_filter_search_and_export(live: LiveServer, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    push(live, [C2, FAMILY])
    with browser_page(accept_downloads=True) as (page, errors):
        page.goto(f"{live.url}ui/sign-in/")
        sign_in(page, live)
        page.get_by_role("link", name="Open").click()

        # Filter: TLP:AMBER only.
        page.get_by_label("AMBER", exact=True).check()
        page.get_by_role("button", name="Filter").click()
        expect(page.get_by_role("row").filter(has_text=FAMILY["id"])).to_be_visible()
        expect(page.get_by_role("row").filter(has_text=C2["id"])).to_have_count(0)
        page.screenshot(path=tmp_path / "1-filtered.png")

        # Search by address, in the collection (the TLP filter cleared).
        page.get_by_role("link", name="Clear").click()
        page.get_by_label("Search", exact=True).fill("198.51.100.23")
        page.get_by_role("button", name="Filter").click()
        expect(page.get_by_role("row").filter(has_text=C2["id"])).to_be_visible()
        expect(page.get_by_role("row").filter(has_text=FAMILY["id"])).to_have_count(0)
        page.screenshot(path=tmp_path / "2-search-address.png")

        # Export what is shown.
        with page.expect_download() as download:
            page.get_by_role("link", name="CSV").click()
        saved = tmp_path / "export.csv"
        download.value.save_as(saved)
        rows = list(csv.DictReader(io.StringIO(saved.read_text())))
        assert [r["id"] for r in rows] == [C2["id"]]

        # Search by family, across every collection, from the header.
        box = page.get_by_label("Search every collection")
        box.fill("quakbot")
        box.press("Enter")
        expect(page.get_by_role("heading", name="Search every collection")).to_be_visible()
        expect(page.get_by_role("row").filter(has_text=FAMILY["id"])).to_be_visible()
        expect(page.get_by_role("row").filter(has_text=C2["id"])).to_have_count(0)
        page.screenshot(path=tmp_path / "3-search-family.png")
    assert errors == [], errors
