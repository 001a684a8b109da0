"""The object page (/ui/.../objects/ID/) over HTTP against a real server: what an object
references and what references it, the relationship graph's data, and the differences between
versions; a partner cleared GREEN sees no AMBER object in any of them.

The writer seeds one collection with a malware family and, around it, GREEN and AMBER
relationships, a sighting, a report and a note, through TAXII POSTs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest

from exchange.markings import TLP
from exchange.web import related
from tests import backends
from tests.conftest import API_ROOT, LiveServer, start_server, with_backend
from tests.test_web import (
    SHARED,
    T0,
    T1,
    TAXII,
    WRITER,
    indicator,
    sid,
    signed_in,
    write_web_env,
)

FAMILY_V1 = {"type": "malware", "spec_version": "2.1", "id": sid("malware", "family"),
             "created": T0, "modified": T0, "created_by_ref": WRITER, "name": "Loader family",
             "is_family": True, "aliases": ["ldr"], "description": "first sighting",
             "object_marking_refs": [TLP["green"]]}
FAMILY_V2 = {**{k: v for k, v in FAMILY_V1.items() if k != "aliases"}, "modified": T1,
             "description": "seen again", "labels": ["loader"],
             "kill_chain_phases": [{"kill_chain_name": "lockheed", "phase_name": "delivery"}]}
IND_GREEN = indicator("rel-green", "green", "192.0.2.40", name="Green C2 192.0.2.40")
IND_AMBER = indicator("rel-amber", "amber", "192.0.2.41", name="Amber C2 192.0.2.41")
HOSTILE = indicator("rel-hostile", "green", "192.0.2.42",
                    name="</script><script>alert('graph')</script>")


def relationship(key: str, source: dict[str, Any], target: dict[str, Any], tlp: str,
                 kind: str = "indicates") -> dict[str, Any]:
    return {"type": "relationship", "spec_version": "2.1", "id": sid("relationship", key),
            "created": T0, "modified": T0, "created_by_ref": WRITER, "relationship_type": kind,
            "source_ref": source["id"], "target_ref": target["id"],
            "object_marking_refs": [TLP[tlp]]}


REL_GREEN = relationship("green", IND_GREEN, FAMILY_V1, "green")
REL_AMBER = relationship("amber", IND_AMBER, FAMILY_V1, "amber")
REL_HOSTILE = relationship("hostile", HOSTILE, FAMILY_V1, "green")
ELSEWHERE = "identity--0e5b0000-0000-4000-8000-00000000e15e"  # not in the collection
SIGHTING = {"type": "sighting", "spec_version": "2.1", "id": sid("sighting", "family"),
            "created": T0, "modified": T0, "created_by_ref": WRITER, "count": 3,
            "sighting_of_ref": FAMILY_V1["id"], "where_sighted_refs": [ELSEWHERE],
            "object_marking_refs": [TLP["green"]]}
REPORT = {"type": "report", "spec_version": "2.1", "id": sid("report", "family"),
          "created": T0, "modified": T0, "published": T0, "created_by_ref": WRITER,
          "name": "Loader report", "report_types": ["threat-report"],
          "object_refs": [FAMILY_V1["id"], IND_GREEN["id"]], "object_marking_refs": [TLP["green"]]}
NOTE_AMBER = {"type": "note", "spec_version": "2.1", "id": sid("note", "family"),
              "created": T0, "modified": T0, "created_by_ref": WRITER,
              "content": "Amber analyst note", "object_refs": [FAMILY_V1["id"]],
              "object_marking_refs": [TLP["amber"]]}
SEED = [FAMILY_V1, FAMILY_V2, IND_GREEN, IND_AMBER, HOSTILE, REL_GREEN, REL_AMBER, REL_HOSTILE,
        SIGHTING, REPORT, NOTE_AMBER]
AMBER_ONLY = {IND_AMBER["id"], REL_AMBER["id"], NOTE_AMBER["id"]}


@pytest.fixture(scope="module", params=backends.BACKENDS)
def site(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
         ) -> Iterator[LiveServer]:
    """The pages over each store backend in turn."""
    env = with_backend(write_web_env(tmp_path_factory.mktemp("web-object")), request.param,
                       request)
    live = start_server(env)
    try:
        answer = httpx.post(f"{live.root}collections/{SHARED}/objects/",
                            json={"objects": SEED}, auth=env.basic("writer"),
                            headers={"Accept": TAXII, "Content-Type": TAXII}, timeout=30)
        assert answer.json()["success_count"] == len(SEED), answer.text
        yield live
    finally:
        live.stop()


def page_of(client: httpx.Client, object_id: str, **params: str) -> httpx.Response:
    return client.get(f"ui/collections/{API_ROOT}/{SHARED}/objects/{object_id}/",
                      params=params)


def section(html: str, heading: str) -> str:
    """The HTML between an <h3> (or <h2>) and the next heading."""
    found = re.search(rf"<h[23][^>]*>{re.escape(heading)}</h[23]>(.*?)<h[23]", html, re.S)
    assert found, heading
    return found.group(1)


def linked(html: str) -> list[tuple[str, str]]:
    """(via, id) of each row of a related table."""
    rows = re.findall(r"<tr>\s*<td>(.*?)</td>.*?<td class=\"id\">([^<]+)</td>", html, re.S)
    return [(unescape(re.sub(r"<[^>]+>|\s*\(.*", "", via)).strip(), ident)
            for via, ident in rows]


def graph(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="graph-data">(.*?)</script>', html,
                      re.S)
    assert found, html
    data: dict[str, Any] = json.loads(found.group(1))
    return data


# -- related objects ---------------------------------------------------------------------------


@pytest.mark.parametrize("who, object_id, outgoing, incoming", [
    pytest.param("green", FAMILY_V1["id"], [],
                 [("target_ref", REL_GREEN["id"]),
                  ("target_ref", REL_HOSTILE["id"]), ("sighting_of_ref", SIGHTING["id"]),
                  ("object_refs", REPORT["id"])],
                 id="green: a family's relationships, sighting and report, no AMBER ones"),
    pytest.param("amber", FAMILY_V1["id"], [],
                 [("target_ref", REL_GREEN["id"]), ("target_ref", REL_AMBER["id"]),
                  ("target_ref", REL_HOSTILE["id"]), ("sighting_of_ref", SIGHTING["id"]),
                  ("object_refs", REPORT["id"]), ("object_refs", NOTE_AMBER["id"])],
                 id="amber: the AMBER relationship and note too"),
    pytest.param("green", REL_GREEN["id"],
                 [("source_ref", IND_GREEN["id"]), ("target_ref", FAMILY_V1["id"])], [],
                 id="a relationship references its source and target"),
    pytest.param("green", SIGHTING["id"],
                 [("sighting_of_ref", FAMILY_V1["id"]), ("where_sighted_refs", ELSEWHERE)], [],
                 id="a sighting: what was seen, and where (not stored here: by id)"),
    pytest.param("green", REPORT["id"],
                 [("object_refs", FAMILY_V1["id"]), ("object_refs", IND_GREEN["id"])], [],
                 id="a report references what it contains"),
    pytest.param("green", IND_GREEN["id"], [],
                 [("source_ref", REL_GREEN["id"]), ("object_refs", REPORT["id"])],
                 id="an indicator: its relationship and the report containing it"),
])
def test_related_objects_in_both_directions(site: LiveServer, who: str, object_id: str,
                                            outgoing: list[tuple[str, str]],
                                            incoming: list[tuple[str, str]]) -> None:
    with signed_in(site, who) as client:
        answer = page_of(client, object_id)
    assert answer.status_code == 200, answer.text
    assert sorted(linked(section(answer.text, "It references"))) == sorted(outgoing)
    assert sorted(linked(section(answer.text, "Referencing it"))) == sorted(incoming)


def test_related_objects_link_to_their_pages_and_say_how_they_relate(site: LiveServer) -> None:
    with signed_in(site, "green") as client:
        html = page_of(client, FAMILY_V1["id"]).text
        incoming = section(html, "Referencing it")
        assert "(this indicates it)" in incoming and "(seen 3 times)" in incoming
        href = f"/ui/collections/{API_ROOT}/{SHARED}/objects/{REL_GREEN['id']}/"
        assert f'href="{href}"' in incoming
        followed = client.get(href)
        assert followed.status_code == 200
        assert IND_GREEN["id"] in section(followed.text, "It references")
        where = section(page_of(client, SIGHTING["id"]).text, "It references")
        assert "not in this collection for you" in where
        assert f"objects/{ELSEWHERE}/" not in where  # nothing to link to


def test_a_green_partner_sees_no_amber_object_anywhere_on_the_page(site: LiveServer) -> None:
    with signed_in(site, "green") as client:
        for object_id in (FAMILY_V1["id"], IND_GREEN["id"], REPORT["id"], SIGHTING["id"]):
            html = page_of(client, object_id).text
            assert not {ident for ident in AMBER_ONLY if ident in html}, object_id
            assert "Amber C2" not in html and "Amber analyst note" not in html
        for object_id in AMBER_ONLY:  # and their own pages are not there for it
            assert page_of(client, object_id).status_code == 404


def test_incoming_objects_are_paged(site: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(related, "INCOMING_PAGE", 2)
    seen: list[str] = []
    with signed_in(site, "amber") as client:
        answer = page_of(client, FAMILY_V1["id"])
        pages = 0
        while True:
            pages += 1
            seen += [ident for _, ident in linked(section(answer.text, "Referencing it"))]
            more = re.search(r'<a rel="next" href="([^"]+)">More referencing it</a>',
                             answer.text)
            if not more:
                break
            answer = client.get(unescape(more.group(1)))
            assert answer.status_code == 200
    assert pages == 3
    assert sorted(seen) == sorted([REL_GREEN["id"], REL_AMBER["id"], REL_HOSTILE["id"],
                                   SIGHTING["id"], REPORT["id"], NOTE_AMBER["id"]])


# -- the graph --------------------------------------------------------------------------------


@pytest.mark.parametrize("who, nodes, edges", [
    pytest.param("green",
                 {FAMILY_V1["id"], IND_GREEN["id"], HOSTILE["id"], SIGHTING["id"],
                  REPORT["id"]},
                 {(IND_GREEN["id"], FAMILY_V1["id"], "indicates"),
                  (HOSTILE["id"], FAMILY_V1["id"], "indicates"),
                  (SIGHTING["id"], FAMILY_V1["id"], "sighting_of_ref"),
                  (REPORT["id"], FAMILY_V1["id"], "object_refs")},
                 id="green: relationships as edges to the other end, no AMBER node"),
    pytest.param("amber",
                 {FAMILY_V1["id"], IND_GREEN["id"], IND_AMBER["id"], HOSTILE["id"],
                  SIGHTING["id"], REPORT["id"], NOTE_AMBER["id"]},
                 {(IND_GREEN["id"], FAMILY_V1["id"], "indicates"),
                  (IND_AMBER["id"], FAMILY_V1["id"], "indicates"),
                  (HOSTILE["id"], FAMILY_V1["id"], "indicates"),
                  (SIGHTING["id"], FAMILY_V1["id"], "sighting_of_ref"),
                  (REPORT["id"], FAMILY_V1["id"], "object_refs"),
                  (NOTE_AMBER["id"], FAMILY_V1["id"], "object_refs")},
                 id="amber: its AMBER neighbours too"),
])
def test_graph_data(site: LiveServer, who: str, nodes: set[str],
                    edges: set[tuple[str, str, str]]) -> None:
    with signed_in(site, who) as client:
        data = graph(page_of(client, FAMILY_V1["id"]).text)
    assert data["center"] == FAMILY_V1["id"]
    assert {n["id"] for n in data["nodes"]} == nodes
    assert {(e["source"], e["target"], e["label"]) for e in data["edges"]} == edges
    assert all(e["source"] in nodes and e["target"] in nodes for e in data["edges"])
    rel = next(e for e in data["edges"] if e["source"] == IND_GREEN["id"])
    assert rel["via"] == REL_GREEN["id"]  # the edge stands for this relationship


def test_graph_labels_cannot_close_the_data_block(site: LiveServer) -> None:
    with signed_in(site, "green") as client:
        html = page_of(client, FAMILY_V1["id"]).text
    assert "<script>alert('graph')" not in html
    labels = {n["label"] for n in graph(html)["nodes"]}
    assert HOSTILE["name"] in labels  # the name arrives intact as data
    assert '<script src="/ui/static/graph.js" defer></script>' in html


def test_graph_is_bounded(site: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(related, "GRAPH_NODES", 3)
    with signed_in(site, "amber") as client:
        html = page_of(client, FAMILY_V1["id"]).text
    data = graph(html)
    assert len(data["nodes"]) == 3 and data["truncated"] is True
    assert "The graph shows the first 3 objects." in html


# -- version differences ---------------------------------------------------------------------


def changes(html: str) -> set[tuple[str, str]]:
    table = section(html + "<h2>", "Differences from version " + T0)
    return set(re.findall(r'<tr class="diff-(\w+)">\s*<td>([^<]+)</td>', table))


@pytest.mark.parametrize("params, expected", [
    pytest.param({"version": T1, "compare": T0},
                 {("changed", "modified"), ("changed", "description"), ("added", "labels"),
                  ("added", "kill_chain_phases"), ("removed", "aliases")},
                 id="newer against older: added, removed and changed properties"),
    pytest.param({"compare": T0},
                 {("changed", "modified"), ("changed", "description"), ("added", "labels"),
                  ("added", "kill_chain_phases"), ("removed", "aliases")},
                 id="the newest version against one named"),
])
def test_version_differences(site: LiveServer, params: dict[str, str],
                             expected: set[tuple[str, str]]) -> None:
    with signed_in(site, "green") as client:
        html = page_of(client, FAMILY_V1["id"], **params).text
    assert {(kind, name) for kind, name in changes(html)} == expected
    table = section(html + "<h2>", "Differences from version " + T0)
    assert "first sighting" in table and "seen again" in table
    assert "&#34;phase_name&#34;: &#34;delivery&#34;" in table  # nested values as JSON


def test_versions_link_to_the_difference_from_the_one_before(site: LiveServer) -> None:
    with signed_in(site, "green") as client:
        html = page_of(client, FAMILY_V1["id"]).text
        link = re.search(r'<a class="compare" href="([^"]+)">', html)
        assert link, html
        followed = client.get(unescape(link.group(1)))
    assert followed.status_code == 200
    assert ("removed", "aliases") in changes(followed.text)


@pytest.mark.parametrize("params", [
    pytest.param({"compare": "2023-01-01T00:00:00.000Z"}, id="no such version -> 404"),
    pytest.param({"version": T1, "compare": "yesterday"}, id="not a version -> 404"),
])
def test_comparing_with_a_version_that_is_not_there(site: LiveServer,
                                                    params: dict[str, str]) -> None:
    with signed_in(site, "green") as client:
        answer = page_of(client, FAMILY_V1["id"], **params)
    assert answer.status_code in (400, 404), answer.text
    assert answer.headers["content-type"].startswith("text/html")
