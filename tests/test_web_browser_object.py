"""The object and work pages in a real browser (Debian's Chromium through Playwright), in one
launch: open an object, follow a relationship, see the graph drawn, see a version difference,
upload a file and see its rejects. No console errors: a script or style the
Content-Security-Policy blocked, or a script failing, would show there."""

from __future__ import annotations

from pathlib import Path

from tests.browser import browser_page, needs_chromium, push, sign_in
from tests.conftest import ALICE, OPEN, LiveServer

pytestmark = needs_chromium

GREEN = ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"]
T0, T1 = "2024-01-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"
FAMILY = {"type": "malware", "spec_version": "2.1",
          "id": "malware--7d0b9a5e-4c4b-4f61-9d55-0a6f3c1e2b10", "created": T0, "modified": T0,
          "created_by_ref": ALICE, "name": "Loader family", "is_family": True,
          "description": "first report", "object_marking_refs": GREEN}
FAMILY_V2 = {**FAMILY, "modified": T1, "description": "second report"}
INDICATOR = {"type": "indicator", "spec_version": "2.1",
             "id": "indicator--7d0b9a5e-4c4b-4f61-9d55-0a6f3c1e2b11", "created": T0,
             "modified": T0, "created_by_ref": ALICE, "name": "C2 at loader.example",
             "pattern_type": "stix", "pattern": "[domain-name:value = 'loader.example']",
             "valid_from": "2024-01-01T00:00:00Z", "object_marking_refs": GREEN}
RELATIONSHIP = {"type": "relationship", "spec_version": "2.1",
                "id": "relationship--7d0b9a5e-4c4b-4f61-9d55-0a6f3c1e2b12", "created": T0,
                "modified": T0, "created_by_ref": ALICE, "relationship_type": "indicates",
                "source_ref": INDICATOR["id"], "target_ref": FAMILY["id"],
                "object_marking_refs": GREEN}
UPLOAD = ("indicator,type\n"
          "192.0.2.77,ip\n"
          "999.1.1.1,ip\n"
          "loader.example,domain\n")


def test_object_relationships_graph_differences_and_upload(live: LiveServer,
                                                          tmp_path: Path) -> None:
    from playwright.sync_api import expect

    push(live, [FAMILY, FAMILY_V2, INDICATOR, RELATIONSHIP])
    upload = tmp_path / "list.csv"
    upload.write_text(UPLOAD)
    with browser_page() as (page, errors):
        page.goto(f"{live.url}ui/sign-in/")
        sign_in(page, live)

        # Open the indicator, follow its relationship, then the family it indicates.
        page.goto(f"{live.url}ui/collections/api1/{OPEN}/objects/{INDICATOR['id']}/")
        expect(page.get_by_role("heading", name="C2 at loader.example")).to_be_visible()
        page.get_by_role("link", name="indicates").click()
        expect(page.get_by_role("heading", name="indicates")).to_be_visible()
        page.locator("table.related").first.get_by_role(
            "link", name="Loader family").click()
        expect(page.get_by_role("heading", name="Loader family")).to_be_visible()

        # The graph: drawn by graph.js, a node per object, linked to its page.
        nodes = page.locator("#graph svg g.node")
        expect(nodes).to_have_count(2)
        expect(page.locator("#graph svg line.edge")).to_have_count(1)
        expect(page.locator("#graph svg text.edge-label")).to_have_text("indicates")
        expect(page.locator(f'#graph svg g.node[data-id="{INDICATOR["id"]}"]')).to_be_visible()
        page.screenshot(path=tmp_path / "1-object-graph.png", full_page=True)

        # The difference from the version before.
        page.get_by_role("link", name="differences from the version before").click()
        diff = page.locator("table.diff")
        expect(diff.locator("tr.diff-changed").filter(has_text="description")).to_contain_text(
            "second report")
        expect(diff).to_contain_text("first report")
        page.screenshot(path=tmp_path / "2-differences.png", full_page=True)

        # Upload a file and see its rejects.
        page.get_by_role("link", name="Upload").click()
        page.locator("select[name=collection]").select_option(f"api1/{OPEN}")
        page.locator("select[name=format]").select_option("ioc-csv")
        page.locator("textarea[name=options]").fill(
            "value=indicator\ntype=type\ndefault_first_seen=2026-11-01")
        page.locator("input[name=file]").set_input_files(str(upload))
        page.get_by_role("button", name="Upload").click()
        expect(page.get_by_role("heading", name="Uploaded list.csv")).to_be_visible()
        expect(page.locator("p.summary")).to_contain_text("rejected 1")
        rejects = page.locator("table.rejects tbody tr")
        expect(rejects).to_have_count(1)
        expect(rejects).to_contain_text("999.1.1.1")
        page.screenshot(path=tmp_path / "3-uploaded.png", full_page=True)
    assert errors == [], errors
